/** The contract between the API process and consensus: how commands are committed and state is read. */
import type { ClusterCommand } from './schema';
import type { ClusterStateView } from './view';

export type ReadConsistency = 'linearizable' | 'local';

/** `removed`: this node left the configuration and takes no part; it still answers local reads. */
export type RaftRole = 'leader' | 'follower' | 'candidate' | 'pre-candidate' | 'learner' | 'removed';

export interface ClusterStatus {
  nodeId: string;
  raftId: number;
  role: RaftRole;
  leaderRaftId: number | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  voters: number[];
  learners: number[];
}

/** Which member of the cluster this process is. */
export interface LocalNode {
  nodeId: string;
  /** The name in its certificate. */
  nodeName: string;
}

/** The injection token of this process's LocalNode (filled by the consensus module). */
export const LOCAL_NODE = Symbol.for('dwcp.LocalNode');

/** The injection token of the node's ClusterStore (filled by the consensus module). */
export const CLUSTER_STORE = Symbol.for('dwcp.ClusterStore');

export interface ClusterStore {
  /** Commits the command through consensus (a follower forwards it to the leader) and resolves with the result of applying it. Rejects with DomainError: the command's own ERR_NOT_FOUND/ERR_CONFLICT/..., or ERR_UNAVAILABLE / ERR_TIMEOUT from consensus. */
  execute(command: ClusterCommand): Promise<unknown>;
  /** Runs `query` against local state. 'linearizable' (the default) first waits for a Raft ReadIndex so the read sees every write acknowledged before the call; 'local' reads whatever this node has applied. */
  read<T>(query: (state: ClusterStateView) => T, consistency?: 'linearizable' | 'local'): Promise<T>;
  /** This node's view of the cluster. */
  status(): ClusterStatus;
  /**
   * Calls `listener` after this node applied committed entries (once per batch, with the last
   * index applied), so followers of the state react to changes instead of polling. Returns the
   * unsubscribe function.
   */
  onApplied(listener: (appliedIndex: number) => void): () => void;
  /**
   * Removes a member from the Raft configuration (conf change) and marks its node record removed,
   * in one committed entry. Refused with ERR_CONFLICT when it would leave the cluster without a
   * working quorum (the last voter, or too few reachable voters). Removing the leader moves
   * leadership first.
   */
  removeMember(nodeId: string): Promise<void>;
}

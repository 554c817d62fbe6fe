/**
 * FOR UNIT TESTS OF THE API ONLY, not a product path: a `ClusterStore` with no consensus at all. It
 * applies each command straight to an in-process `ClusterStateMachine`, as a one-node cluster that is
 * always its own leader would, so API tests can run without the native addon or a network.
 */
import { DomainError } from '../errors';
import type { ClusterCommand } from '../schema';
import { ClusterStateMachine } from '../state-machine';
import type { ClusterStatus, ClusterStore, ReadConsistency } from '../store';
import type { ClusterStateView } from '../view';

export interface LocalClusterStoreOptions {
  nodeId?: string;
  raftId?: number;
}

export class LocalClusterStore implements ClusterStore {
  readonly machine = new ClusterStateMachine();
  private index = 0;
  private outage: DomainError | undefined;
  private readonly nodeId: string;
  private readonly raftId: number;
  private readonly listeners = new Set<(appliedIndex: number) => void>();

  constructor(options: LocalClusterStoreOptions = {}) {
    this.nodeId = options.nodeId ?? 'node-1';
    this.raftId = options.raftId ?? 1;
  }

  /** Makes every call fail with this error (e.g. ERR_UNAVAILABLE: no leader), or heals with `undefined`. */
  simulateOutage(error: DomainError | undefined): void {
    this.outage = error;
  }

  async execute(command: ClusterCommand): Promise<unknown> {
    if (this.outage) throw this.outage;
    this.index += 1;
    const outcome = this.machine.apply(command, this.index);
    for (const listener of this.listeners) listener(this.index);
    if (!outcome.ok) throw DomainError.from(outcome.error);
    return outcome.result;
  }

  async read<T>(
    query: (state: ClusterStateView) => T,
    _consistency: ReadConsistency = 'linearizable',
  ): Promise<T> {
    if (this.outage) throw this.outage;
    return query(this.machine);
  }

  status(): ClusterStatus {
    const leader = this.outage?.code !== 'ERR_UNAVAILABLE';
    return {
      nodeId: this.nodeId,
      raftId: this.raftId,
      role: leader ? 'leader' : 'follower',
      leaderRaftId: leader ? this.raftId : null,
      term: 1,
      commitIndex: this.index,
      appliedIndex: this.machine.appliedIndex,
      voters: [this.raftId],
      learners: [],
    };
  }

  onApplied(listener: (appliedIndex: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Its one member is the last voter, which, as in a Raft cluster, cannot be removed. */
  async removeMember(nodeId: string): Promise<void> {
    if (this.machine.getNode(nodeId)?.raftId === this.raftId) {
      throw new DomainError('ERR_CONFLICT', `node ${nodeId} is the cluster's last voter`, 'id');
    }
    await this.execute({ type: 'node.remove', nodeId });
  }
}

/**
 * The Raft-backed ClusterStore: commands commit through the leader (a follower forwards them over
 * the peer service), and linearizable reads wait on a ReadIndex barrier before reading local state.
 */

import { status as grpcStatus } from '@grpc/grpc-js';
import {
  type ClusterStateView,
  type ClusterStatus,
  type ClusterStore,
  type CommandOutcome,
  DomainError,
  isDomainErrorCode,
} from '@novacron/cluster-state';
import type { Span } from '@opentelemetry/api';
import type { AcpMetrics } from './metrics';
import type { ProposeResponse } from './peer-proto';
import { type PeerAddress, PeerCallError, type PeerTransport } from './peer-transport';
import type { RaftReplica } from './raft-replica';
import { traced } from './tracing';

export interface StoreOptions {
  nodeId: string;
  /** How long execute/read keep trying to find a leader before ERR_UNAVAILABLE. */
  leaderWaitMs: number;
  requestTimeoutMs: number;
}

/** grpc-js's wording when a call failed before any connection existed (nothing was sent). */
const isNotConnected = (e: unknown): boolean => (e as Error).message.includes('No connection established');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Turns a state-machine outcome into the result or the DomainError it carries. */
export function unwrapOutcome(outcome: CommandOutcome): unknown {
  if (outcome.ok) return outcome.result;
  throw DomainError.from(outcome.error);
}

export function outcomeToWire(outcome: CommandOutcome): ProposeResponse {
  return outcome.ok
    ? {
        result: Buffer.from(JSON.stringify(outcome.result ?? null)),
        errorCode: '',
        errorMessage: '',
        errorField: '',
      }
    : {
        result: Buffer.alloc(0),
        errorCode: outcome.error.code,
        errorMessage: outcome.error.message,
        errorField: outcome.error.field ?? '',
      };
}

export function errorToWire(e: unknown): ProposeResponse {
  const d = e instanceof DomainError ? e : new DomainError('ERR_UNAVAILABLE', (e as Error).message);
  return { result: Buffer.alloc(0), errorCode: d.code, errorMessage: d.message, errorField: d.field ?? '' };
}

function wireToResult(r: ProposeResponse): unknown {
  if (r.errorCode === '') return r.result.length === 0 ? null : JSON.parse(r.result.toString('utf8'));
  const code = isDomainErrorCode(r.errorCode) ? r.errorCode : 'ERR_UNAVAILABLE';
  throw new DomainError(code, r.errorMessage, r.errorField || undefined);
}

export class RaftClusterStore implements ClusterStore {
  constructor(
    private readonly replica: RaftReplica,
    private readonly transport: PeerTransport,
    private readonly addressOf: (raftId: number) => PeerAddress | undefined,
    private readonly metrics: AcpMetrics,
    private readonly options: StoreOptions,
  ) {}

  execute(command: Parameters<ClusterStore['execute']>[0]): Promise<unknown> {
    if (this.replica.removed) return Promise.reject(this.notAMember());
    return traced('acp.commit', { 'dwcp.command': command.type }, (span) => this.commit(command, span));
  }

  private async commit(command: Parameters<ClusterStore['execute']>[0], span: Span): Promise<unknown> {
    const deadline = Date.now() + this.options.leaderWaitMs;
    for (;;) {
      const leader = await this.awaitLeader(deadline);
      span.setAttribute('dwcp.leader', leader);
      if (leader === this.replica.raftId) {
        try {
          return unwrapOutcome(await this.replica.propose(command));
        } catch (e) {
          // Lost leadership between the check and the proposal: nothing was proposed, retry.
          if (
            !this.replica.isLeader &&
            e instanceof DomainError &&
            e.code === 'ERR_UNAVAILABLE' &&
            Date.now() < deadline
          )
            continue;
          throw e;
        }
      }
      const peer = this.addressOf(leader);
      if (!peer) throw new DomainError('ERR_UNAVAILABLE', `leader ${leader} has no known address yet`);
      let response: ProposeResponse;
      try {
        response = await this.transport.propose(
          peer,
          Buffer.from(JSON.stringify(command)),
          this.options.requestTimeoutMs,
        );
      } catch (e) {
        const code = e instanceof PeerCallError ? e.code : grpcStatus.UNKNOWN;
        // No connection to the (old) leader could be made, so the command never left this node:
        // wait for Raft to name a new leader and try again.
        if (code === grpcStatus.UNAVAILABLE && isNotConnected(e) && Date.now() < deadline) {
          this.metrics.forwarded.inc({ result: 'not-connected' });
          await sleep(100);
          continue;
        }
        this.metrics.forwarded.inc({ result: 'error' });
        // Otherwise the call may have reached the leader: its outcome is unknown, so it is not retried.
        throw new DomainError(
          code === grpcStatus.DEADLINE_EXCEEDED ? 'ERR_TIMEOUT' : 'ERR_UNAVAILABLE',
          `forwarding to leader ${leader} failed: ${(e as Error).message}`,
        );
      }
      // The peer was not (or no longer) the leader, so it proposed nothing: safe to retry.
      if (
        response.errorCode === 'ERR_UNAVAILABLE' &&
        response.errorMessage.includes('not the leader') &&
        Date.now() < deadline
      ) {
        this.metrics.forwarded.inc({ result: 'not-leader' });
        await sleep(50);
        continue;
      }
      this.metrics.forwarded.inc({ result: 'ok' });
      return wireToResult(response);
    }
  }

  async read<T>(
    query: (state: ClusterStateView) => T,
    consistency: 'linearizable' | 'local' = 'linearizable',
  ): Promise<T> {
    if (consistency === 'linearizable') {
      if (this.replica.removed) throw this.notAMember();
      await traced('acp.read_index', {}, async () => {
        await this.awaitLeader(Date.now() + this.options.leaderWaitMs);
        await this.replica.readBarrier();
      });
    }
    return query(this.replica.state);
  }

  status(): ClusterStatus {
    const s = this.replica.status();
    return {
      nodeId: this.options.nodeId,
      raftId: this.replica.raftId,
      role: this.replica.currentRole,
      leaderRaftId: this.replica.leaderId,
      term: s.term,
      commitIndex: s.commit,
      appliedIndex: this.replica.appliedIndex,
      voters: s.voters,
      learners: s.learners,
    };
  }

  onApplied(listener: (appliedIndex: number) => void): () => void {
    return this.replica.onApplied(listener);
  }

  async removeMember(nodeId: string): Promise<void> {
    const node = await this.read((s) => s.getNode(nodeId));
    if (!node) throw new DomainError('ERR_NOT_FOUND', `node ${nodeId} not found`, 'id');
    if (node.status === 'removed') return;
    if (node.raftId === this.replica.raftId) {
      // Applying the conf change marks the record; this node cannot write anything after it,
      // so it waits to have applied it (the leader may have committed it a moment earlier).
      await this.changeMembership('removeNode', node.raftId, { nodeId });
      await Promise.race([this.replica.whenRemoved(), sleep(this.options.requestTimeoutMs)]);
      return;
    }
    await this.changeMembership('removeNode', node.raftId, { nodeId });
    // Marks a record whose Raft id was never (or is no longer) in the configuration; a no-op
    // for one the conf change already marked.
    await this.execute({ type: 'node.remove', nodeId });
  }

  private notAMember(): DomainError {
    return new DomainError(
      'ERR_UNAVAILABLE',
      `node ${this.options.nodeId} was removed from the cluster and takes no part in it; send requests to a member`,
    );
  }

  /** Adds or removes a voter through the leader. */
  changeMembership(kind: 'addNode' | 'removeNode', raftId: number, context: object): Promise<void> {
    return traced('acp.change_membership', { 'dwcp.membership.kind': kind, 'dwcp.raft_id': raftId }, () =>
      this.proposeMembership(kind, raftId, context),
    );
  }

  private async proposeMembership(
    kind: 'addNode' | 'removeNode',
    raftId: number,
    context: object,
  ): Promise<void> {
    const deadline = Date.now() + this.options.leaderWaitMs;
    // A leader asked to remove itself hands leadership over and answers "not the leader": the
    // change is then asked of the new leader. Nothing was proposed, so retrying is safe.
    const movedOn = (e: DomainError) =>
      e.code === 'ERR_UNAVAILABLE' && e.message.includes('not the leader') && Date.now() < deadline;
    for (;;) {
      const leader = await this.awaitLeader(deadline);
      try {
        if (leader === this.replica.raftId) return await this.replica.changeMembership(kind, raftId, context);
        const peer = this.addressOf(leader);
        if (!peer) throw new DomainError('ERR_UNAVAILABLE', `leader ${leader} has no known address yet`);
        const r = await this.transport.changeMembership(
          peer,
          {
            kind: kind === 'addNode' ? 'ADD_NODE' : 'REMOVE_NODE',
            raftId,
            context: Buffer.from(JSON.stringify(context)),
          },
          this.options.requestTimeoutMs,
        );
        if (r.errorCode === '') return;
        throw new DomainError(
          isDomainErrorCode(r.errorCode) ? r.errorCode : 'ERR_UNAVAILABLE',
          r.errorMessage,
        );
      } catch (e) {
        if (!(e instanceof DomainError && movedOn(e))) throw e;
        await sleep(50);
      }
    }
  }

  private async awaitLeader(deadline: number): Promise<number> {
    for (;;) {
      const leader = this.replica.leaderId;
      if (leader !== null) return leader;
      if (Date.now() >= deadline)
        throw new DomainError('ERR_UNAVAILABLE', 'no leader: the cluster has no quorum or is electing');
      await sleep(20);
    }
  }
}

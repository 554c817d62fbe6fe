/**
 * One member of the Raft group: drives the native raft-rs node (ticks, Ready cycles), applies
 * committed entries to the in-memory cluster state machine in log order, and settles the
 * proposals and ReadIndex reads that this process started. Sockets are not its concern: it
 * hands outgoing messages to `send` and takes incoming ones through `step`.
 */
import { randomUUID } from 'node:crypto';
import {
  ClusterStateMachine,
  type CommandOutcome,
  DomainError,
  type RaftRole,
} from '@novacron/cluster-state';
import {
  NativeError,
  type RaftRole as NativeRaftRole,
  type RaftEntry,
  type RaftNode,
  type RaftReady,
} from '@novacron/native';
import { checkRemoval, isMember, type MembershipView, successorOf } from './membership-policy';
import type { AcpMetrics } from './metrics';
import { TickPolicy } from './tick-policy';

export type { RaftRole };

const ROLE: Record<NativeRaftRole, RaftRole> = {
  leader: 'leader',
  follower: 'follower',
  candidate: 'candidate',
  preCandidate: 'pre-candidate',
};

export interface ReplicaOptions {
  raftId: number;
  /** Apply this many entries between state-machine snapshots (then the log before them is compacted). */
  snapshotEvery: number;
  /** How long a proposal or read may wait before it fails with ERR_TIMEOUT. */
  requestTimeoutMs: number;
}

/** What the replica needs from the outside world. */
export interface ReplicaIo {
  /** Sends Raft messages (protobuf bytes) to one peer. */
  send(to: number, messages: Buffer[]): void;
  /** Called after a membership change is applied, with the new voter and learner ids. */
  onMembership?(voters: number[], learners: number[], context: unknown): void;
  /**
   * Which of `raftIds` answer this (leading) node: waits a little for peers it has not heard
   * from recently (a new leader has not heard from anyone yet). Without it, all count as reachable.
   */
  reachable?(raftIds: number[]): Promise<(raftId: number) => boolean>;
  /** Called once if the engine fails in a way that leaves this replica unable to go on (a disk error). */
  onHalt?(reason: string): void;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  started: number;
}

/** A log entry's payload as this replica writes it: the proposal id and the command. */
interface Envelope {
  p: string;
  c: unknown;
}

export class RaftReplica {
  readonly state = new ClusterStateMachine();
  readonly ticks: TickPolicy;
  private role: RaftRole = 'follower';
  private leader: number | null = null;
  private term = 0;
  private applied = 0;
  private lastSnapshot = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private drainScheduled = false;
  private closed = false;
  private readonly appliedListeners = new Set<(appliedIndex: number) => void>();
  /** Set once this replica applied its own removal from the configuration. */
  private selfRemoved = false;
  private readonly removalWaiters: Array<() => void> = [];
  /** Told by a peer (see learnRemoved): the engine is no longer ticked. One that applied its removal retires by itself. */
  private toldRemoved = false;
  /** Why the engine stopped, once a failure it cannot recover from in-process stopped it. */
  private haltedBecause: string | undefined;
  private readonly proposals = new Map<string, Waiter<CommandOutcome>>();
  private readonly confChanges = new Map<string, Waiter<void>>();
  /** ReadIndex requests waiting for their read state, then for `applied` to reach it. */
  private readonly reads = new Map<string, Waiter<void> & { index?: number }>();

  constructor(
    private readonly node: RaftNode,
    private readonly options: ReplicaOptions,
    private readonly io: ReplicaIo,
    private readonly metrics: AcpMetrics,
    ticks = new TickPolicy(),
  ) {
    this.ticks = ticks;
  }

  /** Starts ticking. The interval is re-read from the tick policy before every tick. */
  start(): void {
    const loop = () => {
      if (this.closed) return;
      if (!this.toldRemoved) this.node.tick();
      this.drain();
      const ms = this.ticks.tickMs();
      this.metrics.tickInterval.set(ms / 1000);
      this.tickTimer = setTimeout(loop, ms);
    };
    this.tickTimer = setTimeout(loop, this.ticks.tickMs());
    this.drain();
  }

  // ---- getters

  get raftId(): number {
    return this.options.raftId;
  }
  get isLeader(): boolean {
    return this.role === 'leader' && !this.removed;
  }
  /** The leader this node follows; null while there is none, and once this node is no longer a member. */
  get leaderId(): number | null {
    return this.removed || this.haltedBecause !== undefined ? null : this.leader;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get currentRole(): RaftRole {
    return this.removed ? 'removed' : this.role;
  }
  /** This node is no longer a member: it applied its removal, or its node record says so (after a restart). */
  get removed(): boolean {
    return (
      this.selfRemoved ||
      this.state.listNodes().some((n) => n.raftId === this.options.raftId && n.status === 'removed')
    );
  }
  /** Set when the engine stopped after a failure it cannot recover from in-process (reopen the node). */
  get haltReason(): string | undefined {
    return this.haltedBecause;
  }
  get currentTerm(): number {
    return this.term;
  }
  status() {
    return this.node.status();
  }

  // ---- inputs

  /** Feeds messages from a peer. A malformed message throws NativeError ERR_ACP_BAD_MESSAGE. */
  step(messages: Buffer[]): void {
    if (this.closed) return;
    try {
      for (const m of messages) {
        try {
          this.node.step(m);
        } catch (e) {
          // A late reply from a peer that has left the configuration, or anything sent to this
          // node after it left: harmless (docs/acp.md).
          if (
            !(e instanceof NativeError && (e.code === 'ERR_ACP_UNKNOWN_PEER' || e.code === 'ERR_ACP_REMOVED'))
          )
            throw e;
        }
      }
    } finally {
      this.scheduleDrain();
    }
  }

  /** Proposes a command on this node, which must be the leader; resolves with its outcome once applied here. */
  propose(command: unknown): Promise<CommandOutcome> {
    if (!this.isLeader || this.removed)
      return Promise.reject(new DomainError('ERR_UNAVAILABLE', 'this node is not the leader'));
    const id = randomUUID();
    const data = Buffer.from(JSON.stringify({ p: id, c: command } satisfies Envelope));
    return this.wait(this.proposals, id, 'proposal', () => this.node.propose(data));
  }

  /**
   * Proposes adding or removing a voter; resolves once the change is applied here. A removal
   * that would leave no working quorum is refused (ERR_CONFLICT) before it reaches the log.
   * Asked to remove itself, the leader hands leadership to another voter first and answers
   * "not the leader", so the caller asks the new one.
   */
  async changeMembership(kind: 'addNode' | 'removeNode', nodeId: number, context: object): Promise<void> {
    if (!this.isLeader || this.removed)
      throw new DomainError('ERR_UNAVAILABLE', 'this node is not the leader');
    if (kind === 'removeNode') {
      const s = this.node.status();
      const others = s.voters.filter((v) => v !== this.raftId);
      const answers = (await this.io.reachable?.(others)) ?? (() => true);
      const view: MembershipView = {
        voters: s.voters,
        learners: s.learners,
        isReachable: (id) => id === this.raftId || answers(id),
      };
      if (!isMember(view, nodeId)) return;
      checkRemoval(view, nodeId);
      if (nodeId === this.raftId) {
        const to = successorOf(view, this.raftId);
        if (to !== undefined) this.transferLeader(to);
        throw new DomainError(
          'ERR_UNAVAILABLE',
          `this node is not the leader any more: it hands leadership to raft id ${to} before it is removed`,
        );
      }
      if (!this.isLeader) throw new DomainError('ERR_UNAVAILABLE', 'this node is not the leader');
    }
    const id = randomUUID();
    const ctx = Buffer.from(JSON.stringify({ ...context, p: id }));
    return this.wait(this.confChanges, id, 'membership change', () =>
      this.node.proposeConfChange({ kind, nodeId, context: ctx }),
    );
  }

  /** Resolves once this node has applied everything committed before the call (Raft ReadIndex). */
  readBarrier(): Promise<void> {
    const id = randomUUID();
    return this.wait(this.reads, id, 'read', () => this.node.readIndex(Buffer.from(id)));
  }

  /**
   * A member told us we were removed: the leader stopped sending before we saw the commit, so we
   * never applied it. Stop ticking (no more campaigns) and refuse work, as if we had.
   */
  learnRemoved(): void {
    if (this.toldRemoved || this.closed) return;
    this.toldRemoved = true;
    this.selfRemoved = true;
    for (const resolve of this.removalWaiters.splice(0)) resolve();
  }

  /** Calls `listener` after each Ready cycle that applied entries, with the last index applied. */
  onApplied(listener: (appliedIndex: number) => void): () => void {
    this.appliedListeners.add(listener);
    return () => this.appliedListeners.delete(listener);
  }

  /** Resolves once this node has applied its own removal from the configuration. */
  whenRemoved(): Promise<void> {
    if (this.selfRemoved) return Promise.resolve();
    return new Promise((resolve) => this.removalWaiters.push(resolve));
  }

  /** Asks Raft to hand leadership to `to` (used before a leader leaves). */
  transferLeader(to: number): void {
    this.node.transferLeader(to);
    this.scheduleDrain();
  }

  reportUnreachable(peer: number): void {
    if (!this.closed) this.node.reportUnreachable(peer);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.tickTimer);
    const gone = new DomainError('ERR_UNAVAILABLE', 'the node is shutting down');
    for (const m of [this.proposals, this.confChanges, this.reads] as Map<string, Waiter<unknown>>[]) {
      for (const w of m.values()) {
        clearTimeout(w.timer);
        w.reject(gone);
      }
      m.clear();
    }
    this.node.close();
  }

  // ---- internals

  private wait<T>(map: Map<string, Waiter<T>>, id: string, what: string, start: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        map.delete(id);
        this.metrics.requests.inc({ kind: what, result: 'timeout' });
        reject(
          new DomainError(
            'ERR_TIMEOUT',
            `${what} not applied within ${this.options.requestTimeoutMs} ms; its outcome is unknown`,
          ),
        );
      }, this.options.requestTimeoutMs);
      map.set(id, { resolve, reject, timer, started: performance.now() });
      try {
        start();
      } catch (e) {
        clearTimeout(timer);
        map.delete(id);
        // Refused before it entered the log: nothing was proposed.
        const refused =
          e instanceof NativeError &&
          (e.code === 'ERR_ACP_PROPOSAL_DROPPED' ||
            e.code === 'ERR_ACP_NOT_LEADER' ||
            e.code === 'ERR_ACP_REMOVED');
        reject(
          refused ? new DomainError('ERR_UNAVAILABLE', `this node is not the leader (${e.message})`) : e,
        );
        return;
      }
      this.scheduleDrain();
    });
  }

  private refuse<T>(map: Map<string, Waiter<T>>, id: string, kind: string, error: Error): void {
    const w = map.get(id);
    if (!w) return;
    map.delete(id);
    clearTimeout(w.timer);
    this.metrics.requests.inc({ kind, result: 'rejected' });
    w.reject(error);
  }

  private settle<T>(map: Map<string, Waiter<T>>, id: string, kind: string, value: T): void {
    const w = map.get(id);
    if (!w) return;
    map.delete(id);
    clearTimeout(w.timer);
    this.metrics.requests.inc({ kind, result: 'ok' });
    this.metrics.latency.observe({ kind }, (performance.now() - w.started) / 1000);
    w.resolve(value);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.closed) return;
    this.drainScheduled = true;
    // Batch everything proposed in this turn of the event loop into one Ready (one fsync).
    setImmediate(() => {
      this.drainScheduled = false;
      this.drain();
    });
  }

  /**
   * Runs Ready cycles until raft has nothing more: persist (native), send, apply, settle. Nothing
   * committed makes it throw (rejected entries are outcomes); what still can, a failed fsync or
   * a poisoned engine, halts this replica instead of the process: it stops, fails what waits, and
   * reports why (health shows it). The disk holds the last persisted state, so a restart resumes.
   */
  private drain(): void {
    try {
      while (!this.closed && this.node.hasReady()) this.handle(this.node.ready());
    } catch (e) {
      this.halt(e instanceof Error ? e.message : String(e));
    }
  }

  /** A listener's failure is its own: it must not stop the Ready loop. */
  private notifyApplied(): void {
    for (const listener of this.appliedListeners) {
      try {
        listener(this.applied);
      } catch {
        // The listener logs its own failures; the replica goes on.
      }
    }
  }

  private halt(reason: string): void {
    if (this.closed) return;
    this.haltedBecause = reason;
    this.metrics.halted.set(1);
    this.io.onHalt?.(reason);
    this.close();
  }

  private handle(ready: RaftReady): void {
    const before = this.applied;
    // After open() the stored snapshot comes first, then every entry committed after it.
    if (ready.snapshot) {
      if (ready.snapshot.data.length > 0) this.state.restore(ready.snapshot.data);
      else this.state.advanceTo(ready.snapshot.index); // a new cluster's initial snapshot
      this.applied = ready.snapshot.index;
      this.lastSnapshot = ready.snapshot.index;
    }
    const byPeer = new Map<number, Buffer[]>();
    for (const m of ready.messages) {
      const list = byPeer.get(m.to) ?? [];
      list.push(Buffer.from(m.bytes));
      byPeer.set(m.to, list);
    }
    for (const [to, list] of byPeer) this.io.send(to, list);
    for (const e of ready.committedEntries) this.apply(e);
    for (const rs of ready.readStates) {
      const w = this.reads.get(Buffer.from(rs.requestCtx).toString());
      if (w) w.index = rs.index;
    }
    if (ready.softState) this.onSoftState(ready.softState.leaderId, ROLE[ready.softState.role]);
    this.settleReads();
    this.maybeSnapshot(ready.snapshotRequested);
    if (this.applied !== before) this.notifyApplied();
  }

  private apply(e: RaftEntry): void {
    if (e.index <= this.applied) return;
    this.term = Math.max(this.term, e.term);
    if (e.kind === 'normal' && e.data.length === 0) {
      this.state.advanceTo(e.index); // the new leader's empty entry
    } else if (e.kind === 'normal') {
      let env: Envelope | undefined;
      try {
        env = JSON.parse(Buffer.from(e.data).toString('utf8')) as Envelope;
      } catch {
        env = undefined;
      }
      // A malformed entry is applied as a rejected command on every replica alike.
      const outcome = this.applyCommand(env?.c, e.index);
      if (env) this.settle(this.proposals, env.p, 'proposal', outcome);
    } else {
      this.applyConfChange(e);
    }
    this.applied = e.index;
    this.metrics.applied.set(e.index);
  }

  /** The state machine rejects what it cannot apply; a throw is a bug, recorded as a rejection too. */
  private applyCommand(command: unknown, index: number): CommandOutcome {
    try {
      return this.state.apply(command, index);
    } catch (e) {
      if (this.state.appliedIndex < index) this.state.advanceTo(index);
      this.metrics.rejectedEntries.inc({ kind: 'command' });
      return {
        ok: false,
        error: {
          code: 'ERR_INVALID_ARGUMENT',
          message: `the state machine could not apply entry ${index}: ${(e as Error).message}`,
        },
      };
    }
  }

  /**
   * A conf change raft-rs refuses is a no-op here too, and its proposer gets ERR_CONFLICT. An
   * applied removal also marks the removed node's record, in the same entry, on every replica.
   */
  private applyConfChange(e: RaftEntry): void {
    const result = this.node.applyConfChange(e);
    let context: { p?: string } = {};
    try {
      context = JSON.parse(Buffer.from(e.context).toString('utf8')) as { p?: string };
    } catch {
      context = {};
    }
    if (result.rejected !== undefined) {
      this.state.advanceTo(e.index);
      this.metrics.rejectedEntries.inc({ kind: 'conf-change' });
      if (context.p)
        this.refuse(
          this.confChanges,
          context.p,
          'membership change',
          new DomainError('ERR_CONFLICT', `membership change refused by Raft: ${result.rejected}`),
        );
      return;
    }
    const removedNode =
      result.change?.kind === 'removeNode'
        ? this.state.listNodes().find((n) => n.raftId === result.change?.nodeId && n.status !== 'removed')
        : undefined;
    if (removedNode) this.applyCommand({ type: 'node.remove', nodeId: removedNode.id }, e.index);
    else this.state.advanceTo(e.index);
    const { voters, learners } = result.membership;
    this.io.onMembership?.(voters, learners, context);
    if (context.p) this.settle(this.confChanges, context.p, 'membership change', undefined);
    if (!voters.includes(this.raftId) && !learners.includes(this.raftId)) {
      this.selfRemoved = true;
      for (const resolve of this.removalWaiters.splice(0)) resolve();
    }
  }

  private onSoftState(leader: number, role: RaftRole): void {
    const was = this.leader;
    this.leader = leader === 0 ? null : leader;
    this.role = role;
    const s = this.node.status();
    this.term = s.term;
    this.metrics.term.set(s.term);
    this.metrics.isLeader.set(role === 'leader' ? 1 : 0);
    if (was !== this.leader) this.metrics.leaderChanges.inc();
  }

  private settleReads(): void {
    for (const [id, w] of this.reads) {
      if (w.index !== undefined && w.index <= this.applied) this.settle(this.reads, id, 'read', undefined);
    }
  }

  private maybeSnapshot(requested: boolean): void {
    if (this.applied <= this.lastSnapshot) return;
    if (!requested && this.applied - this.lastSnapshot < this.options.snapshotEvery) return;
    this.node.compact(this.applied, this.state.snapshot());
    this.lastSnapshot = this.applied;
    this.metrics.snapshots.inc();
  }
}

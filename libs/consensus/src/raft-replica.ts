/**
 * One member of the Raft group: drives the native raft-rs node (ticks, Ready cycles), applies
 * committed entries to the in-memory cluster state machine in log order, and settles the
 * proposals and ReadIndex reads that this process started. Sockets are not its concern: it
 * hands outgoing messages to `send` and takes incoming ones through `step`.
 */
import { randomUUID } from 'node:crypto';
import { ClusterStateMachine, type CommandOutcome, DomainError } from '@novacron/cluster-state';
import {
  NativeError,
  type RaftRole as NativeRaftRole,
  type RaftEntry,
  type RaftNode,
  type RaftReady,
} from '@novacron/native';
import type { AcpMetrics } from './metrics';
import { TickPolicy } from './tick-policy';

export type RaftRole = 'leader' | 'follower' | 'candidate' | 'pre-candidate' | 'learner';

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
      this.node.tick();
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
    return this.role === 'leader';
  }
  get leaderId(): number | null {
    return this.leader;
  }
  get appliedIndex(): number {
    return this.applied;
  }
  get currentRole(): RaftRole {
    return this.role;
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
          // A late reply from a peer that has left the configuration: harmless (docs/acp.md).
          if (!(e instanceof NativeError && e.code === 'ERR_ACP_UNKNOWN_PEER')) throw e;
        }
      }
    } finally {
      this.scheduleDrain();
    }
  }

  /** Proposes a command on this node, which must be the leader; resolves with its outcome once applied here. */
  propose(command: unknown): Promise<CommandOutcome> {
    if (!this.isLeader)
      return Promise.reject(new DomainError('ERR_UNAVAILABLE', 'this node is not the leader'));
    const id = randomUUID();
    const data = Buffer.from(JSON.stringify({ p: id, c: command } satisfies Envelope));
    return this.wait(this.proposals, id, 'proposal', () => this.node.propose(data));
  }

  /** Proposes adding or removing a voter; resolves once the change is applied here. */
  changeMembership(kind: 'addNode' | 'removeNode', nodeId: number, context: object): Promise<void> {
    if (!this.isLeader)
      return Promise.reject(new DomainError('ERR_UNAVAILABLE', 'this node is not the leader'));
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
          (e.code === 'ERR_ACP_PROPOSAL_DROPPED' || e.code === 'ERR_ACP_NOT_LEADER');
        reject(
          refused ? new DomainError('ERR_UNAVAILABLE', `this node is not the leader (${e.message})`) : e,
        );
        return;
      }
      this.scheduleDrain();
    });
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

  /** Runs Ready cycles until raft has nothing more: persist (native), send, apply, settle. */
  private drain(): void {
    while (!this.closed && this.node.hasReady()) this.handle(this.node.ready());
  }

  private handle(ready: RaftReady): void {
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
      const outcome = this.state.apply(env?.c, e.index);
      if (env) this.settle(this.proposals, env.p, 'proposal', outcome);
    } else {
      this.state.advanceTo(e.index);
      const conf = this.node.applyConfChange(e);
      let context: { p?: string } = {};
      try {
        context = JSON.parse(Buffer.from(e.context).toString('utf8')) as { p?: string };
      } catch {
        context = {};
      }
      this.io.onMembership?.(conf.voters, conf.learners, context);
      if (context.p) this.settle(this.confChanges, context.p, 'membership change', undefined);
    }
    this.applied = e.index;
    this.metrics.applied.set(e.index);
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

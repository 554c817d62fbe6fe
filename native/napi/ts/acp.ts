/**
 * ACP through the addon: one Raft node (tikv's raft-rs) over a data directory, driven from TS.
 * Sans-IO: time passes by `tick()`, peers' messages come in by `step()`, and `ready()` persists
 * (fsync) and then returns what to send and what to apply. See docs/acp.md for the contract.
 */
import * as binding from '../binding';
import { asBuffer, call } from './errors';

export interface RaftNodeConfig {
  /** Non-zero, unique in the cluster, at most Number.MAX_SAFE_INTEGER. */
  id: number;
  /** Created if missing; holds `raft.redb`. One node id per directory. */
  dataDir: string;
  /** Ticks without a leader before campaigning (raft-rs randomizes in [e, 2e)). */
  electionTick: number;
  /** Ticks between heartbeats; less than `electionTick`. */
  heartbeatTick: number;
  /** Voters of a new cluster, used only when `dataDir` is blank; omit to join an existing one. */
  initialVoters?: number[];
  /** Default true. */
  preVote?: boolean;
  /** Default true. */
  checkQuorum?: boolean;
  /** Entry bytes per append message. Default 1 MiB. */
  maxSizePerMsg?: number;
  /** Append messages in flight per follower. Default 256. */
  maxInflightMsgs?: number;
}

export type RaftRole = 'follower' | 'candidate' | 'leader' | 'preCandidate';
export type RaftEntryKind = 'normal' | 'confChange' | 'confChangeV2';
export type RaftConfChangeKind = 'addNode' | 'removeNode' | 'addLearner';

/** Hand `bytes` to node `to`'s `step()`. */
export interface RaftMessage {
  to: number;
  bytes: Buffer;
}

/** A committed entry. Empty `normal` data is a new leader's no-op. */
export interface RaftEntry {
  index: number;
  term: number;
  kind: RaftEntryKind;
  data: Buffer;
  context: Buffer;
}

/** A `readIndex` read is linearizable once the state machine has applied `index`. */
export interface RaftReadState {
  index: number;
  requestCtx: Buffer;
}

export interface RaftSoftState {
  leaderId: number;
  role: RaftRole;
}

export interface RaftMembership {
  voters: number[];
  learners: number[];
  /** Outgoing voters of a joint configuration; empty otherwise. */
  votersOutgoing: number[];
}

/** Replace the state machine with `data` before applying the same Ready's entries. */
export interface RaftSnapshot {
  index: number;
  term: number;
  data: Buffer;
  membership: RaftMembership;
}

/** One Ready cycle. Everything in it is already on disk. */
export interface RaftReady {
  messages: RaftMessage[];
  committedEntries: RaftEntry[];
  readStates: RaftReadState[];
  softState?: RaftSoftState;
  snapshot?: RaftSnapshot;
  /** A peer needs a snapshot newer than the stored one: call `compact()` soon. */
  snapshotRequested: boolean;
}

/** What applying a conf-change entry did. */
export interface RaftAppliedConfChange {
  /** The membership after the entry; unchanged when it was rejected. */
  membership: RaftMembership;
  /** The change it asked for; absent for a joint change or one that does not decode. */
  change?: { kind: RaftConfChangeKind; nodeId: number };
  /**
   * Why it changed nothing (raft-rs refused it, e.g. it would remove the last voter, or it does
   * not decode). Every replica reaches the same verdict, at apply time and on replay.
   */
  rejected?: string;
}

export interface RaftStatus {
  id: number;
  term: number;
  leaderId: number;
  role: RaftRole;
  commit: number;
  applied: number;
  firstIndex: number;
  lastIndex: number;
  voters: number[];
  learners: number[];
  /** This node applied its own removal: it no longer ticks, steps messages or proposes. */
  removed: boolean;
}

export interface RaftConfChange {
  kind: RaftConfChangeKind;
  nodeId: number;
  context?: Uint8Array;
}

function membership(m: binding.BindingRaftMembership): RaftMembership {
  return { voters: m.voters, learners: m.learners, votersOutgoing: m.votersOutgoing };
}

/**
 * One Raft node. Errors are NativeErrors with an `ERR_ACP_*` code. Every committed entry of a
 * `ready()` must be applied (and `applyConfChange` called for each conf change) before the
 * next `ready()`.
 */
export class RaftNode {
  private constructor(readonly handle: binding.RaftNode) {}

  static open(config: RaftNodeConfig): RaftNode {
    return new RaftNode(call(() => binding.RaftNode.open(config)));
  }

  /** One unit of logical time. */
  tick(): void {
    call(() => this.handle.tick());
  }

  /** A peer's message; bad bytes throw `ERR_ACP_BAD_MESSAGE`. */
  step(message: Uint8Array): void {
    call(() => this.handle.step(asBuffer(message)));
  }

  /** Leader only (`ERR_ACP_NOT_LEADER` elsewhere). Returns the entry's index. */
  propose(data: Uint8Array, context?: Uint8Array): number {
    return call(() =>
      this.handle.propose(asBuffer(data), context === undefined ? undefined : asBuffer(context)),
    );
  }

  /** Leader only, one at a time. Returns the entry's index. */
  proposeConfChange(change: RaftConfChange): number {
    const ctx = change.context === undefined ? undefined : asBuffer(change.context);
    return call(() => this.handle.proposeConfChange(change.kind, change.nodeId, ctx));
  }

  /** A linearizable read; its RaftReadState comes out of a later `ready()`. */
  readIndex(context: Uint8Array): void {
    call(() => this.handle.readIndex(asBuffer(context)));
  }

  campaign(): void {
    call(() => this.handle.campaign());
  }

  transferLeader(id: number): void {
    call(() => this.handle.transferLeader(id));
  }

  reportUnreachable(id: number): void {
    call(() => this.handle.reportUnreachable(id));
  }

  reportSnapshot(id: number, ok: boolean): void {
    call(() => this.handle.reportSnapshot(id, ok));
  }

  hasReady(): boolean {
    return call(() => this.handle.hasReady());
  }

  /** Persists (fsync), advances raft-rs, and returns what to send and apply. */
  ready(): RaftReady {
    const r = call(() => this.handle.ready());
    const out: RaftReady = {
      messages: r.messages,
      committedEntries: r.committedEntries.map((e) => ({ ...e, kind: e.kind as RaftEntryKind })),
      readStates: r.readStates,
      snapshotRequested: r.snapshotRequested,
    };
    if (r.softState != null)
      out.softState = { leaderId: r.softState.leaderId, role: r.softState.role as RaftRole };
    if (r.snapshot != null) out.snapshot = { ...r.snapshot, membership: membership(r.snapshot.membership) };
    return out;
  }

  /**
   * Applies the committed conf change at `entry` (or its index). Never refuses a committed entry:
   * one raft-rs rejects comes back with `rejected` set and changed nothing.
   */
  applyConfChange(entry: RaftEntry | number): RaftAppliedConfChange {
    const index = typeof entry === 'number' ? entry : entry.index;
    const a = call(() => this.handle.applyConfChange(index));
    const out: RaftAppliedConfChange = { membership: membership(a.membership) };
    if (a.kind != null && a.nodeId != null)
      out.change = { kind: a.kind as RaftConfChangeKind, nodeId: a.nodeId };
    if (a.rejected != null) out.rejected = a.rejected;
    return out;
  }

  /** Stores `data` (the state machine at `appliedIndex`) as the snapshot and compacts the log. */
  compact(appliedIndex: number, data: Uint8Array): boolean {
    return call(() => this.handle.compact(appliedIndex, asBuffer(data)));
  }

  status(): RaftStatus {
    const s = call(() => this.handle.status());
    return { ...s, role: s.role as RaftRole };
  }

  /** Releases the data directory. */
  close(): void {
    this.handle.close();
  }
}

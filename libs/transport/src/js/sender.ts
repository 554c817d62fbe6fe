/**
 * The sending half (port of `amst/src/sender.rs`): frames the stream, schedules each frame onto a
 * connection, keeps it until it is acknowledged, and moves the frames of a dead or stalled
 * connection to the others. Sans-IO: time is an argument in milliseconds, outputs are pulled.
 */

import { Conn, type ConnId, type JsConnStats } from './conn';
import { AmstError } from './error';
import { type Ack, DATA_HEADER_LEN, dataHeader, encodeFin, FIN_SEQ } from './frame';
import { JsPacer } from './pacer';
import { SeqSet } from './seq-set';

export { FIN_SEQ };

/** Sender settings. */
export interface JsSenderConfig {
  /** Payload bytes per DATA frame. */
  frameSize: number;
  /** Bytes accepted from the producer and not yet acknowledged; `write` refuses more. */
  sendBuffer: number;
  /** Bytes a connection may hold unacknowledged before it has been measured. */
  initialWindow: number;
  /**
   * A connection with frames in flight and no ack for this long (or 4 × its srtt, if longer) is
   * declared failed and its frames go elsewhere.
   */
  stallTimeoutMs: number;
  /** An optional cap in bytes per second over all connections. */
  rateCap: number | null;
}

export const DEFAULT_SENDER_CONFIG: Readonly<JsSenderConfig> = {
  frameSize: 64 * 1024,
  sendBuffer: 64 * 1024 * 1024,
  initialWindow: 256 * 1024,
  stallTimeoutMs: 3000,
  rateCap: null,
};

/** Checks ranges, naming the bad field. */
export function validateSenderConfig(c: JsSenderConfig): void {
  if (!Number.isInteger(c.frameSize) || c.frameSize < 1024 || c.frameSize > 4 * 1024 * 1024) {
    throw AmstError.invalidParam('frameSize', `${c.frameSize} is outside 1024..=4194304`);
  }
  if (!Number.isSafeInteger(c.sendBuffer) || c.sendBuffer < 2 * c.frameSize) {
    throw AmstError.invalidParam('sendBuffer', 'must hold at least two frames');
  }
  if (!Number.isSafeInteger(c.initialWindow) || c.initialWindow < c.frameSize) {
    throw AmstError.invalidParam('initialWindow', 'must hold at least one frame');
  }
  if (!(Number.isFinite(c.stallTimeoutMs) && c.stallTimeoutMs >= 0)) {
    throw AmstError.invalidParam('stallTimeoutMs', 'must be a finite number of milliseconds');
  }
  checkRateCap(c.rateCap);
}

function checkRateCap(rate: number | null): void {
  if (rate === 0) throw AmstError.invalidParam('rateCap', '0 would never send; omit it for no cap');
  if (rate !== null && !(Number.isFinite(rate) && rate > 0)) {
    throw AmstError.invalidParam('rateCap', `${rate} is not a positive number of bytes per second`);
  }
}

/** One unit of output: bytes to write on a connection. */
export interface JsTransmit {
  /** Where to write. */
  conn: ConnId;
  /** The frame header (or the whole control frame). */
  header: Buffer;
  /** The payload, empty for control frames. Shared with the sender: do not modify. */
  payload: Buffer;
}

/** Something the runtime must act on. */
export type JsSenderEvent =
  /** The connection stalled; its frames were moved. Close it (and maybe open another). */
  | { type: 'connectionFailed'; conn: ConnId }
  /** A retiring connection has drained. Close it. */
  | { type: 'connectionRetired'; conn: ConnId };

/** Stream-wide counters. */
export interface JsSenderStats {
  /** Bytes accepted from the producer. */
  bytesWritten: number;
  /** Bytes delivered in order to the receiver. */
  bytesAcked: number;
  /** DATA frames handed to connections, first sends and resends. */
  framesSent: number;
  /** Of those, resends after a connection failed or stalled. */
  framesResent: number;
  /** Live connections. */
  connections: number;
}

interface Pending {
  data: Buffer;
  /** The connection carrying it, if in flight. */
  conn: ConnId | null;
  sentAt: number;
  /** The carrying connection's delivered bytes at send, for its rate sample. */
  deliveredAtSend: number;
}

const EMPTY = Buffer.alloc(0);

/** The sending state machine. Method groups: getters, `handle*` inputs, mutators, `poll*` outputs. */
export class JsSender {
  private readonly config: JsSenderConfig;
  private readonly conns = new Map<ConnId, Conn>();
  /** `conns` in id order: the scheduler's tie-breaks and event order follow it, as in Rust. */
  private ordered: Conn[] = [];
  /** Every frame not yet acknowledged, queued or in flight. */
  private readonly frames = new Map<number, Pending>();
  /** Frames taken off a failed connection, to go out again first. */
  private readonly resend = new SeqSet();
  /** Bytes written that do not yet fill a frame. */
  private partial: Buffer;
  private partialLen = 0;
  private nextSeq = 0;
  /** The lowest sequence number never handed to a connection. */
  private nextNew = 0;
  /** Every frame below this is delivered in order. */
  private cumulative = 0;
  /** The receiver accepts frames below `cumulative + peerWindow`. */
  private peerWindow = 64;
  private buffered = 0;
  private finishing = false;
  private finConn: ConnId | null = null;
  /**
   * A FIN went out at least once. A FIN's ack covering every frame counts whichever connection
   * it comes on, even after the FIN's own connection closed: it says the receiver holds the whole
   * stream, and the receiver may have closed the FIN's connection after acking on another.
   */
  private finSent = false;
  private finAcked = false;
  private readonly pacer: JsPacer;
  private paceUntil: number | null = null;
  private events: JsSenderEvent[] = [];
  private readonly counters = { bytesWritten: 0, bytesAcked: 0, framesSent: 0, framesResent: 0 };

  /** A sender with validated settings (missing ones take the defaults). */
  constructor(config: Partial<JsSenderConfig> = {}) {
    const c = { ...DEFAULT_SENDER_CONFIG, ...config };
    validateSenderConfig(c);
    this.config = c;
    this.pacer = new JsPacer(c.rateCap, c.frameSize * 4);
    this.partial = Buffer.allocUnsafe(c.frameSize);
  }

  // ---- getters ----

  /** Stream-wide counters. */
  stats(): JsSenderStats {
    return { ...this.counters, connections: this.conns.size };
  }

  /** Per-connection measurements. */
  connStats(): JsConnStats[] {
    return this.ordered.map((c) => c.stats(this.config.initialWindow));
  }

  /** Bytes `write` would accept now (backpressure: 0 means wait for acks). */
  writable(): number {
    if (this.finishing) return 0;
    return Math.max(0, this.config.sendBuffer - this.buffered);
  }

  /** Bytes written that wait for more to fill a frame; `flush` sends them. */
  unflushed(): number {
    return this.partialLen;
  }

  /** Whether every byte and the end of the stream are acknowledged. */
  isFinished(): boolean {
    return this.finAcked;
  }

  /** Whether the stream is ended and every data frame acknowledged: only the FIN's ack may be missing. */
  allDataAcked(): boolean {
    return this.finishing && this.cumulative === this.nextSeq;
  }

  /** Live connection ids, in order. */
  connections(): ConnId[] {
    return this.ordered.map((c) => c.id);
  }

  // ---- handle* inputs ----

  /** A new connection is up and may carry frames. */
  handleConnected(id: ConnId, now: number): void {
    if (this.conns.has(id)) return;
    this.conns.set(id, new Conn(id, now));
    this.reorderConns();
  }

  /**
   * A connection is gone (closed, reset, refused). Its unacknowledged frames go out again on the
   * others, so nothing is lost; the receiver drops any duplicate.
   */
  handleDisconnected(id: ConnId): void {
    const conn = this.conns.get(id);
    if (conn === undefined) return;
    this.conns.delete(id);
    this.reorderConns();
    for (const seq of conn.inflight) {
      const p = this.frames.get(seq);
      if (p !== undefined) {
        p.conn = null;
        this.resend.add(seq);
      }
    }
    if (this.finConn === id && !this.finAcked) this.finConn = null;
  }

  /** An ACK arrived on connection `id`. */
  handleAck(id: ConnId, ack: Ack, now: number): void {
    if (ack.cumulative > this.nextNew) {
      throw AmstError.protocol(`ack cumulative ${ack.cumulative} beyond the ${this.nextNew} frames sent`);
    }
    this.peerWindow = ack.window;
    if (ack.seq === FIN_SEQ) {
      if (this.finSent && ack.cumulative === this.nextSeq) this.finAcked = true;
    } else {
      this.ackOne(id, ack.seq, now);
    }
    while (this.cumulative < ack.cumulative) {
      this.ackOne(id, this.cumulative, now);
      this.cumulative += 1;
    }
  }

  /** Time has passed: detects stalled connections. */
  handleTimeout(now: number): void {
    if (this.paceUntil !== null && this.paceUntil <= now) this.paceUntil = null;
    const isStalled = (c: Conn) => c.inflight.size > 0 && now >= c.lastProgress + this.stallTimeout(c);
    if (!this.ordered.some(isStalled)) return;
    for (const c of this.ordered.filter(isStalled)) {
      this.handleDisconnected(c.id);
      this.events.push({ type: 'connectionFailed', conn: c.id });
    }
  }

  // ---- mutators ----

  /** Accepts up to `writable()` bytes of the stream (copied); returns how many. */
  write(data: Uint8Array): number {
    const take = Math.min(data.length, this.writable());
    let at = 0;
    while (at < take) {
      const n = Math.min(this.config.frameSize - this.partialLen, take - at);
      this.partial.set(data.subarray(at, at + n), this.partialLen);
      this.partialLen += n;
      at += n;
      if (this.partialLen === this.config.frameSize) this.sealFrame();
    }
    this.buffered += take;
    this.counters.bytesWritten += take;
    return take;
  }

  /** Sends what is written so far without waiting to fill a frame. */
  flush(): void {
    if (this.partialLen > 0) this.sealFrame();
  }

  /** Ends the stream: no more writes; a FIN follows the last frame. */
  finish(): void {
    this.flush();
    this.finishing = true;
  }

  /** Stops giving new frames to `id`; it is reported retired once it has drained. */
  retire(id: ConnId): void {
    const c = this.conns.get(id);
    if (c !== undefined) c.retiring = true;
    this.reapRetired();
  }

  /** Changes the rate cap (bytes per second), e.g. from the bandwidth predictor. */
  setRateCap(rate: number | null): void {
    checkRateCap(rate);
    this.pacer.setRate(rate);
  }

  // ---- poll* outputs ----

  /** The next frame to write, and where. `null`: nothing may go now; see `pollTimeout`. */
  pollTransmit(now: number): JsTransmit | null {
    if (this.paceUntil !== null && this.paceUntil > now) return null;
    const seq = this.nextToSend();
    if (seq === null) return this.pollFin();
    const p = this.frames.get(seq);
    if (p === undefined) return null;
    const len = p.data.length;
    const conn = this.pickConnection(len);
    if (conn === null) return null;
    const at = this.pacer.delayUntil(len + DATA_HEADER_LEN, now);
    if (at !== null) {
      this.paceUntil = at;
      return null;
    }
    this.pacer.onSent(len + DATA_HEADER_LEN, now);
    const resent = this.resend.delete(seq);
    if (!resent) this.nextNew += 1;
    conn.onSent(seq, len, now);
    p.conn = conn.id;
    p.sentAt = now;
    p.deliveredAtSend = conn.delivered;
    this.counters.framesSent += 1;
    if (resent) {
      this.counters.framesResent += 1;
      conn.movedFrames += 1;
    }
    return { conn: conn.id, header: dataHeader(seq, len), payload: p.data };
  }

  /** The earliest time (ms) `handleTimeout` should be called. */
  pollTimeout(): number | null {
    let at = this.paceUntil;
    for (const c of this.ordered) {
      if (c.inflight.size === 0) continue;
      const stall = c.lastProgress + this.stallTimeout(c);
      if (at === null || stall < at) at = stall;
    }
    return at;
  }

  /** Connection events for the runtime. */
  pollEvent(): JsSenderEvent | null {
    return this.events.shift() ?? null;
  }

  // ---- internals ----

  private reorderConns(): void {
    this.ordered = [...this.conns.values()].sort((a, b) => a.id - b.id);
  }

  private sealFrame(): void {
    const data = this.partial.subarray(0, this.partialLen);
    this.frames.set(this.nextSeq, { data, conn: null, sentAt: 0, deliveredAtSend: 0 });
    this.nextSeq += 1;
    this.partial = Buffer.allocUnsafe(this.config.frameSize);
    this.partialLen = 0;
  }

  private nextToSend(): number | null {
    const first = this.resend.first();
    if (first !== undefined) return first;
    const inWindow = this.nextNew < this.cumulative + this.peerWindow;
    return this.nextNew < this.nextSeq && inWindow ? this.nextNew : null;
  }

  /**
   * Earliest-completion-first: the active connection expected to deliver a `len`-byte frame
   * first, counting the queue it must drain. If that one has no room in its window, nothing goes
   * now: handing the frame to a slower connection would deliver it later, and a frame late to the
   * reorder buffer holds up the whole stream. Connections not yet measured get one frame at a
   * time, so that they are measured.
   */
  private pickConnection(len: number): Conn | null {
    let best: Conn | null = null;
    let bestAt = Number.POSITIVE_INFINITY;
    for (const c of this.ordered) {
      if (c.retiring) continue;
      if (c.deliveryRate === 0 && c.inflight.size === 0) return c;
      if (c.deliveryRate > 0) {
        const at = c.expectedDelivery(len);
        // Strictly less: the first of equals wins, like Rust's `min_by`.
        if (best === null || at < bestAt) {
          best = c;
          bestAt = at;
        }
      }
    }
    if (best === null) return null;
    const fits =
      best.inflight.size === 0 || best.inflightBytes + len <= best.window(this.config.initialWindow);
    return fits ? best : null;
  }

  private pollFin(): JsTransmit | null {
    const allSent = this.finishing && this.nextNew === this.nextSeq && this.resend.size === 0;
    if (!allSent || this.finConn !== null || this.finAcked) return null;
    const conn = this.ordered.find((c) => !c.retiring) ?? this.ordered[0];
    if (conn === undefined) return null;
    this.finConn = conn.id;
    this.finSent = true;
    return { conn: conn.id, header: encodeFin(this.nextSeq, this.counters.bytesWritten), payload: EMPTY };
  }

  private ackOne(id: ConnId, seq: number, now: number): void {
    const p = this.frames.get(seq);
    if (p === undefined) return;
    this.frames.delete(seq);
    if (this.resend.size > 0) this.resend.delete(seq);
    const len = p.data.length;
    this.buffered -= len;
    if (p.conn === id) {
      this.conns.get(id)?.onAcked(seq, len, p.sentAt, p.deliveredAtSend, now);
    } else if (p.conn !== null) {
      this.conns.get(p.conn)?.forget(seq, len);
    }
    this.counters.bytesAcked += len;
    this.reapRetired();
  }

  private reapRetired(): void {
    if (!this.ordered.some((c) => c.retiring)) return;
    const drained = this.ordered.filter((c) => c.retiring && c.inflight.size === 0 && this.finConn !== c.id);
    if (drained.length === 0) return;
    for (const c of drained) {
      this.conns.delete(c.id);
      this.events.push({ type: 'connectionRetired', conn: c.id });
    }
    this.reorderConns();
  }

  private stallTimeout(c: Conn): number {
    return c.srtt === null ? this.config.stallTimeoutMs : Math.max(this.config.stallTimeoutMs, c.srtt * 4);
  }
}

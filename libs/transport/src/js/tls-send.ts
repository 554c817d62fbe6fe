/**
 * The sending runtime of the JS path: drives a `JsSender` over N `node:tls` connections, opening,
 * replacing and retiring them as the sender and the stream-count controller say. Its connection
 * rules are those of the native `ConnectionPool` (`native/crates/amst/src/pool.rs`): dial up to
 * the target, one at a time while dials fail; a connection is proven by its first ack; a failed
 * dial or an unproven connection's end costs one attempt, and connections lost together cost one;
 * no re-dial once every data frame is acked while a connection is left for the FIN; fail only with
 * nothing up or dialing and the attempts spent.
 */

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type ConnectionOptions, connect, type TLSSocket } from 'node:tls';
import { type JsAdaptConfig, JsStreamCountController } from './adapt';
import { ByteQueue } from './byte-queue';
import type { JsConnStats } from './conn';
import { AmstError } from './error';
import { ACK_LEN, frameLength, parseFrame } from './frame';
import { encodeHello } from './hello';
import { JsSender, type JsSenderConfig, type JsSenderStats } from './sender';
import { clientTlsOptions, JsAbortError, type TlsIdentity } from './tls-identity';

export interface JsSendOptions {
  host: string;
  port: number;
  /** The name the receiver's certificate must carry (a DNS SAN). */
  serverName: string;
  identity: TlsIdentity;
  /** A fixed number of connections, or `'adaptive'` (the default) for the stream-count controller. */
  streams?: number | 'adaptive';
  /** Settings of the controller when `streams` is `'adaptive'`. */
  adapt?: Partial<JsAdaptConfig>;
  /** A cap in bytes per second over all connections. */
  rateCap?: number;
  /** Frame size, send buffer, initial window, stall timeout. */
  sender?: Partial<Omit<JsSenderConfig, 'rateCap'>>;
  /** Cancels the transfer: every socket is destroyed and the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** TCP connect plus TLS handshake, per connection. Default 10 s. */
  connectTimeoutMs?: number;
  /**
   * Connection attempts in a row that may fail before the sender stops dialing (default 5, as
   * native); an ack restores them. An attempt has failed if the connection closes before its
   * first ack: with TLS 1.3 a receiver that refuses this node's certificate does so after the
   * client's handshake is done. Connections dialed before a counted failure and lost after it
   * share its cause and cost nothing more. With the attempts spent and no connection left the
   * transfer fails with `ERR_AMST_NO_CONNECTION`. A failed handshake with no other connection up
   * fails the transfer at once (`ERR_AMST_TLS`).
   */
  maxDialFailures?: number;
  /** Called with each connection as it is opened (metrics, fault injection in tests). */
  onConnection?: (c: JsClientConnection) => void;
}

export interface JsClientConnection {
  /** The connection's id in the hello and in `JsConnStats.id`. */
  index: number;
  socket: TLSSocket;
}

export interface JsSendResult {
  /** The transfer's session id (hex), as the receiver's stream reports it. */
  sessionId: string;
  /** Bytes delivered in order and acknowledged. */
  bytes: number;
  /** From the call to the acknowledgement of the end of the stream. */
  seconds: number;
  stats: JsSenderStats;
  /** Every connection that carried frames, with its last measurements, by id. */
  connections: JsConnStats[];
  /** Each change of the stream-count target, in order (adaptive only). */
  streamTargets: number[];
}

/**
 * Sends `source` as one ordered stream to a `listenJs` receiver and resolves once the receiver
 * has acknowledged all of it. Backpressure: `source` is pulled only while the sender's buffer has
 * room, which it regains as frames are acknowledged.
 */
export function sendJs(options: JsSendOptions, source: AsyncIterable<Uint8Array>): Promise<JsSendResult> {
  return new Promise((resolve, reject) => {
    new TlsSendSession(options, source, resolve, reject).start();
  });
}

interface ClientConn {
  index: number;
  socket: TLSSocket;
  /** `handshake` until TLS is up and the hello sent; `retiring` once told to drain. */
  state: 'handshake' | 'up' | 'retiring';
  /** An ack came back: the receiver took the connection. */
  proven: boolean;
  /** TCP connected (so a later error before 'secureConnect' is the TLS handshake's). */
  tcpUp: boolean;
  queue: ByteQueue;
  /** `write` returned false and 'drain' has not come yet. */
  blocked: boolean;
  corked: boolean;
  /** Closed on purpose before it was up (the target went down): not a failed attempt. */
  cancelled: boolean;
  connectTimer: NodeJS.Timeout | null;
  /** The socket's error, if it had one; an `ERR_AMST_TLS` one if the handshake failed. */
  error: Error | null;
}

/** How a connection that ended before its first ack is described in `ERR_AMST_NO_CONNECTION`. */
const UNPROVEN = 'was lost before anything on it was acknowledged';
/** Waits this long for more of the source before sending a partial frame. */
const FLUSH_DELAY_MS = 1;
/** After the end is acknowledged, sockets that do not close on their own are destroyed. */
const CLOSE_GRACE_MS = 2000;

class TlsSendSession {
  private readonly sender: JsSender;
  private readonly controller: JsStreamCountController | null;
  private readonly fixedStreams: number;
  private readonly sessionId = randomBytes(16);
  private readonly conns = new Map<number, ClientConn>();
  private readonly finalStats = new Map<number, JsConnStats>();
  private readonly targets: number[] = [];
  private readonly highWaterMark: number;
  private readonly connectTimeoutMs: number;
  private readonly maxDialFailures: number;
  private readonly startedAt = performance.now();
  private source: AsyncIterator<Uint8Array> | null = null;
  private chunk: Uint8Array | null = null;
  private pulling = false;
  private sourceDone = false;
  private nextIndex = 0;
  private dialFailures = 0;
  /** Unproven losses of connections with a lower index cost nothing (see `countDialFailure`). */
  private uncountedBelow = 0;
  /** The last connection lost after it was up, and how, for the error if the transfer fails. */
  private lastLost: { index: number; how: string } | null = null;
  private nextDialAt = 0;
  private lastError: unknown = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private flushTimer: NodeJS.Timeout | null = null;
  private blockedCount = 0;
  private driving = false;
  private again = false;
  /** Set once the outcome is decided; the promise settles when every socket has closed. */
  private outcome: { ok: JsSendResult } | { err: unknown } | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private settled = false;

  constructor(
    private readonly options: JsSendOptions,
    private readonly iterable: AsyncIterable<Uint8Array>,
    private readonly resolve: (r: JsSendResult) => void,
    private readonly reject: (e: unknown) => void,
  ) {
    const streams = options.streams ?? 'adaptive';
    if (streams !== 'adaptive' && !(Number.isInteger(streams) && streams >= 1 && streams <= 256)) {
      throw AmstError.invalidParam('streams', `${streams} is neither 1..=256 nor 'adaptive'`);
    }
    this.sender = new JsSender({ ...options.sender, rateCap: options.rateCap ?? null });
    this.controller = streams === 'adaptive' ? new JsStreamCountController(options.adapt) : null;
    this.fixedStreams = streams === 'adaptive' ? 0 : streams;
    const frameSize = options.sender?.frameSize ?? 64 * 1024;
    // Above the initial window, so only a connection whose kernel buffer is full pushes back.
    this.highWaterMark = Math.max(1024 * 1024, 4 * frameSize);
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.maxDialFailures = options.maxDialFailures ?? 5;
  }

  start(): void {
    const signal = this.options.signal;
    if (signal?.aborted) {
      this.reject(new JsAbortError(signal.reason));
      return;
    }
    signal?.addEventListener('abort', this.onAbort, { once: true });
    try {
      this.source = this.iterable[Symbol.asyncIterator]();
    } catch (err) {
      this.fail(err);
      return;
    }
    this.drive();
  }

  private readonly onAbort = (): void => {
    this.fail(new JsAbortError(this.options.signal?.reason));
  };

  private now(): number {
    return performance.now();
  }

  // ---- the pump ----

  /** Runs `step` until nothing more can happen now; re-entrant calls just ask for another round. */
  private drive(): void {
    if (this.driving) {
      this.again = true;
      return;
    }
    this.driving = true;
    try {
      do {
        this.again = false;
        this.step();
      } while (this.again && this.outcome === null);
    } catch (err) {
      this.fail(err);
    } finally {
      this.driving = false;
    }
  }

  private step(): void {
    if (this.outcome !== null) return;
    const now = this.now();
    this.feed();
    const due = this.sender.pollTimeout();
    if (due !== null && due <= now) this.snapshotAll(); // a stall removes the connection's stats
    this.sender.handleTimeout(now);
    for (let ev = this.sender.pollEvent(); ev !== null; ev = this.sender.pollEvent()) {
      const c = this.conns.get(ev.conn);
      if (c === undefined) continue;
      if (ev.type === 'connectionFailed') {
        this.lastLost = { index: c.index, how: 'stalled' };
        c.socket.destroy();
      } else {
        c.socket.end();
      }
    }
    if (this.controller !== null) {
      const target = this.controller.handleProgress(this.sender.stats().bytesAcked, now);
      if (target !== null) this.targets.push(target);
    }
    this.adjustConnections(now);
    if (this.outcome !== null) return;
    if (this.sender.isFinished()) {
      this.succeed();
      return;
    }
    this.transmit(now);
    this.armTimer(now);
  }

  /** Hands the sender what it accepts of the source, and asks the source for more if there is room. */
  private feed(): void {
    while (this.chunk !== null) {
      const n = this.sender.write(this.chunk);
      if (n === this.chunk.length) {
        this.chunk = null;
      } else {
        this.chunk = this.chunk.subarray(n);
        return;
      }
    }
    if (this.sourceDone || this.pulling || this.source === null || this.sender.writable() === 0) return;
    this.pull(this.source);
  }

  private pull(source: AsyncIterator<Uint8Array>): void {
    this.pulling = true;
    if (this.sender.unflushed() > 0 && this.flushTimer === null) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        if (this.pulling && this.outcome === null) {
          this.sender.flush();
          this.drive();
        }
      }, FLUSH_DELAY_MS);
    }
    const onResult = (r: IteratorResult<Uint8Array>) => {
      this.pulling = false;
      this.clearFlushTimer();
      if (this.outcome !== null) return;
      if (r.done) {
        this.sourceDone = true;
        this.sender.finish();
      } else if (r.value instanceof Uint8Array) {
        this.chunk = r.value;
      } else {
        this.fail(new TypeError('the source yielded something other than a Uint8Array'));
        return;
      }
      this.drive();
    };
    const onError = (err: unknown) => {
      this.pulling = false;
      this.fail(err);
    };
    try {
      source.next().then(onResult, onError);
    } catch (err) {
      onError(err);
    }
  }

  /** Opens connections up to the target, retires the newest ones above it, gives up when none can be had. */
  private adjustConnections(now: number): void {
    const target = this.controller?.target() ?? this.fixedStreams;
    const live = [...this.conns.values()].filter((c) => c.state !== 'retiring');
    for (let i = live.length - 1; i >= target; i--) {
      const c = live[i];
      if (c === undefined) continue;
      if (c.state === 'handshake') {
        c.cancelled = true;
        c.socket.destroy();
      } else {
        c.state = 'retiring';
        this.sender.retire(c.index);
        this.again = true;
      }
    }
    let open = Math.min(live.length, target);
    while (open < target && now >= this.nextDialAt && this.mayDial()) {
      this.dial();
      open += 1;
    }
    if (this.conns.size === 0 && this.dialFailures >= this.maxDialFailures) {
      this.fail(AmstError.noConnection(this.failureDetail(), this.lastError));
    }
  }

  private mayDial(): boolean {
    if (this.dialFailures >= this.maxDialFailures) return false;
    const conns = [...this.conns.values()].filter((c) => !c.cancelled);
    // The receiver may close the other connections once it has every frame, and a connection
    // left can carry the FIN; a new one would only meet a finished session.
    if (this.sender.allDataAcked() && conns.some((c) => c.state !== 'handshake')) return false;
    // While dials fail, probe with one at a time: the next once the last is proven or lost.
    return this.dialFailures === 0 || !conns.some((c) => !c.proven);
  }

  /** A failed dial, or a connection that ended before its first ack. */
  private countDialFailure(c: ClientConn): void {
    // A connection dialed before the last counted failure was seen most likely fails from the
    // same cause (one outage takes all the first connections): together they cost one attempt.
    if (c.index < this.uncountedBelow) return;
    this.dialFailures += 1;
    this.uncountedBelow = this.nextIndex;
    this.nextDialAt = this.now() + Math.min(1000, 50 * 2 ** (this.dialFailures - 1));
  }

  /** What happened, for `ERR_AMST_NO_CONNECTION`: the last connection lost, the attempts, the FIN. */
  private failureDetail(): string {
    const lost = this.lastLost;
    let detail = lost === null ? 'no connection came up: ' : `connection ${lost.index} ${lost.how}, and `;
    detail += `no connection to ${this.options.host}:${this.options.port} could be made again: ${this.dialFailures} attempts in a row failed`;
    if (lost !== null && lost.how === UNPROVEN) detail += ' (a connection lost before any ack counts as one)';
    if (this.sender.allDataAcked()) {
      detail +=
        '; every data frame was acknowledged, not the end of the stream: the receiver likely has it all and refuses a finished session';
    }
    return `${detail}; the last error: ${describe(this.lastError)}`;
  }

  private dial(): void {
    const index = this.nextIndex++;
    const { host, port, identity, serverName } = this.options;
    // `highWaterMark` reaches the TLSSocket (readable and writable sides) though @types/node omits it.
    const tlsOptions: ConnectionOptions & { highWaterMark: number } = {
      host,
      port,
      ...clientTlsOptions(identity, serverName),
      highWaterMark: this.highWaterMark,
    };
    const socket = connect(tlsOptions);
    const c: ClientConn = {
      index,
      socket,
      state: 'handshake',
      proven: false,
      tcpUp: false,
      queue: new ByteQueue(),
      blocked: false,
      corked: false,
      cancelled: false,
      connectTimer: null,
      error: null,
    };
    this.conns.set(index, c);
    c.connectTimer = setTimeout(() => {
      socket.destroy(new Error(`connection ${index} was not up within ${this.connectTimeoutMs} ms`));
    }, this.connectTimeoutMs);
    socket.setNoDelay(true);
    socket.once('connect', () => {
      c.tcpUp = true;
    });
    socket.once('secureConnect', () => this.onSecure(c));
    socket.on('data', (chunk: Buffer) => this.onData(c, chunk));
    socket.on('drain', () => {
      if (c.blocked) {
        c.blocked = false;
        this.blockedCount -= 1;
      }
      this.drive();
    });
    socket.on('error', (err) => {
      const inHandshake = c.state === 'handshake' && c.tcpUp && !isReset(err);
      c.error = inHandshake ? AmstError.tls(`${host}:${port}`, describe(err), err) : err;
      this.lastError = c.error;
    });
    socket.on('close', () => this.onClose(c));
    this.options.onConnection?.({ index, socket });
  }

  /** TLS is up and the receiver's name checked: say which transfer this is, and start using it. */
  private onSecure(c: ClientConn): void {
    clearTimer(c.connectTimer);
    c.connectTimer = null;
    if (this.outcome !== null) return;
    c.socket.write(encodeHello({ sessionId: this.sessionId, index: c.index }));
    c.state = 'up';
    this.sender.handleConnected(c.index, this.now());
    this.drive();
  }

  private onData(c: ClientConn, chunk: Buffer): void {
    if (this.outcome !== null) return;
    c.queue.push(chunk);
    const now = this.now();
    try {
      for (;;) {
        // The receiver sends only ACKs: a DATA frame is refused as too large for a 0-byte limit.
        const len = frameLength(c.queue.peek(Math.min(c.queue.length, ACK_LEN)), 0);
        if (len === null || c.queue.length < len) break;
        const parsed = parseFrame(c.queue.peek(len), 0);
        if (parsed === null) break;
        c.queue.consume(len);
        if (parsed.frame.kind !== 'ack') throw AmstError.protocol('a receiver sent data');
        if (!c.proven) {
          c.proven = true;
          this.dialFailures = 0;
          this.nextDialAt = 0;
        }
        this.sender.handleAck(c.index, parsed.frame.ack, now);
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.drive();
  }

  private onClose(c: ClientConn): void {
    clearTimer(c.connectTimer);
    if (c.blocked) this.blockedCount -= 1;
    this.conns.delete(c.index);
    if (this.outcome !== null) {
      if (this.conns.size === 0) this.settle();
      return;
    }
    if (c.state !== 'handshake') {
      this.snapshot(c.index);
      this.sender.handleDisconnected(c.index);
      if (c.error !== null || !c.proven)
        this.lastLost = { index: c.index, how: c.proven ? 'was lost' : UNPROVEN };
    }
    if (!c.proven && !c.cancelled) {
      this.countDialFailure(c);
      // TLS 1.3: a receiver that refuses this node's certificate just closes the connection.
      this.lastError = c.error ?? new Error(`connection ${c.index} was closed before its first ack`);
      // A refused handshake will be refused again: with nothing else up, give up now (as native).
      if (c.error instanceof AmstError && c.error.code === 'ERR_AMST_TLS' && !this.anyUp()) {
        this.fail(c.error);
        return;
      }
    }
    this.drive();
  }

  private anyUp(): boolean {
    for (const c of this.conns.values()) if (c.state !== 'handshake') return true;
    return false;
  }

  /** Writes what the sender releases, while no connection's socket buffer is full. */
  private transmit(now: number): void {
    const corked: ClientConn[] = [];
    while (this.blockedCount === 0) {
      const tx = this.sender.pollTransmit(now);
      if (tx === null) break;
      const c = this.conns.get(tx.conn);
      if (c === undefined) continue;
      if (!c.corked) {
        c.corked = true;
        c.socket.cork();
        corked.push(c);
      }
      c.socket.write(tx.header);
      const ok = tx.payload.length === 0 || c.socket.write(tx.payload);
      if (!ok && !c.blocked) {
        c.blocked = true;
        this.blockedCount += 1;
      }
    }
    for (const c of corked) {
      c.corked = false;
      c.socket.uncork();
    }
  }

  private armTimer(now: number): void {
    let at = this.sender.pollTimeout();
    const epoch = this.controller?.pollTimeout() ?? null;
    if (epoch !== null && (at === null || epoch < at)) at = epoch;
    if (this.nextDialAt > now && (at === null || this.nextDialAt < at)) at = this.nextDialAt;
    // A timer already due earlier will fire and re-arm; only an earlier deadline replaces it.
    if (at === null || at >= this.timerAt) return;
    clearTimer(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Number.POSITIVE_INFINITY;
        this.drive();
      },
      Math.max(0, Math.ceil(at - now)),
    );
  }

  // ---- outcome ----

  private snapshot(index: number): void {
    const s = this.sender.connStats().find((x) => x.id === index);
    if (s !== undefined) this.finalStats.set(index, s);
  }

  private snapshotAll(): void {
    for (const s of this.sender.connStats()) this.finalStats.set(s.id, s);
  }

  private succeed(): void {
    this.snapshotAll();
    const stats = this.sender.stats();
    this.decide({
      ok: {
        sessionId: this.sessionId.toString('hex'),
        bytes: stats.bytesAcked,
        seconds: (this.now() - this.startedAt) / 1000,
        stats,
        connections: [...this.finalStats.values()].sort((a, b) => a.id - b.id),
        streamTargets: this.targets,
      },
    });
    // Connections still in their handshake carry nothing: drop them rather than wait for them.
    for (const c of this.conns.values()) {
      if (c.state === 'handshake') c.socket.destroy();
      else c.socket.end();
    }
    this.closeTimer = setTimeout(() => {
      for (const c of this.conns.values()) c.socket.destroy();
    }, CLOSE_GRACE_MS);
    if (this.conns.size === 0) this.settle();
  }

  private fail(err: unknown): void {
    if (this.outcome !== null) return;
    this.decide({ err });
    for (const c of this.conns.values()) c.socket.destroy();
    this.source?.return?.().catch(() => {});
    if (this.conns.size === 0) this.settle();
  }

  private decide(outcome: { ok: JsSendResult } | { err: unknown }): void {
    this.outcome = outcome;
    this.options.signal?.removeEventListener('abort', this.onAbort);
    clearTimer(this.timer);
    this.clearFlushTimer();
  }

  /** Every socket has closed: no handle of this transfer is left when the promise settles. */
  private settle(): void {
    clearTimer(this.closeTimer);
    const outcome = this.outcome;
    if (outcome === null || this.settled) return;
    this.settled = true;
    if ('ok' in outcome) this.resolve(outcome.ok);
    else this.reject(outcome.err);
  }

  private clearFlushTimer(): void {
    clearTimer(this.flushTimer);
    this.flushTimer = null;
  }
}

function clearTimer(t: NodeJS.Timeout | null): void {
  if (t !== null) clearTimeout(t);
}

/** Errors of the TCP connection itself rather than of the TLS handshake over it. */
function isReset(err: Error): boolean {
  const code = 'code' in err ? err.code : undefined;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT' || 'syscall' in err;
}

function describe(err: unknown): string {
  if (err instanceof Error)
    return 'code' in err && typeof err.code === 'string' ? `${err.code}: ${err.message}` : err.message;
  return err === null ? 'no error reported' : String(err);
}

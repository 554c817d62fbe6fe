/**
 * The receiving runtime of the JS path: a mutual-TLS listener that groups incoming connections
 * into transfers by the session id of their hello, and hands each transfer out as a
 * `JsIncomingStream` that reassembles the stream with a `JsReceiver`.
 */

import { performance } from 'node:perf_hooks';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { ByteQueue } from './byte-queue';
import type { ConnId } from './conn';
import { AmstError } from './error';
import { ACK_LEN, type Ack, DATA_HEADER_LEN, encodeAck, frameLength, parseFrame, writeAck } from './frame';
import { HELLO_LEN, type Hello, parseHello } from './hello';
import { JsReceiver, type JsReceiverConfig, type JsReceiverStats } from './receiver';
import { serverTlsOptions, type TlsIdentity } from './tls-identity';

export interface JsListenOptions {
  host: string;
  /** 0 picks a free port; `JsListener.port` tells which. */
  port: number;
  identity: TlsIdentity;
  /**
   * Largest frame and reorder window (frames). A stream buffers at most `window × maxFrame`
   * bytes; the defaults are the native ones (4 MiB, 1024).
   */
  receiver?: Partial<JsReceiverConfig>;
  /** The TLS handshake, and then the hello, must each finish within this. Default 10 s. */
  handshakeTimeoutMs?: number;
  /**
   * With every connection of an unfinished stream gone, how long to wait for the sender to
   * reconnect before the stream fails. Default 10 s, as native.
   */
  orphanTimeoutMs?: number;
  /** A stream fails if a `read()` waits this long with no byte arriving on any connection. 0: never. Default 60 s. */
  idleTimeoutMs?: number;
  /** Transfers that may wait for `accept()`; the hellos of more are refused. Default 16. */
  maxPendingStreams?: number;
  /** Connections one transfer may hold at once. Default 256. */
  maxConnectionsPerStream?: number;
  /**
   * Told about every peer the listener refuses or closes: failed TLS handshakes (`ERR_AMST_TLS`:
   * wrong CA, expired, plaintext), refused hellos (`ERR_AMST_BAD_HELLO`) and connections that
   * broke the protocol (the core's codes). Must not throw.
   */
  onPeerError?: (err: AmstError, peer: JsPeerInfo) => void;
}

export interface JsPeerInfo {
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** The transfer, once the hello named it. */
  sessionId?: string;
}

export interface JsListener {
  /** The port listened on. */
  readonly port: number;
  /** The next incoming transfer. Rejects once the listener is closed. */
  accept(): Promise<JsIncomingStream>;
  /** Stops listening, closes every connection and fails every unfinished transfer. */
  close(): Promise<void>;
}

export interface JsIncomingStats {
  sessionId: string;
  receiver: JsReceiverStats;
  /** Bytes read from all connections, frames and hellos included. */
  wireBytes: number;
  /** Connections open now. */
  connections: number;
  /** Connections that ever joined the transfer. */
  connectionsSeen: number;
  /** Connections closed because they broke the protocol. */
  connectionsRefused: number;
}

/** Starts a mutual-TLS listener for AMST transfers. */
export async function listenJs(options: JsListenOptions): Promise<JsListener> {
  return new TlsListener(options).listen();
}

/**
 * Finished session ids remembered, so a late connection of an old transfer does not start it
 * again: it is answered with the transfer's final ack if the transfer completed, else refused.
 */
const CLOSED_SESSIONS_KEPT = 4096;
/** How long a late connection answered with its final ack may take to close after it. */
const ANSWER_CLOSE_MS = 5000;
/** After the whole stream arrived, connections the sender leaves open are closed after this. */
const LINGER_MS = 10_000;

class TlsListener implements JsListener {
  private readonly server: Server;
  private readonly sessions = new Map<string, JsIncomingStream>();
  /** Ended sessions, oldest first, with the final ack and the sender's fingerprint of a completed one. */
  private readonly closedSessions = new Map<string, { ack: Buffer; fingerprint: string } | null>();
  private readonly handshaking = new Set<TLSSocket>();
  /** Late connections of completed transfers, answered and closing. */
  private readonly answering = new Set<TLSSocket>();
  private readonly ready: JsIncomingStream[] = [];
  private readonly waiters: { resolve: (s: JsIncomingStream) => void; reject: (e: Error) => void }[] = [];
  private readonly handshakeTimeoutMs: number;
  private closed = false;
  port = 0;

  constructor(private readonly options: JsListenOptions) {
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
    // Checked now, so a bad setting fails at start-up and not at the first transfer.
    new JsReceiver(options.receiver);
    this.server = createServer(serverTlsOptions(options.identity, this.handshakeTimeoutMs));
    this.server.on('secureConnection', (socket: TLSSocket) => this.onSecureConnection(socket));
    this.server.on('tlsClientError', (err, socket) => this.peerError(handshakeError(err, socket), socket));
  }

  listen(): Promise<JsListener> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        // Later server errors (e.g. out of file descriptors) are reported, never thrown.
        this.server.on('error', (err) =>
          this.peerError(AmstError.noConnection(`the listener failed: ${err.message}`, err), undefined),
        );
        const address = this.server.address();
        this.port = typeof address === 'object' && address !== null ? address.port : this.options.port;
        resolve(this);
      });
    });
  }

  accept(): Promise<JsIncomingStream> {
    const next = this.ready.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.closed) return Promise.reject(AmstError.noConnection('the listener is closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.handshaking) socket.destroy();
    for (const socket of this.answering) socket.destroy();
    for (const stream of [...this.sessions.values()])
      stream.destroy(AmstError.noConnection('the listener closed'));
    for (const w of this.waiters.splice(0)) w.reject(AmstError.noConnection('the listener closed'));
    return done;
  }

  private onSecureConnection(socket: TLSSocket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.handshaking.add(socket);
    socket.setNoDelay(true);
    // Errors surface as 'close'; a listener must exist or Node would throw them.
    socket.on('error', () => {});
    const queue = new ByteQueue();
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', cleanup);
      this.handshaking.delete(socket);
    };
    const timer = setTimeout(() => {
      cleanup();
      this.peerError(AmstError.badHello(`none within ${this.handshakeTimeoutMs} ms`), socket);
      socket.destroy();
    }, this.handshakeTimeoutMs);
    const onData = (chunk: Buffer) => {
      queue.push(chunk);
      if (queue.length < HELLO_LEN) return;
      cleanup();
      let hello: Hello;
      try {
        hello = parseHello(queue.peek(HELLO_LEN));
      } catch (err) {
        this.peerError(asAmstError(err), socket);
        socket.destroy();
        return;
      }
      queue.consume(HELLO_LEN);
      this.admit(socket, hello, queue);
    };
    socket.on('data', onData);
    socket.on('close', cleanup);
  }

  /** Joins the connection to its transfer (a new one if needed), or closes it and says why. */
  private admit(socket: TLSSocket, hello: Hello, queue: ByteQueue): void {
    const id = hello.sessionId.toString('hex');
    const fingerprint = socket.getPeerCertificate().fingerprint256;
    let stream = this.sessions.get(id);
    let refusal: string | null = null;
    const ended = this.closedSessions.get(id);
    if (ended !== undefined && ended !== null && ended.fingerprint === fingerprint) {
      this.answerFinished(socket, ended.ack);
      return;
    }
    if (ended !== undefined) refusal = 'the transfer has ended';
    else if (stream === undefined && this.ready.length >= (this.options.maxPendingStreams ?? 16))
      refusal = 'too many transfers wait to be accepted';
    else if (stream !== undefined && stream.peerFingerprint !== fingerprint)
      refusal = "the certificate is not the one of the transfer's first connection";
    else if (
      stream !== undefined &&
      stream.openConnections() >= (this.options.maxConnectionsPerStream ?? 256)
    )
      refusal = 'the transfer has too many connections';
    if (refusal !== null) {
      this.peerError(AmstError.badHello(refusal), socket, id);
      socket.destroy();
      return;
    }
    if (stream === undefined) {
      stream = new JsIncomingStream(id, fingerprint, this.options, {
        onEnded: (s) => this.onStreamEnded(s),
        onPeerError: (err, s) => this.peerError(err, s, id),
      });
      this.sessions.set(id, stream);
      const waiter = this.waiters.shift();
      if (waiter !== undefined) waiter.resolve(stream);
      else this.ready.push(stream);
    }
    stream.attach(socket, queue);
  }

  /**
   * A sender whose FIN's ack was lost with its connection dials again after the end: it gets the
   * final ack, then a clean close. What it writes (its FIN again) is read and dropped, so the
   * close is no reset.
   */
  private answerFinished(socket: TLSSocket, ack: Buffer): void {
    this.answering.add(socket);
    const timer = setTimeout(() => socket.destroy(), ANSWER_CLOSE_MS);
    socket.on('data', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      this.answering.delete(socket);
    });
    socket.end(ack);
  }

  private onStreamEnded(stream: JsIncomingStream): void {
    this.sessions.delete(stream.sessionId);
    const ack = stream.finalAck();
    const done = ack === null ? null : { ack: encodeAck(ack), fingerprint: stream.peerFingerprint };
    this.closedSessions.set(stream.sessionId, done);
    if (this.closedSessions.size > CLOSED_SESSIONS_KEPT) {
      const oldest = this.closedSessions.keys().next();
      if (oldest.done !== true) this.closedSessions.delete(oldest.value);
    }
  }

  private peerError(err: AmstError, socket: TLSSocket | undefined, sessionId?: string): void {
    const peer: JsPeerInfo = { remoteAddress: socket?.remoteAddress, remotePort: socket?.remotePort };
    if (sessionId !== undefined) peer.sessionId = sessionId;
    this.options.onPeerError?.(err, peer);
  }
}

interface InConn {
  id: ConnId;
  socket: TLSSocket;
  queue: ByteQueue;
}

interface StreamHooks {
  onEnded(stream: JsIncomingStream): void;
  onPeerError(err: AmstError, socket: TLSSocket | undefined): void;
}

/**
 * One incoming transfer: an async iterable of the stream's bytes, in order, in pieces of one
 * frame. It ends when the sender's FIN is complete and everything was read. A connection that
 * breaks the protocol is closed (the sender moves its frames to the others); if no connection
 * is left and none comes back within the orphan timeout, `read()` throws an `AmstError`: the
 * last connection's protocol error, or `ERR_AMST_NO_CONNECTION`.
 *
 * Backpressure: pieces leave the receiver only as `read()` asks for them, and unread pieces
 * shrink the window the receiver advertises, so a consumer that stops reading stops the sender.
 * The sockets themselves keep being read: every frame in flight is within the window the sender
 * was given (a frame beyond it is a protocol error), and pausing them would hold back the acks
 * of frames already sent and make the sender declare its connections stalled.
 */
export class JsIncomingStream implements AsyncIterable<Buffer> {
  private readonly receiver: JsReceiver;
  private readonly conns = new Map<ConnId, InConn>();
  private readonly orphanMs: number;
  private readonly idleMs: number;
  private nextConn = 0;
  private refused = 0;
  private lastError: AmstError | null = null;
  private error: Error | null = null;
  private ended = false;
  private waiter: { resolve: (b: Buffer | null) => void; reject: (e: Error) => void; since: number } | null =
    null;
  private lastArrival = performance.now();
  private wireBytes = 0;
  private orphanTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  /** The final ack, recorded when the whole stream arrived (before the consumer reads the end). */
  private completion: Ack | null = null;

  /** @internal Made by the listener. */
  constructor(
    /** The transfer's session id (hex), as `JsSendResult.sessionId` reports it. */
    readonly sessionId: string,
    /** SHA-256 fingerprint of the sender's certificate; every connection must present the same. */
    readonly peerFingerprint: string,
    options: JsListenOptions,
    private readonly hooks: StreamHooks,
  ) {
    this.receiver = new JsReceiver(options.receiver);
    this.orphanMs = options.orphanTimeoutMs ?? 10_000;
    this.idleMs = options.idleTimeoutMs ?? 60_000;
    if (this.idleMs > 0) this.idleTimer = setInterval(() => this.checkIdle(), Math.max(50, this.idleMs / 4));
  }

  /** The next piece of the stream, or `null` at its end. One `read()` at a time. */
  read(): Promise<Buffer | null> {
    if (this.error !== null) return Promise.reject(this.error);
    if (this.waiter !== null) return Promise.reject(new Error('read() while another read() is pending'));
    const piece = this.take();
    if (piece !== undefined) return Promise.resolve(piece);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject, since: performance.now() };
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (let piece = await this.read(); piece !== null; piece = await this.read()) yield piece;
  }

  stats(): JsIncomingStats {
    return {
      sessionId: this.sessionId,
      receiver: this.receiver.stats(),
      wireBytes: this.wireBytes,
      connections: this.conns.size,
      connectionsSeen: this.nextConn,
      connectionsRefused: this.refused,
    };
  }

  /**
   * Gives up on the transfer: closes its connections, and unless the whole stream has already
   * arrived (its bytes stay readable), a pending and every later `read()` rejects with `err`.
   */
  destroy(err: Error = AmstError.noConnection('the receiving side closed the stream')): void {
    if (this.ended) return;
    if (!this.receiver.isAllReceived()) this.setError(err);
    for (const c of this.conns.values()) c.socket.destroy();
    if (this.conns.size === 0) this.end();
  }

  /** @internal The ack of the FIN once the whole stream arrived, else `null`. */
  finalAck(): Ack | null {
    return this.completion;
  }

  /** @internal */
  openConnections(): number {
    return this.conns.size;
  }

  /** @internal A connection whose hello named this transfer; `queue` holds what followed the hello. */
  attach(socket: TLSSocket, queue: ByteQueue): void {
    if (this.error !== null || this.ended) {
      socket.destroy();
      return;
    }
    const c: InConn = { id: this.nextConn++, socket, queue };
    this.conns.set(c.id, c);
    clearTimer(this.orphanTimer);
    this.orphanTimer = null;
    this.wireBytes += HELLO_LEN + queue.length;
    socket.on('data', (chunk: Buffer) => {
      this.wireBytes += chunk.length;
      c.queue.push(chunk);
      this.onBytes(c);
    });
    socket.on('close', () => this.onClose(c));
    if (queue.length > 0) this.onBytes(c);
  }

  /** The next piece (reading reopens the window, so acks go out), `null` at the end, or `undefined`. */
  private take(): Buffer | null | undefined {
    const piece = this.receiver.read();
    if (piece !== null) {
      this.flushAcks();
      return piece;
    }
    if (this.receiver.isComplete()) return null;
    return undefined;
  }

  private onBytes(c: InConn): void {
    if (this.error !== null || !this.conns.has(c.id)) return;
    this.lastArrival = performance.now();
    const max = this.receiver.maxFrame();
    const q = c.queue;
    try {
      for (;;) {
        const len = frameLength(q.peek(Math.min(q.length, DATA_HEADER_LEN)), max);
        if (len === null || q.length < len) break;
        const parsed = parseFrame(q.peek(len), max);
        if (parsed === null) break;
        this.receiver.handleFrame(c.id, parsed.frame);
        q.consume(len);
      }
    } catch (err) {
      const e = asAmstError(err);
      this.refused += 1;
      this.lastError = e;
      this.hooks.onPeerError(e, c.socket);
      this.conns.delete(c.id);
      c.socket.destroy();
      this.afterConnectionLoss();
    }
    this.flushAcks();
    if (this.completion === null) this.completion = this.receiver.finalAck();
    if (this.receiver.isAllReceived() && this.lingerTimer === null) {
      this.lingerTimer = setTimeout(() => {
        for (const conn of this.conns.values()) conn.socket.destroy();
      }, LINGER_MS);
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (w === null) return;
    const piece = this.take();
    if (piece === undefined) return;
    this.waiter = null;
    w.resolve(piece);
  }

  /**
   * Writes the receiver's acks, batched per connection. An ack for a connection that has closed
   * goes on another: it may be the window update the sender waits for.
   */
  private flushAcks(): void {
    let batch: { conn: InConn; acks: Ack[] } | null = null;
    for (let a = this.receiver.pollAck(); a !== null; a = this.receiver.pollAck()) {
      const conn = this.conns.get(a[0]) ?? this.conns.values().next().value;
      if (conn === undefined) continue;
      if (batch !== null && batch.conn !== conn) {
        writeAcks(batch.conn, batch.acks);
        batch = null;
      }
      if (batch === null) batch = { conn, acks: [] };
      batch.acks.push(a[1]);
    }
    if (batch !== null) writeAcks(batch.conn, batch.acks);
  }

  private onClose(c: InConn): void {
    if (!this.conns.delete(c.id)) return;
    this.afterConnectionLoss();
  }

  /** With no connection left: done if the stream is whole or failed, else wait for a reconnect. */
  private afterConnectionLoss(): void {
    if (this.conns.size > 0 || this.ended) return;
    if (this.error !== null || this.receiver.isAllReceived()) {
      this.end();
      return;
    }
    clearTimer(this.orphanTimer);
    this.orphanTimer = setTimeout(() => {
      this.orphanTimer = null;
      this.setError(
        this.lastError ??
          AmstError.noConnection(
            `every connection closed before the end of the stream, and none came back within ${this.orphanMs} ms`,
          ),
      );
      this.end();
    }, this.orphanMs);
  }

  private checkIdle(): void {
    const w = this.waiter;
    if (w === null || this.error !== null) return;
    const quiet = performance.now() - Math.max(this.lastArrival, w.since);
    if (quiet < this.idleMs) return;
    this.setError(
      AmstError.noConnection(`nothing arrived for ${Math.round(quiet)} ms while a read() waited`),
    );
    for (const c of this.conns.values()) c.socket.destroy();
    if (this.conns.size === 0) this.end();
  }

  private setError(err: Error): void {
    if (this.error !== null) return;
    this.error = err;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
  }

  /** No connection is left and none will be taken: release the timers and the session id. */
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimer(this.orphanTimer);
    clearTimer(this.lingerTimer);
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.hooks.onEnded(this);
  }
}

function writeAcks(conn: InConn, acks: Ack[]): void {
  const buf = Buffer.allocUnsafe(acks.length * ACK_LEN);
  acks.forEach((ack, i) => {
    writeAck(buf, i * ACK_LEN, ack);
  });
  conn.socket.write(buf);
}

function clearTimer(t: NodeJS.Timeout | null): void {
  if (t !== null) clearTimeout(t);
}

/**
 * The typed error of a failed handshake. Node refuses a bad client certificate by closing the
 * socket, which reports as a hang-up; the verification's own code (`CERT_HAS_EXPIRED`,
 * `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, …) is on the socket.
 */
function handshakeError(err: Error, socket: TLSSocket): AmstError {
  const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  const verify = socket.authorizationError;
  const code = 'code' in err ? String(err.code) : undefined;
  const reason =
    verify !== undefined && verify !== null
      ? `client certificate refused: ${String(verify)}`
      : `${code}: ${err.message}`;
  return AmstError.tls(peer, reason, err);
}

function asAmstError(err: unknown): AmstError {
  if (err instanceof AmstError) return err;
  return AmstError.protocol(err instanceof Error ? err.message : String(err));
}

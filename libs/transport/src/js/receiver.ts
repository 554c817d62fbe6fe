/**
 * The receiving half (port of `amst/src/receiver.rs`): accepts frames from any connection, drops
 * duplicates, reorders within a bounded window, and acks each frame on the connection it came in on.
 */

import type { ConnId } from './conn';
import { AmstError } from './error';
import { Fifo } from './fifo';
import { type Ack, FIN_SEQ, type Frame, WINDOW_UPDATE_SEQ } from './frame';

export { WINDOW_UPDATE_SEQ };

/** Receiver settings. */
export interface JsReceiverConfig {
  /** The largest DATA payload accepted; larger frames close the connection. */
  maxFrame: number;
  /** Frames accepted beyond the next in-order one; bounds the reorder buffer to `window × maxFrame`. */
  window: number;
}

export const DEFAULT_RECEIVER_CONFIG: Readonly<JsReceiverConfig> = {
  maxFrame: 4 * 1024 * 1024,
  window: 1024,
};

/** Counters of the receiving side. */
export interface JsReceiverStats {
  /** Frames accepted. */
  frames: number;
  /** Frames that had already arrived (resends after a stall), dropped. */
  duplicates: number;
  /** Bytes handed out in order. */
  bytesDelivered: number;
  /** Bytes waiting in the reorder buffer. */
  bufferedBytes: number;
}

/** The receiving state machine. */
export class JsReceiver {
  private readonly config: JsReceiverConfig;
  /** The next in-order frame. */
  private next = 0;
  private readonly reorder = new Map<number, Buffer>();
  private readonly ready = new Fifo<Buffer>();
  private readonly acks = new Fifo<[ConnId, Ack]>();
  private fin: { frames: number; bytes: number } | null = null;
  /** The window last advertised: reading reopens a closing window. */
  private advertised: number;
  private lastConn: ConnId | null = null;
  private readonly counters: JsReceiverStats = {
    frames: 0,
    duplicates: 0,
    bytesDelivered: 0,
    bufferedBytes: 0,
  };

  /** A receiver with validated settings (missing ones take the defaults). */
  constructor(config: Partial<JsReceiverConfig> = {}) {
    const c = { ...DEFAULT_RECEIVER_CONFIG, ...config };
    if (!Number.isInteger(c.window) || c.window < 1 || c.window > 0xffff_ffff) {
      throw AmstError.invalidParam('window', 'must be at least 1 frame');
    }
    if (!Number.isInteger(c.maxFrame) || c.maxFrame < 1 || c.maxFrame > 0xffff_ffff) {
      throw AmstError.invalidParam('maxFrame', `${c.maxFrame} is not a frame size in bytes`);
    }
    this.config = c;
    this.advertised = c.window;
  }

  // ---- getters ----

  /** Counters. */
  stats(): JsReceiverStats {
    return { ...this.counters };
  }

  /** The largest payload this receiver accepts (for the frame parser). */
  maxFrame(): number {
    return this.config.maxFrame;
  }

  /** Whether the whole stream arrived and was read. */
  isComplete(): boolean {
    return this.isAllReceived() && this.ready.length === 0;
  }

  /**
   * Whether the whole stream arrived, read or not. Not in the Rust core; the runtime uses it to
   * tell a sender that closes after its FIN was acked from one that vanished mid-stream.
   */
  isAllReceived(): boolean {
    return this.fin !== null && this.next === this.fin.frames;
  }

  /**
   * The ack of the FIN once the whole stream arrived, `null` before. A listener answers a sender
   * that comes back after the end (its FIN's ack was lost) with it.
   */
  finalAck(): Ack | null {
    if (!this.isAllReceived()) return null;
    return { seq: FIN_SEQ, cumulative: this.next, window: this.openWindow() };
  }

  /** Pieces delivered in order and not yet read. */
  unread(): number {
    return this.ready.length;
  }

  // ---- handle* inputs ----

  /** A frame arrived on `conn`. A throw means the peer broke the protocol: close it. */
  handleFrame(conn: ConnId, frame: Frame): void {
    switch (frame.kind) {
      case 'data':
        this.onData(conn, frame.seq, frame.payload);
        return;
      case 'fin': {
        const { totalFrames, totalBytes } = frame;
        if (this.fin !== null && (this.fin.frames !== totalFrames || this.fin.bytes !== totalBytes)) {
          throw AmstError.protocol('two FINs that disagree');
        }
        if (totalFrames < this.next) {
          throw AmstError.protocol(`FIN says ${totalFrames} frames but ${this.next} already arrived`);
        }
        this.fin = { frames: totalFrames, bytes: totalBytes };
        this.checkTotal();
        this.lastConn = conn;
        this.acks.push([conn, this.ack(FIN_SEQ)]);
        return;
      }
      case 'ack':
        throw AmstError.protocol('ACK sent to a receiver');
    }
  }

  // ---- mutators ----

  /**
   * The next in-order piece of the stream. Unread pieces count against the window, so a consumer
   * that stops reading stops the sender.
   */
  read(): Buffer | null {
    const data = this.ready.shift();
    if (data === undefined) return null;
    const half = Math.floor(this.config.window / 2);
    if (this.lastConn !== null && this.advertised < half && this.openWindow() >= half) {
      this.acks.push([this.lastConn, this.ack(WINDOW_UPDATE_SEQ)]);
    }
    return data;
  }

  // ---- poll* outputs ----

  /** The next ack to write, and on which connection. */
  pollAck(): [ConnId, Ack] | null {
    return this.acks.shift() ?? null;
  }

  // ---- internals ----

  private onData(conn: ConnId, seq: number, payload: Buffer): void {
    if (payload.length > this.config.maxFrame)
      throw AmstError.frameTooLarge(payload.length, this.config.maxFrame);
    const window = this.config.window;
    if (seq >= this.next + window) throw AmstError.beyondWindow(seq, this.next, window);
    if (this.fin !== null && seq >= this.fin.frames) {
      throw AmstError.protocol(`frame ${seq} after a FIN of ${this.fin.frames} frames`);
    }
    if (seq < this.next || this.reorder.has(seq)) {
      this.counters.duplicates += 1;
    } else {
      this.counters.frames += 1;
      this.counters.bufferedBytes += payload.length;
      // A copy: the caller's buffer may be reused, and a view would pin a larger read buffer.
      this.reorder.set(seq, Buffer.from(payload));
      for (let data = this.reorder.get(this.next); data !== undefined; data = this.reorder.get(this.next)) {
        this.reorder.delete(this.next);
        this.counters.bufferedBytes -= data.length;
        this.counters.bytesDelivered += data.length;
        this.ready.push(data);
        this.next += 1;
      }
      this.checkTotal();
    }
    // Ack duplicates too: the sender is waiting on them.
    this.lastConn = conn;
    this.acks.push([conn, this.ack(seq)]);
    if (this.fin !== null && this.fin.frames === this.next) {
      // The FIN came before the last frames: ack it again now that the stream is whole.
      this.acks.push([conn, this.ack(FIN_SEQ)]);
    }
  }

  private checkTotal(): void {
    if (
      this.fin !== null &&
      this.next === this.fin.frames &&
      this.counters.bytesDelivered !== this.fin.bytes
    ) {
      throw AmstError.protocol(
        `FIN declared ${this.fin.bytes} bytes, ${this.counters.bytesDelivered} arrived`,
      );
    }
  }

  private openWindow(): number {
    return Math.max(0, this.config.window - this.ready.length);
  }

  private ack(seq: number): Ack {
    this.advertised = this.openWindow();
    return { seq, cumulative: this.next, window: this.advertised };
  }
}

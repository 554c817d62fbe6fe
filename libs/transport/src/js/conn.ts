/**
 * What the sender knows about each connection: in-flight frames, RTT and delivery rate
 * (port of `amst/src/conn.rs`). Times are milliseconds, rates bytes per second.
 */

/** A connection's id, chosen by the runtime (a u32). */
export type ConnId = number;

/** A connection's measurements, for stats events and metrics. */
export interface JsConnStats {
  id: ConnId;
  /** Smoothed time from handing a frame to the connection to its ack (includes queueing). */
  srttMs: number | null;
  /** The smallest such time seen: the path's RTT with empty queues. */
  minRttMs: number | null;
  /** Smoothed delivery rate in bytes per second. */
  deliveryRate: number;
  /** Bytes handed to the connection and not yet acknowledged. */
  inflightBytes: number;
  /** How many bytes the scheduler lets it hold unacknowledged. */
  windowBytes: number;
  /** Payload bytes handed to it. */
  sentBytes: number;
  /** Payload bytes acknowledged through it. */
  ackedBytes: number;
  /** Frames taken off it (death, stall) and sent again elsewhere. */
  movedFrames: number;
  /** Whether it still gets new frames. */
  active: boolean;
}

/** Rate samples are smoothed with this weight; ~8 samples of memory, like TCP's srtt. */
const RATE_GAIN = 0.125;
/**
 * Per-ack decay of the peak rate: it halves in ~70 acks, so a path that really got slower (not
 * just a loss episode) shrinks the window within a few RTTs.
 */
const PEAK_DECAY = 0.99;

export class Conn {
  /** Sequence numbers handed to this connection and not yet acknowledged. */
  readonly inflight = new Set<number>();
  inflightBytes = 0;
  srtt: number | null = null;
  minRtt: number | null = null;
  deliveryRate = 0;
  /**
   * The highest recent rate sample, decaying slowly: what the path can carry when the transport
   * below is not recovering from a loss. It sizes the window, like BBR's max filter.
   */
  peakRate = 0;
  /** Payload bytes acknowledged through this connection; snapshotted at send for rate samples. */
  delivered = 0;
  sentBytes = 0;
  movedFrames = 0;
  /** Last ack, or when it was first given a frame with nothing in flight: for stall detection. */
  lastProgress: number;
  /** Retiring: no new frames; closed once drained. */
  retiring = false;

  constructor(
    readonly id: ConnId,
    now: number,
  ) {
    this.lastProgress = now;
  }

  /**
   * Bytes the scheduler lets this connection hold: twice the bandwidth-delay product at the
   * path's minimum RTT, so the transport below can keep growing its window, but a slow or
   * stalled connection cannot hoard the stream.
   */
  window(initial: number): number {
    if (this.minRtt !== null && this.peakRate > 0) {
      const bdp = Math.floor(2 * this.peakRate * Math.max(this.minRtt / 1000, 0.001));
      return Math.max(initial, bdp);
    }
    return initial;
  }

  /**
   * When (seconds from now) a frame of `len` bytes handed over now would be delivered: the queue
   * ahead drains at the measured rate, then half an RTT of flight. Unmeasured connections look
   * attractive enough to get traffic and so a measurement.
   */
  expectedDelivery(len: number): number {
    const rate = this.deliveryRate > 0 ? this.deliveryRate : 1e6;
    const flight = this.minRtt === null ? 0 : this.minRtt / 1000 / 2;
    return (this.inflightBytes + len) / rate + flight;
  }

  onSent(seq: number, len: number, now: number): void {
    if (this.inflight.size === 0) this.lastProgress = now;
    this.inflight.add(seq);
    this.inflightBytes += len;
    this.sentBytes += len;
  }

  /** Accounts an ack for a frame this connection carried, with the rate sample it yields. */
  onAcked(seq: number, len: number, sentAt: number, deliveredAtSend: number, now: number): void {
    if (!this.inflight.delete(seq)) return;
    this.inflightBytes -= len;
    this.delivered += len;
    this.lastProgress = now;
    const rtt = Math.max(0, now - sentAt);
    this.minRtt = this.minRtt === null ? rtt : Math.min(this.minRtt, rtt);
    this.srtt = this.srtt === null ? rtt : this.srtt * 0.875 + rtt * 0.125;
    const interval = rtt / 1000;
    if (interval > 0) {
      const sample = (this.delivered - deliveredAtSend) / interval;
      this.peakRate = Math.max(sample, this.peakRate * PEAK_DECAY);
      this.deliveryRate =
        this.deliveryRate === 0 ? sample : this.deliveryRate * (1 - RATE_GAIN) + sample * RATE_GAIN;
    }
  }

  /** Forgets a frame that was acknowledged through another connection or moved elsewhere. */
  forget(seq: number, len: number): void {
    if (this.inflight.delete(seq)) this.inflightBytes -= len;
  }

  stats(initialWindow: number): JsConnStats {
    return {
      id: this.id,
      srttMs: this.srtt,
      minRttMs: this.minRtt,
      deliveryRate: this.deliveryRate,
      inflightBytes: this.inflightBytes,
      windowBytes: this.window(initialWindow),
      sentBytes: this.sentBytes,
      ackedBytes: this.delivered,
      movedFrames: this.movedFrames,
      active: !this.retiring,
    };
  }
}

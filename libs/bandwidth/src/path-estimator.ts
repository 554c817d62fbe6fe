/**
 * PBA in the node: what this node has measured of the path to each peer, and what it predicts for
 * the next interval, for the choices a migration makes (connections, compression, QEMU's
 * `max-bandwidth` and `downtime-limit`, the ETA). Samples come from the native transport (AMST's
 * acknowledged bytes and its connections' RTT) while a migration to that peer runs; before any,
 * only the RTT that Raft measures is known.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** One interval of a transfer toward a peer, as the native transport measured it. */
export interface PathSample {
  /** End of the interval, ms on the caller's clock. */
  atMs: number;
  /** Bytes the receiver acknowledged over the interval, per second. */
  goodputBytesPerSec: number;
  /** Smoothed RTT over the transfer's connections (the median), ms. */
  rttMs?: number;
  /** The lowest RTT any connection has seen, ms: the path's propagation delay. */
  minRttMs?: number;
  /** Open connections. */
  connections: number;
  /** Frames resent over the interval (loss, dead connections). */
  framesResent?: number;
  /**
   * The sender had less in flight than the path holds (the application, not the path, set the
   * rate): such a sample says only that the path carries at least this much.
   */
  appLimited?: boolean;
  /** What the kernel (`TCP_INFO`) or quinn reported of the same connections, where it reports it. */
  kernel?: KernelPathSample;
}

/**
 * The transport stacks' own view of an interval, over the open connections: rates and windows
 * summed, RTTs without AMST's framing and ack queueing. Absent fields were not reported (QUIC has
 * no pacing or delivery rate; a kernel without `TCP_INFO` has none).
 */
export interface KernelPathSample {
  /** The sum of the connections' latest delivery-rate samples (TCP), bytes per second. */
  deliveryRateBytesPerSec?: number;
  /** The sum of the connections' pacing rates (TCP), bytes per second. */
  pacingRateBytesPerSec?: number;
  /** The sum of the congestion windows, bytes. */
  cwndBytes?: number;
  /** The median smoothed RTT, ms. */
  rttMs?: number;
  /** The lowest minimum RTT, ms. */
  minRttMs?: number;
  /** Segments retransmitted (TCP) or packets declared lost (QUIC) over the interval. */
  retransmits?: number;
}

/** An online predictor of a throughput series (libs/bandwidth's own, or a baseline). */
export interface ThroughputPredictor {
  observe(atMs: number, bytesPerSec: number): void;
  /** The mean rate over the next `horizonS` seconds, with a conservative lower bound; undefined before any sample. */
  predict(horizonS: number): { bytesPerSec: number; lowerBytesPerSec: number } | undefined;
}

/** A path as known; a field is absent when nothing measured it. */
export interface PathEstimate {
  /** The transfer's smoothed RTT (queueing and loss recovery included), or Raft's before any. */
  rttMs?: number;
  /**
   * The path's propagation RTT: the lowest a connection of the last transfer saw, or Raft's before
   * any. Bandwidth-delay products are sized with it, since a queue the transfer builds is not path.
   */
  minRttMs?: number;
  /** Predicted goodput for the next second. */
  bandwidthBytesPerSec?: number;
  /** A rate the path should sustain with high probability (for buffers and QEMU's cap). */
  lowerBandwidthBytesPerSec?: number;
  /** The last sample, if the path was measured within `maxAgeMs`. */
  measured?: PathSample;
  /** Samples taken toward this peer so far. */
  samples: number;
}

/** Where round trips come from before any transfer (the consensus module's peer port). */
export interface RttSource {
  /** The p99 Raft round trip to the slowest peer. */
  peerRttMs(): number | undefined;
  /** The lowest recent Raft round trip to one peer, by Raft id (preferred when known). */
  minRttMsTo?(raftId: number): number | undefined;
}

export interface PathEstimatorOptions {
  newPredictor: () => ThroughputPredictor;
  registry?: Registry;
  /** Older measurements are not used for a new migration's parameters (default 10 min). */
  maxAgeMs?: number;
  now?: () => number;
}

interface PeerPath {
  predictor: ThroughputPredictor;
  last?: PathSample;
  samples: number;
  /** The 1 s prediction made at the last sample, scored against the next one. */
  expected?: number;
}

class PbaMetrics {
  readonly goodput: Gauge<'peer'>;
  readonly predicted: Gauge<'peer'>;
  readonly rtt: Gauge<'peer'>;
  readonly samples: Counter<'peer'>;
  readonly error: Histogram;
  readonly kernelDelivery: Gauge<'peer'>;
  readonly kernelRtt: Gauge<'peer'>;
  readonly retransmits: Counter<'peer'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.goodput = new Gauge({
      name: 'dwcp_pba_goodput_bytes_per_second',
      help: 'Last measured goodput toward a peer',
      labelNames: ['peer'],
      registers,
    });
    this.predicted = new Gauge({
      name: 'dwcp_pba_predicted_bytes_per_second',
      help: "PBA's prediction of the next second's goodput toward a peer",
      labelNames: ['peer'],
      registers,
    });
    this.rtt = new Gauge({
      name: 'dwcp_pba_rtt_seconds',
      help: 'Last measured smoothed RTT toward a peer',
      labelNames: ['peer'],
      registers,
    });
    this.samples = new Counter({
      name: 'dwcp_pba_samples_total',
      help: 'Path samples taken toward a peer',
      labelNames: ['peer'],
      registers,
    });
    this.kernelDelivery = new Gauge({
      name: 'dwcp_pba_kernel_delivery_rate_bytes_per_second',
      help: "The kernel's delivery-rate samples toward a peer, summed over the transfer's TCP connections",
      labelNames: ['peer'],
      registers,
    });
    this.kernelRtt = new Gauge({
      name: 'dwcp_pba_kernel_rtt_seconds',
      help: "The kernel's (or quinn's) smoothed RTT toward a peer, without AMST's queueing",
      labelNames: ['peer'],
      registers,
    });
    this.retransmits = new Counter({
      name: 'dwcp_pba_retransmits_total',
      help: 'TCP segments retransmitted (or QUIC packets lost) toward a peer during migrations',
      labelNames: ['peer'],
      registers,
    });
    this.error = new Histogram({
      name: 'dwcp_pba_prediction_error_ratio',
      help: "|predicted − actual| / actual of PBA's one-second goodput prediction",
      buckets: [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2],
      registers,
    });
  }
}

export class PathEstimator {
  private readonly peers = new Map<string, PeerPath>();
  private readonly metrics: PbaMetrics | undefined;
  private readonly now: () => number;

  constructor(
    private readonly rtt: RttSource,
    private readonly options: PathEstimatorOptions,
  ) {
    this.metrics = options.registry ? new PbaMetrics(options.registry) : undefined;
    this.now = options.now ?? Date.now;
  }

  /** Feeds one interval of a transfer toward `peerNodeId`. */
  observe(peerNodeId: string, sample: PathSample): void {
    if (!Number.isFinite(sample.goodputBytesPerSec) || sample.goodputBytesPerSec < 0) return;
    let peer = this.peers.get(peerNodeId);
    if (peer === undefined) {
      peer = { predictor: this.options.newPredictor(), samples: 0 };
      this.peers.set(peerNodeId, peer);
    }
    if (peer.expected !== undefined && sample.goodputBytesPerSec > 0 && !sample.appLimited) {
      this.metrics?.error.observe(
        Math.abs(peer.expected - sample.goodputBytesPerSec) / sample.goodputBytesPerSec,
      );
    }
    // An application-limited sample says only that the path carries at least this much: it counts
    // when it is above the prediction (BBR's rule), never as the first word on a path.
    const informative =
      !sample.appLimited || (peer.expected !== undefined && sample.goodputBytesPerSec > peer.expected);
    if (informative) peer.predictor.observe(sample.atMs, sample.goodputBytesPerSec);
    peer.last = sample;
    peer.samples += 1;
    peer.expected = peer.predictor.predict(1)?.bytesPerSec;
    const m = this.metrics;
    if (m) {
      m.samples.inc({ peer: peerNodeId });
      m.goodput.set({ peer: peerNodeId }, sample.goodputBytesPerSec);
      if (peer.expected !== undefined) m.predicted.set({ peer: peerNodeId }, peer.expected);
      if (sample.rttMs !== undefined) m.rtt.set({ peer: peerNodeId }, sample.rttMs / 1000);
      const k = sample.kernel;
      if (k?.deliveryRateBytesPerSec !== undefined)
        m.kernelDelivery.set({ peer: peerNodeId }, k.deliveryRateBytesPerSec);
      if (k?.rttMs !== undefined) m.kernelRtt.set({ peer: peerNodeId }, k.rttMs / 1000);
      if (k?.retransmits !== undefined && k.retransmits > 0)
        m.retransmits.inc({ peer: peerNodeId }, k.retransmits);
    }
  }

  /**
   * The path to `peerNodeId` as far as this node has measured it; before any transfer its RTT is
   * Raft's lowest recent round trip to that peer (`raftId`), else the p99 to the slowest peer.
   */
  estimate(peerNodeId: string, raftId?: number): PathEstimate {
    const peer = this.peers.get(peerNodeId);
    const raftRtt =
      (raftId === undefined ? undefined : this.rtt.minRttMsTo?.(raftId)) ?? this.rtt.peerRttMs();
    const fresh =
      peer?.last !== undefined && this.now() - peer.last.atMs <= (this.options.maxAgeMs ?? 600_000);
    const estimate: PathEstimate = { samples: peer?.samples ?? 0 };
    const rttMs = fresh ? (peer?.last?.rttMs ?? raftRtt) : raftRtt;
    if (rttMs !== undefined) estimate.rttMs = rttMs;
    const minRttMs = fresh ? (peer?.last?.minRttMs ?? raftRtt) : raftRtt;
    if (minRttMs !== undefined) estimate.minRttMs = minRttMs;
    if (fresh && peer?.last) {
      estimate.measured = peer.last;
      const p = peer.predictor.predict(1);
      if (p !== undefined && p.bytesPerSec > 0) {
        estimate.bandwidthBytesPerSec = p.bytesPerSec;
        estimate.lowerBandwidthBytesPerSec = p.lowerBytesPerSec;
      }
    }
    return estimate;
  }

  /** A view bound to one peer, for a migration toward it. */
  toward(peerNodeId: string, raftId?: number): PeerPathView {
    return {
      observe: (sample) => this.observe(peerNodeId, sample),
      estimate: () => this.estimate(peerNodeId, raftId),
    };
  }
}

/** What a migration sees of PBA: the path to its target. */
export interface PeerPathView {
  observe(sample: PathSample): void;
  estimate(): PathEstimate;
}

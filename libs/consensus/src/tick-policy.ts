/**
 * Adaptive Raft timing: the tick interval follows the measured peer RTT, so one binary keeps a
 * stable leader on a LAN (ms) and on a WAN (100s of ms) without retuning. Raft itself counts
 * ticks (heartbeat = 1 tick, election = `electionTicks`); only the tick's length adapts.
 */

/** Bounds and shape of the policy. */
export interface TickPolicyOptions {
  /** Shortest tick, in ms; also the tick before any RTT is known. */
  minTickMs: number;
  /** Longest tick, in ms. */
  maxTickMs: number;
  /** A heartbeat (one tick) lasts this many p99 RTTs, so a slow-but-alive peer is not suspected. */
  rttMultiple: number;
  /** RTT samples kept per peer (a sliding window). */
  window: number;
}

export const DEFAULT_TICK_POLICY: TickPolicyOptions = {
  minTickMs: 50,
  maxTickMs: 2000,
  rttMultiple: 2,
  window: 256,
};

/** Per-peer RTT samples and the tick they imply. Pure: time comes in as numbers. */
export class TickPolicy {
  private readonly samples = new Map<number, number[]>();
  /** p99 as last computed; cleared when samples change (tickMs runs on every send). */
  private cachedP99: number | undefined | null = null;

  constructor(private readonly options: TickPolicyOptions = DEFAULT_TICK_POLICY) {}

  /** Records one round trip to `peer`, in ms. */
  observe(peer: number, rttMs: number): void {
    if (!Number.isFinite(rttMs) || rttMs < 0) return;
    let s = this.samples.get(peer);
    if (!s) {
      s = [];
      this.samples.set(peer, s);
    }
    s.push(rttMs);
    if (s.length > this.options.window) s.shift();
    this.cachedP99 = null;
  }

  /** Forgets a peer that left the cluster. */
  forget(peer: number): void {
    this.samples.delete(peer);
    this.cachedP99 = null;
  }

  /** Forgets every peer not in `members`. */
  retain(members: number[]): void {
    for (const peer of [...this.samples.keys()]) if (!members.includes(peer)) this.samples.delete(peer);
    this.cachedP99 = null;
  }

  /**
   * The lowest round trip to `peer` in the window, in ms: its propagation delay plus the least
   * processing a batch took (BBR's min_rtt), undefined before any sample.
   */
  minRttMs(peer: number): number | undefined {
    const s = this.samples.get(peer);
    return s === undefined || s.length === 0 ? undefined : Math.min(...s);
  }

  /** The p99 RTT to the slowest peer, in ms, or undefined before any sample. */
  p99RttMs(): number | undefined {
    if (this.cachedP99 === null) this.cachedP99 = this.computeP99();
    return this.cachedP99;
  }

  private computeP99(): number | undefined {
    let worst: number | undefined;
    for (const s of this.samples.values()) {
      if (s.length === 0) continue;
      const sorted = [...s].sort((a, b) => a - b);
      const p = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)] ?? 0;
      worst = worst === undefined ? p : Math.max(worst, p);
    }
    return worst;
  }

  /** The tick interval to use now, in ms. */
  tickMs(): number {
    const p99 = this.p99RttMs();
    const { minTickMs, maxTickMs, rttMultiple } = this.options;
    if (p99 === undefined) return minTickMs;
    return Math.round(Math.min(maxTickMs, Math.max(minTickMs, p99 * rttMultiple)));
  }
}

import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PathEstimator, type PathSample, type ThroughputPredictor } from './path-estimator';

/** A predictor that remembers what it was fed and predicts their mean. */
class MeanOf implements ThroughputPredictor {
  readonly seen: number[] = [];
  observe(_atMs: number, bytesPerSec: number): void {
    this.seen.push(bytesPerSec);
  }
  predict() {
    if (this.seen.length === 0) return undefined;
    const mean = this.seen.reduce((a, b) => a + b, 0) / this.seen.length;
    return { bytesPerSec: mean, lowerBytesPerSec: mean / 2 };
  }
}

const sample = (atMs: number, goodputBytesPerSec: number, extra: Partial<PathSample> = {}): PathSample => ({
  atMs,
  goodputBytesPerSec,
  connections: 4,
  rttMs: 100,
  ...extra,
});

function estimator(now = () => 10_000, rtt?: () => number | undefined, registry?: Registry) {
  const predictors: MeanOf[] = [];
  const e = new PathEstimator(
    { peerRttMs: rtt ?? (() => undefined) },
    {
      newPredictor: () => {
        const p = new MeanOf();
        predictors.push(p);
        return p;
      },
      now,
      ...(registry ? { registry } : {}),
    },
  );
  return { e, predictors };
}

describe('PathEstimator', () => {
  it('knows only Raft’s RTT before any transfer', () => {
    let rtt: number | undefined;
    const { e } = estimator(undefined, () => rtt);
    expect(e.estimate('node-2')).toEqual({ samples: 0 });
    rtt = 42;
    expect(e.estimate('node-2')).toEqual({ samples: 0, rttMs: 42, minRttMs: 42 });
  });

  it('prefers Raft’s lowest round trip to that peer over the p99 to the slowest one', () => {
    const e = new PathEstimator(
      { peerRttMs: () => 180, minRttMsTo: (raftId) => (raftId === 2 ? 1.5 : undefined) },
      { newPredictor: () => new MeanOf() },
    );
    expect(e.estimate('node-2', 2).rttMs).toBe(1.5);
    expect(e.estimate('node-3', 3).rttMs).toBe(180);
    expect(e.estimate('node-2').rttMs).toBe(180);
    expect(e.toward('node-2', 2).estimate().rttMs).toBe(1.5);
  });

  it('predicts from the samples toward each peer separately, with the measured RTT', () => {
    const { e } = estimator(undefined, () => 5);
    e.observe('node-2', sample(9_000, 1000, { rttMs: 80 }));
    e.observe('node-2', sample(10_000, 3000, { rttMs: 90, minRttMs: 61 }));
    e.observe('node-3', sample(10_000, 50));
    expect(e.estimate('node-2')).toMatchObject({
      samples: 2,
      rttMs: 90,
      // The transfer's floor, not its smoothed RTT (the queue it built is not the path's).
      minRttMs: 61,
      bandwidthBytesPerSec: 2000,
      lowerBandwidthBytesPerSec: 1000,
    });
    expect(e.estimate('node-3').bandwidthBytesPerSec).toBe(50);
    expect(e.toward('node-3').estimate()).toEqual(e.estimate('node-3'));
  });

  it('ignores an application-limited sample below the prediction, but not one above it', () => {
    const { e, predictors } = estimator();
    e.observe('node-2', sample(8_000, 1000));
    e.observe('node-2', sample(9_000, 10, { appLimited: true }));
    expect(predictors[0]?.seen).toEqual([1000]);
    e.observe('node-2', sample(10_000, 5000, { appLimited: true }));
    expect(predictors[0]?.seen).toEqual([1000, 5000]);
    expect(e.estimate('node-2').samples).toBe(3);
  });

  it('never learns a path from application-limited samples alone (a capped migration)', () => {
    const { e, predictors } = estimator();
    e.observe('node-2', sample(9_000, 400_000, { appLimited: true }));
    e.observe('node-2', sample(10_000, 300_000, { appLimited: true }));
    expect(predictors[0]?.seen).toEqual([]);
    expect(e.estimate('node-2').bandwidthBytesPerSec).toBeUndefined();
    expect(e.estimate('node-2').samples).toBe(2);
  });

  it('does not hand out a measurement older than maxAge, only the RTT Raft still measures', () => {
    let now = 10_000;
    const { e } = estimator(
      () => now,
      () => 7,
    );
    e.observe('node-2', sample(10_000, 1000));
    now = 10_000 + 600_001;
    expect(e.estimate('node-2')).toEqual({ samples: 1, rttMs: 7, minRttMs: 7 });
  });

  it('refuses samples that are not rates', () => {
    const { e } = estimator();
    e.observe('node-2', sample(10_000, Number.NaN));
    e.observe('node-2', sample(10_000, -1));
    expect(e.estimate('node-2').samples).toBe(0);
  });

  it('exports dwcp_pba_* per peer, with the error of each one-second prediction', async () => {
    const registry = new Registry();
    const { e } = estimator(undefined, undefined, registry);
    e.observe('node-2', sample(9_000, 1000, { rttMs: 50, kernel: { retransmits: 3 } }));
    e.observe(
      'node-2',
      sample(10_000, 2000, {
        rttMs: 50,
        kernel: { deliveryRateBytesPerSec: 2500, rttMs: 40, retransmits: 4 },
      }),
    );
    const text = await registry.metrics();
    expect(text).toContain('dwcp_pba_goodput_bytes_per_second{peer="node-2"} 2000');
    expect(text).toContain('dwcp_pba_predicted_bytes_per_second{peer="node-2"} 1500');
    expect(text).toContain('dwcp_pba_rtt_seconds{peer="node-2"} 0.05');
    expect(text).toContain('dwcp_pba_samples_total{peer="node-2"} 2');
    expect(text).toContain('dwcp_pba_kernel_delivery_rate_bytes_per_second{peer="node-2"} 2500');
    expect(text).toContain('dwcp_pba_kernel_rtt_seconds{peer="node-2"} 0.04');
    expect(text).toContain('dwcp_pba_retransmits_total{peer="node-2"} 7');
    // The prediction after the first sample was 1000; the next sample was 2000: error 0.5.
    expect(text).toContain('dwcp_pba_prediction_error_ratio_sum 0.5');
    expect(text).toContain('dwcp_pba_prediction_error_ratio_count 1');
  });
});

import type { PathEstimate, PathSample, PeerPathView } from '@novacron/bandwidth';
import { describe, expect, it } from 'vitest';
import { chooseParameters } from './parameters';
import { PathSteering } from './path-steering';
import type { SourceCounters } from './ports';

const MiB = 1024 * 1024;

class FakePath implements PeerPathView {
  readonly samples: PathSample[] = [];
  predicted: number | undefined;
  observe(s: PathSample): void {
    this.samples.push(s);
  }
  estimate(): PathEstimate {
    const measured = this.samples.at(-1);
    return {
      samples: this.samples.length,
      rttMs: 100,
      ...(measured === undefined ? {} : { measured }),
      ...(this.predicted === undefined
        ? {}
        : { bandwidthBytesPerSec: this.predicted, lowerBandwidthBytesPerSec: this.predicted * 0.8 }),
    };
  }
}

const counters = (
  s: number,
  acked: number,
  written: number,
  fromQemu = 3 * acked,
  wire = acked,
): SourceCounters => ({
  bytesFromQemu: fromQemu,
  wireBytes: wire,
  compressionRatio: 3,
  inventoryDedupBytes: 0,
  streamDedupBytes: 0,
  transfer: {
    bytesWritten: written,
    bytesAcked: acked,
    framesResent: 2,
    elapsedSeconds: s,
    connections: [
      { srttMs: 100, minRttMs: 98, active: true },
      { srttMs: 120, minRttMs: 99, active: true },
      { srttMs: 900, minRttMs: 97, active: false },
    ],
  },
});

describe('PathSteering', () => {
  it('samples goodput over each interval from AMST’s counters, with the active connections’ RTT', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters({ rttMs: 100 }), true);
    expect(steer.sample(counters(1, 10 * MiB, 12 * MiB), 1000)).toBeUndefined();
    const s = steer.sample(counters(3, 30 * MiB, 34 * MiB), 3000);
    expect(s).toEqual({
      atMs: 3000,
      goodputBytesPerSec: 10 * MiB,
      connections: 2,
      framesResent: 0,
      appLimited: false,
      rttMs: 110,
      minRttMs: 97,
    });
    expect(path.samples).toEqual([s]);
    // 1 MiB in flight at 10 MiB/s over 110 ms is less than the path holds: QEMU limited it.
    expect(steer.sample(counters(4, 40 * MiB, 41 * MiB), 4000)?.appLimited).toBe(true);
  });

  it('re-aims QEMU’s max-bandwidth at the prediction times the reduction, past a hysteresis', () => {
    const path = new FakePath();
    const chosen = chooseParameters({ rttMs: 100 });
    const steer = new PathSteering(path, chosen, true);
    const c = counters(2, 10 * MiB, 11 * MiB, 25 * MiB, 10 * MiB);
    expect(steer.retarget(c)).toBeUndefined();
    path.predicted = 10 * MiB;
    // 10 MiB/s on the wire × 2.5 reduction × 1.15 headroom.
    expect(steer.retarget(c)).toBe(Math.round(10 * MiB * 2.5 * 1.15));
    expect(steer.maxBandwidthBytesPerSec).toBe(Math.round(10 * MiB * 2.5 * 1.15));
    path.predicted = 10.5 * MiB;
    expect(steer.retarget(c)).toBeUndefined();
    path.predicted = 5 * MiB;
    expect(steer.retarget(c)).toBe(Math.round(5 * MiB * 2.5 * 1.15));
    expect(steer.report()).toMatchObject({
      predictedBytesPerSec: 5 * MiB,
      lowerBytesPerSec: 4 * MiB,
      maxBandwidthBytesPerSec: Math.round(5 * MiB * 2.5 * 1.15),
      streams: chosen.streams,
      downtimeLimitMs: chosen.downtimeLimitMs,
    });
    expect(steer.report().basis).toContain("from PBA's prediction");
  });

  it('keeps AMST’s send buffer near the predicted bandwidth-delay product, past a 20 % hysteresis', () => {
    const path = new FakePath();
    const chosen = chooseParameters({ rttMs: 100 });
    expect(chosen.bufferBytes).toBe(8 * MiB);
    const steer = new PathSteering(path, chosen, true);
    expect(steer.rebuffer()).toBeUndefined();
    // 12.5 MB/s over 100 ms + 20 ms slack, × 1.5: 2.25 MB.
    path.predicted = 12_500_000;
    expect(steer.rebuffer()).toBe(2_250_000);
    expect(steer.sendBufferBytes).toBe(2_250_000);
    path.predicted = 13_000_000;
    expect(steer.rebuffer()).toBeUndefined();
    // Never under 2 MiB, never over 64 MiB.
    path.predicted = 1_000_000;
    expect(steer.rebuffer()).toBeUndefined();
    path.predicted = 10_000 * MiB;
    expect(steer.rebuffer()).toBe(64 * MiB);
    expect(steer.report()).toMatchObject({ bufferBytes: 64 * MiB });
    expect(steer.report().basis).toContain('send buffer now 64.0 MiB');
  });

  it('re-aims downtime-limit at what the pause budget leaves after half the RTT and the buffer’s drain', () => {
    const path = new FakePath();
    const chosen = chooseParameters();
    expect(chosen.downtimeLimitMs).toBe(300);
    const steer = new PathSteering(path, chosen, true);
    expect(steer.redowntime()).toBeUndefined();
    // A fast path: 100 ms RTT (FakePath), 1 GB/s; the 8 MiB buffer drains in 8 ms → 150 − 50 − 8.
    path.predicted = 1_000_000_000;
    expect(steer.redowntime(), 'nothing measured on this path yet').toBeUndefined();
    path.observe({ atMs: 1, goodputBytesPerSec: 1_000_000_000, connections: 2, rttMs: 100 });
    expect(steer.redowntime()).toBe(92);
    expect(steer.redowntime()).toBeUndefined();
    // The operator fixed it: never changed.
    const fixed = new PathSteering(path, chosen, true, false);
    expect(fixed.redowntime()).toBeUndefined();
    expect(fixed.report().downtimeLimitMs).toBe(300);
    expect(steer.report().basis).toContain('downtime-limit now 92 ms');
  });

  it('doubles QEMU’s cap while it, not the path, limits the rate, until the send buffer fills', () => {
    const path = new FakePath();
    path.predicted = 1 * MiB;
    const steer = new PathSteering(path, { ...chooseParameters(), maxBandwidthBytesPerSec: 4 * MiB }, true);
    steer.sample(counters(1, 1 * MiB, 1 * MiB), 1000);
    // 1 MiB/s acked with almost nothing unacknowledged: application-limited.
    expect(steer.sample(counters(2, 2 * MiB, 2.1 * MiB), 2000)?.appLimited).toBe(true);
    const c = counters(2, 2 * MiB, 2.1 * MiB, 2 * MiB, 2 * MiB);
    expect(steer.retarget(c)).toBe(8 * MiB);
    expect(steer.retarget(c)).toBe(16 * MiB);
    // The buffer full: the path pushes back, and the cap follows the prediction again.
    expect(steer.sample(counters(3, 3 * MiB, 8 * MiB), 3000)?.appLimited).toBe(false);
    expect(steer.retarget(c)).toBe(Math.round(1 * MiB * 1.15));
  });

  it('leaves a cap the operator set alone, and still measures', () => {
    const path = new FakePath();
    path.predicted = 10 * MiB;
    const steer = new PathSteering(path, chooseParameters(), false);
    expect(steer.retarget(counters(2, 10 * MiB, 11 * MiB))).toBeUndefined();
    steer.sample(counters(1, 0, 0), 1000);
    steer.sample(counters(2, 10 * MiB, 12 * MiB), 2000);
    expect(path.samples).toHaveLength(1);
  });

  it('gives the ETA from the prediction: QEMU’s remaining bytes reduced, plus the pipeline’s backlog', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters(), true);
    const c = counters(2, 10 * MiB, 12 * MiB, 20 * MiB, 10 * MiB);
    expect(steer.etaMs(c, 40 * MiB)).toBeUndefined();
    path.predicted = 2 * MiB;
    // (40 MiB / 2 + 2 MiB backlog) / 2 MiB/s = 11 s.
    expect(steer.etaMs(c, 40 * MiB)).toBe(11_000);
  });

  it('shows the codec the encoder uses, and why it changed, in the record', () => {
    const steer = new PathSteering(new FakePath(), chooseParameters(), true);
    steer.sample({ ...counters(1, 0, 0), codec: 'zstd 1', codecChanges: 0 }, 1000);
    expect(steer.report()).toMatchObject({ codec: 'zstd 1', zstdLevel: 1 });
    expect(steer.report().basis).not.toContain('codec now');
    steer.sample({ ...counters(2, MiB, MiB), codec: 'lz4', codecChanges: 2 }, 2000);
    expect(steer.report().codec).toBe('lz4');
    expect(steer.report().basis).toContain(
      'codec now lz4 after 2 changes: HDE steps down while its encoder, not the link, is the bottleneck',
    );
  });
});

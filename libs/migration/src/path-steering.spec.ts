import type { PathEstimate, PathSample, PeerPathView } from '@novacron/bandwidth';
import { describe, expect, it } from 'vitest';
import { chooseParameters } from './parameters';
import { MAX_MAX_BANDWIDTH, PathSteering } from './path-steering';
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

  it('sizes the send buffer at 2.5 BDPs of the recent peak in QEMU’s first pass, 1.5 BDPs of the prediction after', () => {
    const path = new FakePath();
    const chosen = chooseParameters({ rttMs: 100 });
    expect(chosen.bufferBytes).toBe(8 * MiB);
    const steer = new PathSteering(path, chosen, true);
    expect(steer.rebuffer()).toBeUndefined();
    // Slow start: the first samples are slow, and the buffer does not shrink on them.
    path.predicted = 1_000_000;
    steer.sample(counters(0, 0, 0), 0);
    steer.sample(counters(0.5, 500_000, 8 * MiB), 500);
    expect(steer.rebuffer()).toBeUndefined();
    // Four samples in, the peak of the last four (40 MB/s) sizes it: 40 MB/s × 120 ms × 2.5.
    steer.sample(counters(1, 20_500_000, 8 * MiB), 1000);
    steer.sample(counters(1.5, 25_500_000, 8 * MiB), 1500);
    steer.sample(counters(2, 30_500_000, 8 * MiB), 2000);
    expect(steer.rebuffer()).toBe(12_000_000);
    expect(steer.sendBufferBytes).toBe(12_000_000);
    // Within 20 %: left alone.
    path.predicted = 21_000_000;
    expect(steer.rebuffer()).toBeUndefined();
    expect(steer.report().basis).toContain(
      "send buffer now 11.4 MiB, 2.5 bandwidth-delay products in QEMU's first pass",
    );
    // QEMU's second dirty sync: its first pass is over; 1.5 BDPs of the prediction (12.5 MB/s).
    path.predicted = 12_500_000;
    steer.progressed({ dirtySyncCount: 1 });
    expect(steer.rebuffer()).toBeUndefined();
    steer.progressed({ dirtySyncCount: 2 });
    expect(steer.rebuffer()).toBe(2_250_000);
    expect(steer.report().basis).toContain(
      'send buffer now 2.1 MiB, 1.5 bandwidth-delay products as QEMU converges',
    );
    // Never over 64 MiB.
    path.predicted = 10_000 * MiB;
    expect(steer.rebuffer()).toBe(64 * MiB);
    expect(steer.report()).toMatchObject({ bufferBytes: 64 * MiB });
  });

  it('starts from the probe: its sample goes to PBA, the buffer follows it at once, the basis says so', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters({ rttMs: 100 }), true);
    steer.probed(
      {
        durationMs: 812.4,
        bytes: 6_000_000,
        goodputBytesPerSec: 12_500_000,
        rttMs: 130,
        minRttMs: 100.2,
        connections: 4,
        perConnection: [],
        endedBy: 'plateau',
        rounds: 8,
      },
      5000,
    );
    expect(path.samples).toEqual([
      { atMs: 5000, goodputBytesPerSec: 12_500_000, connections: 4, rttMs: 130, minRttMs: 100.2 },
    ]);
    // Past slow start already: the 8 MiB default shrinks to 2.5 BDPs of the probe (FakePath's 100 ms).
    path.predicted = 12_500_000;
    expect(steer.rebuffer()).toBe(3_750_000);
    expect(steer.report().basis).toContain(
      'probe: 100.0 Mbit/s over 4 connections in 812 ms, min RTT 100.2 ms (ended by goodput stopped growing)',
    );
    // A probe cut short by its time limit measured slow start: PBA gets nothing, the buffer stays.
    const short = new PathSteering(new FakePath(), chooseParameters({ rttMs: 100 }), true);
    const shortPath = new FakePath();
    const cut = new PathSteering(shortPath, chooseParameters({ rttMs: 100 }), true);
    cut.probed(
      {
        durationMs: 300,
        bytes: 400_000,
        goodputBytesPerSec: 3_000_000,
        minRttMs: 100,
        connections: 4,
        perConnection: [],
        endedBy: 'maxMs',
        rounds: 3,
      },
      5000,
    );
    expect(shortPath.samples).toEqual([]);
    shortPath.predicted = 3_000_000;
    expect(cut.rebuffer(), 'slow start is not the path: the 8 MiB stays').toBeUndefined();
    expect(cut.probeNote).toContain('ended by its time limit, still in slow start: not used');
    expect(short.probeNote).toBeUndefined();
    steer.probeFailed('ERR_AMST_PROBE_FAILED: connection 2 reset');
    expect(steer.probeNote).toBe(
      "probe failed (ERR_AMST_PROBE_FAILED: connection 2 reset); steered from the transfer's samples",
    );
  });

  it('re-aims downtime-limit at what the pause budget leaves after half the RTT and the drain of the buffer at the stop', () => {
    const path = new FakePath();
    const chosen = chooseParameters();
    expect(chosen.downtimeLimitMs).toBe(300);
    const steer = new PathSteering(path, chosen, true);
    expect(steer.redowntime()).toBeUndefined();
    // A fast path: 100 ms RTT (FakePath), 1 GB/s; at the stop 1.5 BDPs (180 MB, held to the 64
    // MiB ceiling) are in flight: 67 ms of drain, so 150 − 50 − 67.
    path.predicted = 1_000_000_000;
    expect(steer.redowntime(), 'nothing measured on this path yet').toBeUndefined();
    path.observe({ atMs: 1, goodputBytesPerSec: 1_000_000_000, connections: 2, rttMs: 100 });
    expect(steer.redowntime()).toBe(33);
    expect(steer.redowntime()).toBeUndefined();
    // At 100 MB/s the 18 MB in flight take 180 ms, past the budget: the 20 ms floor.
    path.predicted = 100_000_000;
    expect(steer.redowntime()).toBe(20);
    // The operator fixed it: never changed.
    const fixed = new PathSteering(path, chosen, true, false);
    expect(fixed.redowntime()).toBeUndefined();
    expect(fixed.report().downtimeLimitMs).toBe(300);
    expect(steer.report().basis).toContain('downtime-limit now 20 ms');
  });

  it('with a switchover bandwidth: QEMU uncapped, its stop decision at the prediction × the recent reduction', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters({ rttMs: 100 }), true);
    expect(steer.reswitchover(), 'not in use yet').toBeUndefined();
    expect(steer.useSwitchoverBandwidth()).toBe(MAX_MAX_BANDWIDTH);
    expect(steer.maxBandwidthBytesPerSec).toBe(MAX_MAX_BANDWIDTH);
    expect(steer.reswitchover(), 'no prediction yet').toBeUndefined();
    expect(steer.report().basis).toContain('its own rate until PBA predicts');
    // 30 MiB from QEMU became 10 MiB on the wire, then zero pages: 40 MiB more for 1 MiB.
    steer.sample(counters(1, 0, 0, 0, 0), 1000);
    steer.sample(counters(2, 10 * MiB, 11 * MiB, 30 * MiB, 10 * MiB), 2000);
    path.predicted = 10 * MiB;
    expect(steer.reswitchover()).toBe(30 * MiB);
    steer.sample(counters(3, 11 * MiB, 12 * MiB, 70 * MiB, 11 * MiB), 3000);
    // The path would carry 400 MiB/s of such a stream, but the pipeline took QEMU's at 40 MiB/s
    // at most (an encoder-bound interval): the stop decision assumes that.
    expect(steer.reswitchover()).toBe(40 * MiB);
    // Then dirtied random pages, which do not shrink: the stop decision assumes the wire rate.
    steer.sample(counters(4, 21 * MiB, 22 * MiB, 78 * MiB, 21 * MiB), 4000);
    expect(steer.reswitchover()).toBe(10 * MiB);
    expect(steer.reswitchover(), 'unchanged').toBeUndefined();
    // A max-bandwidth retarget never caps QEMU in this mode.
    expect(steer.retarget(counters(4, 21 * MiB, 22 * MiB))).toBeUndefined();
    expect(steer.report()).toMatchObject({
      maxBandwidthBytesPerSec: MAX_MAX_BANDWIDTH,
      switchoverBandwidthBytesPerSec: 10 * MiB,
    });
    expect(steer.report().basis).toContain('its stop decision assumes 10.0 MiB/s');
    // Where the operator fixed max-bandwidth, none of it.
    const fixed = new PathSteering(path, chooseParameters(), false);
    expect(fixed.useSwitchoverBandwidth()).toBeUndefined();
    // Without PBA (no path view) QEMU is still uncapped, and its own rate sets the stop.
    const blind = new PathSteering(undefined, chooseParameters(), true);
    expect(blind.useSwitchoverBandwidth()).toBe(MAX_MAX_BANDWIDTH);
    expect(blind.reswitchover()).toBeUndefined();
    expect(fixed.reswitchover()).toBeUndefined();
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

  it('gives the ETA from the prediction before QEMU’s readings: remaining bytes at the run’s reduction, plus the backlog', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters(), true);
    const c = counters(2, 10 * MiB, 12 * MiB, 20 * MiB, 10 * MiB);
    expect(steer.etaMs(c, 40 * MiB)).toBeUndefined();
    path.predicted = 2 * MiB;
    // (40 MiB / 2 + 2 MiB backlog) / 2 MiB/s = 11 s.
    expect(steer.etaMs(c, 40 * MiB)).toBe(11_000);
  });

  /** Feeds QEMU readings every 250 ms: `ramPerSec` of RAM covered, at `wirePerRam` wire bytes each. */
  const feed = (
    steer: PathSteering,
    from: { atMs: number; remaining: number; wire: number },
    seconds: number,
    ramPerSec: number,
    wirePerRam: number,
  ) => {
    const at = { ...from };
    for (let t = 0; t < seconds * 4; t++) {
      at.atMs += 250;
      const ram = Math.min(at.remaining, ramPerSec / 4);
      at.remaining -= ram;
      at.wire += ram * wirePerRam;
      steer.progressed(
        { dirtySyncCount: 1, remainingBytes: at.remaining },
        counters(0, 0, 0, 0, at.wire),
        at.atMs,
      );
    }
    return at;
  };

  it('gives the ETA from the mix of the last seconds, so it follows a link whose prediction steps down', () => {
    const path = new FakePath();
    const steer = new PathSteering(path, chooseParameters(), true);
    // Random pages (1 wire byte per RAM byte) at 10 MiB/s, the run's reduction 4 from zero pages before.
    path.predicted = 10 * MiB;
    const at = feed(steer, { atMs: 0, remaining: 200 * MiB, wire: 0 }, 4, 10 * MiB, 1);
    const c = counters(4, 40 * MiB, 41 * MiB, 160 * MiB, 40 * MiB);
    // 160 MiB left × 1 + 1 MiB backlog at 10 MiB/s: 16.1 s (the run's reduction would say 4.1 s).
    expect(steer.etaMs(c, at.remaining)).toBe(16_100);
    // The link halves and PBA sees it: the ETA doubles at once, before the window holds a slow second.
    path.predicted = 5 * MiB;
    expect(steer.etaMs(c, at.remaining)).toBe(32_200);
    // The window's pages now cost 5 MiB/s of wire for 5 MiB/s of RAM: the same mix, the same ETA.
    const later = feed(steer, at, 2, 5 * MiB, 1);
    expect(steer.etaMs(c, later.remaining)).toBe(Math.round(((150 * MiB + MiB) * 1000) / (5 * MiB)));
  });

  it('counts a stretch of zero pages at its own mix, and the random pages after it at theirs', () => {
    const path = new FakePath();
    path.predicted = 5 * MiB;
    const steer = new PathSteering(path, chooseParameters(), true);
    const c = counters(4, 40 * MiB, 40 * MiB, 100 * MiB, 50 * MiB);
    let at = feed(steer, { atMs: 0, remaining: 200 * MiB, wire: 0 }, 4, 5 * MiB, 1);
    expect(steer.etaMs(c, at.remaining)).toBe(36_000);
    // Zero pages: 40 MiB of RAM in one second for 9 bytes a page. The 2 s window still holds 1 s
    // of random pages (5 MiB of wire for 5 MiB of RAM).
    at = feed(steer, at, 1, 40 * MiB, 9 / 4096);
    const zeroWire = 40 * MiB * (9 / 4096);
    expect(steer.etaMs(c, at.remaining)).toBe(
      Math.round((at.remaining * ((5 * MiB + zeroWire) / (45 * MiB)) * 1000) / (5 * MiB)),
    );
    // Four seconds of random pages later the zero stretch has left the window.
    at = feed(steer, at, 4, 5 * MiB, 1);
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 1000) / (5 * MiB)));
  });

  it('leaves out of the ETA’s mix an interval in which a dirty sync raised QEMU’s remaining count', () => {
    const path = new FakePath();
    path.predicted = 5 * MiB;
    const steer = new PathSteering(path, chooseParameters(), true);
    const c = counters(4, 40 * MiB, 40 * MiB, 100 * MiB, 50 * MiB);
    let at = feed(steer, { atMs: 0, remaining: 40 * MiB, wire: 0 }, 3, 10 * MiB, 0.5);
    // The sync: 20 MiB of dirtied pages back in the count, 2 MiB sent meanwhile.
    at = { atMs: at.atMs + 250, remaining: at.remaining + 20 * MiB, wire: at.wire + 2 * MiB };
    steer.progressed(
      { dirtySyncCount: 2, remainingBytes: at.remaining },
      counters(0, 0, 0, 0, at.wire),
      at.atMs,
    );
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 0.5 * 1000) / (5 * MiB)));
  });

  it('reaches back past 2 s for 8 MiB of RAM, holds the last mix while QEMU waits, and the run’s reduction before any', () => {
    const path = new FakePath();
    path.predicted = 5 * MiB;
    const steer = new PathSteering(path, chooseParameters(), true);
    const c = counters(4, 40 * MiB, 40 * MiB, 100 * MiB, 50 * MiB);
    // Less than 8 MiB of RAM behind the window: the run's reduction, 2.
    let at = feed(steer, { atMs: 0, remaining: 100 * MiB, wire: 0 }, 1, 4 * MiB, 1);
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 0.5 * 1000) / (5 * MiB)));
    // Random pages at 0.5 wire bytes a byte, then at 1: 2 s hold 8 MiB, and only the latter count.
    at = feed(steer, at, 1, 4 * MiB, 0.5);
    at = feed(steer, at, 2, 4 * MiB, 1);
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 1000) / (5 * MiB)));
    // At 2 MiB/s the window reaches back 3 s for its 8 MiB: half of it at 0.5, half at 1.
    at = feed(steer, at, 2, 2 * MiB, 0.5);
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 0.75 * 1000) / (5 * MiB)));
    // QEMU blocked for 25 s: no RAM covered within 20 s, the last mix stands.
    at = feed(steer, at, 25, 0, 1);
    expect(steer.etaMs(c, at.remaining)).toBe(Math.round((at.remaining * 0.75 * 1000) / (5 * MiB)));
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

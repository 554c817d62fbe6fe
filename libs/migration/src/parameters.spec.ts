import { describe, expect, it } from 'vitest';
import {
  bufferBytesFor,
  chooseParameters,
  downtimeLimitFor,
  PAUSE_BUDGET_MS,
  QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
  QEMU_DEFAULT_MAX_BANDWIDTH,
} from './parameters';

const MiB = 1024 * 1024;

describe('chooseParameters', () => {
  it("keeps QEMU's defaults and 4 connections when nothing was measured", () => {
    const c = chooseParameters();
    expect(c).toMatchObject({
      streams: 4,
      zstdLevel: 1,
      maxBandwidthBytesPerSec: QEMU_DEFAULT_MAX_BANDWIDTH,
      downtimeLimitMs: QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
    });
    expect(c.basis).toContain('bandwidth unknown, RTT unknown');
  });

  it('treats zero, negative and non-finite measurements as unknown', () => {
    expect(chooseParameters({ bandwidthBytesPerSec: 0, rttMs: Number.NaN })).toEqual(chooseParameters({}));
    expect(chooseParameters({ bandwidthBytesPerSec: -1, rttMs: Number.POSITIVE_INFINITY })).toEqual(
      chooseParameters({}),
    );
  });

  it('a fast LAN: few connections, the fastest zstd, a cap of twice the link, the pause budget', () => {
    const c = chooseParameters({ bandwidthBytesPerSec: 1024 * MiB, rttMs: 0.2 });
    expect(c).toMatchObject({
      streams: 2,
      zstdLevel: 1,
      maxBandwidthBytesPerSec: 2048 * MiB,
      // 150 − 0.1 − the 8 MiB of 1.5 BDPs with 5 ms of slack at 1 GiB/s (7.8 ms).
      downtimeLimitMs: 142,
      // The first pass's buffer: 2.5 BDPs.
      bufferBytes: bufferBytesFor(1024 * MiB, 0.2, 2.5),
    });
    expect(c.basis).toBe(
      'bandwidth 1024.0 MiB/s, RTT 0.2 ms → 2 connections, zstd 1, QEMU max-bandwidth 2048.0 MiB/s, downtime-limit 142 ms, send buffer 13.3 MiB',
    );
  });

  it('a long fat pipe: connections cover the bandwidth-delay product', () => {
    // 125 MB/s × 150 ms = 18.75 MB in flight, 4 MiB per connection → 5.
    const c = chooseParameters({ bandwidthBytesPerSec: 125_000_000, rttMs: 150 });
    expect(c).toMatchObject({
      streams: 5,
      zstdLevel: 1,
      maxBandwidthBytesPerSec: 250_000_000,
      downtimeLimitMs: downtimeLimitFor(150, c.bufferBytes, 125_000_000),
    });
  });

  it('slower links get more compression', () => {
    expect(chooseParameters({ bandwidthBytesPerSec: 12_500_000, rttMs: 80 })).toMatchObject({
      streams: 2,
      zstdLevel: 3,
      maxBandwidthBytesPerSec: 25_000_000,
    });
    expect(chooseParameters({ bandwidthBytesPerSec: MiB / 4 })).toMatchObject({
      streams: 4,
      zstdLevel: 6,
      maxBandwidthBytesPerSec: MiB,
      downtimeLimitMs: 20,
    });
  });

  it('caps connections at 16', () => {
    expect(chooseParameters({ bandwidthBytesPerSec: 10_000 * MiB, rttMs: 10_000 }).streams).toBe(16);
  });
});

describe('downtimeLimitFor', () => {
  it('is the 150 ms pause budget less half the RTT and the buffer’s drain, within 20..300 ms', () => {
    expect(downtimeLimitFor(undefined, 8 * MiB, undefined)).toBe(150);
    expect(downtimeLimitFor(20, 2_000_000, 100_000_000)).toBe(120);
    expect(downtimeLimitFor(100, 2_250_000, 12_500_000)).toBe(20);
    expect(downtimeLimitFor(0, 0, 1)).toBe(150);
    expect(PAUSE_BUDGET_MS).toBeLessThanOrEqual(QEMU_DEFAULT_DOWNTIME_LIMIT_MS);
  });
});

describe('bufferBytesFor', () => {
  it('is 1.5 (or the given) × rate × (RTT + the RTT again within 5..20 ms), between 2 and 64 MiB, and the 8 MiB default without a rate', () => {
    expect(bufferBytesFor(12_500_000, 100)).toBe(2_250_000);
    expect(bufferBytesFor(12_500_000, 100, 3)).toBe(4_500_000);
    // A datacenter: 5 ms of slack, not 20, or the buffer is ten times the path's BDP.
    expect(bufferBytesFor(1_250_000_000, 0.2)).toBe(Math.round(1_250_000_000 * 0.0052 * 1.5));
    expect(bufferBytesFor(1_250_000_000, 10)).toBe(Math.round(1_250_000_000 * 0.02 * 1.5));
    expect(bufferBytesFor(1_000_000, 1)).toBe(2 * 1024 * 1024);
    expect(bufferBytesFor(10e9, 300)).toBe(64 * 1024 * 1024);
    expect(bufferBytesFor(undefined, 100)).toBe(8 * 1024 * 1024);
    expect(bufferBytesFor(Number.NaN, 100)).toBe(8 * 1024 * 1024);
    // A migration starts in QEMU's first pass: 2.5 BDPs; its downtime-limit is sized for the 1.5
    // BDPs in flight once QEMU converges (150 − 50 − 180 ms: the 20 ms floor).
    expect(chooseParameters({ bandwidthBytesPerSec: 12_500_000, rttMs: 100 })).toMatchObject({
      bufferBytes: 3_750_000,
      downtimeLimitMs: 20,
    });
  });
});

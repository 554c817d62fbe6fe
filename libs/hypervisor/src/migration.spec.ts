import { describe, expect, it } from 'vitest';
import { HypervisorError } from './errors';
import {
  checkMigrationUri,
  fromQmpMigrationInfo,
  fromQmpParameters,
  toQmpCapabilities,
  toQmpParameters,
} from './migration';

describe('migration vocabulary ↔ QMP', () => {
  it('reads an active query-migrate, with the dirty rate in bytes per second', () => {
    const progress = fromQmpMigrationInfo({
      status: 'active',
      'setup-time': 3,
      'total-time': 1200,
      'expected-downtime': 41,
      'cpu-throttle-percentage': 30,
      ram: {
        transferred: 52_000_000,
        remaining: 9_000_000,
        total: 134_750_208,
        'dirty-pages-rate': 512,
        'page-size': 4096,
        'dirty-sync-count': 2,
        mbps: 1290.5,
      },
    });
    expect(progress).toEqual({
      status: 'active',
      transferredBytes: 52_000_000,
      remainingBytes: 9_000_000,
      totalBytes: 134_750_208,
      dirtyRateBytesPerSec: 512 * 4096,
      dirtySyncCount: 2,
      throughputBitsPerSec: 1_290_500_000,
      expectedDowntimeMs: 41,
      downtimeMs: undefined,
      setupTimeMs: 3,
      totalTimeMs: 1200,
      errorDesc: undefined,
      cpuThrottlePercent: 30,
    });
  });

  it('reads the empty reply before any migration as status none, and keeps a failure reason', () => {
    expect(fromQmpMigrationInfo({})).toMatchObject({
      status: 'none',
      transferredBytes: 0,
      totalTimeMs: undefined,
      cpuThrottlePercent: 0,
    });
    expect(fromQmpMigrationInfo({ status: 'failed', 'error-desc': 'Unable to write' })).toMatchObject({
      status: 'failed',
      errorDesc: 'Unable to write',
    });
  });

  it('maps parameters and capabilities to QEMU names and checks ranges', () => {
    expect(toQmpParameters({ maxBandwidthBytesPerSec: 1 << 20, downtimeLimitMs: 300 })).toEqual({
      'max-bandwidth': 1 << 20,
      'downtime-limit': 300,
    });
    expect(toQmpParameters({})).toEqual({});
    expect(() => toQmpParameters({ maxBandwidthBytesPerSec: -1 })).toThrow(/maxBandwidthBytesPerSec/);
    expect(() => toQmpParameters({ downtimeLimitMs: 2_000_001 })).toThrow(/downtimeLimitMs/);
    expect(() => toQmpParameters({ downtimeLimitMs: 1.5 })).toThrow(HypervisorError);
    expect(fromQmpParameters({ 'max-bandwidth': 134217728, 'downtime-limit': 300, 'x-other': 1 })).toEqual({
      maxBandwidthBytesPerSec: 134217728,
      downtimeLimitMs: 300,
    });
    // QEMU 8.2 and later also report the rate their stop decision assumes (0: the measured one).
    expect(
      fromQmpParameters({ 'max-bandwidth': 1, 'downtime-limit': 2, 'avail-switchover-bandwidth': 0 }),
    ).toEqual({ maxBandwidthBytesPerSec: 1, downtimeLimitMs: 2, availSwitchoverBandwidthBytesPerSec: 0 });
    expect(toQmpParameters({ availSwitchoverBandwidthBytesPerSec: 5_000_000 })).toEqual({
      'avail-switchover-bandwidth': 5_000_000,
    });
    expect(() => toQmpParameters({ availSwitchoverBandwidthBytesPerSec: -5 })).toThrow(
      /availSwitchoverBandwidthBytesPerSec/,
    );
    expect(toQmpCapabilities({ autoConverge: true, events: false })).toEqual([
      { capability: 'auto-converge', state: true },
      { capability: 'events', state: false },
    ]);
  });

  it('accepts the URIs QEMU 7.2 has and explains the missing file:', () => {
    expect(checkMigrationUri('unix:/run/dwcp/m.sock')).toBe('unix:/run/dwcp/m.sock');
    expect(checkMigrationUri("exec:cat > '/tmp/s'")).toBe("exec:cat > '/tmp/s'");
    expect(() => checkMigrationUri('file:/tmp/s')).toThrow(/no file: migration URI/);
    expect(() => checkMigrationUri('unix:')).toThrow(HypervisorError);
    expect(() => checkMigrationUri('rdma:host:1')).toThrow(/expected unix:/);
  });
});

import { describe, expect, it } from 'vitest';
import { kernelSample } from './kernel-sample';
import type { ConnectionCounters, TransferCounters } from './ports';

const transfer = (connections: ConnectionCounters[]): TransferCounters => ({
  bytesWritten: 0,
  bytesAcked: 0,
  framesResent: 0,
  elapsedSeconds: 1,
  connections,
});

const tcp = (over: Partial<ConnectionCounters>): ConnectionCounters => ({
  active: true,
  cwndBytes: 100_000,
  pacingRate: 2e6,
  kernelDeliveryRate: 1e6,
  retransmits: 10,
  kernelRttMs: 100,
  kernelMinRttMs: 99,
  ...over,
});

describe('kernelSample', () => {
  it('sums rates and windows over the open connections, takes the median RTT and the lowest minimum', () => {
    const prev = transfer([tcp({}), tcp({}), tcp({})]);
    const now = transfer([
      tcp({ kernelRttMs: 101, retransmits: 12 }),
      tcp({ kernelRttMs: 140, kernelMinRttMs: 98.5, retransmits: 15 }),
      tcp({ kernelRttMs: 120, retransmits: 10 }),
      // A connection being retired: its rates no longer count, its retransmits and minimum do.
      tcp({ active: false, kernelDeliveryRate: 9e9, kernelMinRttMs: 97, retransmits: 1 }),
    ]);
    expect(kernelSample(prev, now)).toEqual({
      deliveryRateBytesPerSec: 3e6,
      pacingRateBytesPerSec: 6e6,
      cwndBytes: 300_000,
      rttMs: 120,
      minRttMs: 97,
      retransmits: 8,
    });
  });

  it('never reports negative retransmits when a connection closed, and leaves out what nobody reported', () => {
    const prev = transfer([tcp({ retransmits: 50 }), tcp({ retransmits: 5 })]);
    const quic: ConnectionCounters = { active: true, cwndBytes: 64_000, kernelRttMs: 30, retransmits: 2 };
    expect(kernelSample(prev, transfer([quic]))).toEqual({ cwndBytes: 64_000, rttMs: 30, retransmits: 0 });
    const bare: ConnectionCounters = { active: true, srttMs: 12, minRttMs: 10 };
    expect(kernelSample(transfer([bare]), transfer([bare]))).toBeUndefined();
  });
});

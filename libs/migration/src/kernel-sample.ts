/** The transport stacks' own counters of an interval (`TCP_INFO`, quinn), summed into one PBA sample. */
import type { KernelPathSample } from '@novacron/bandwidth';
import type { TransferCounters } from './ports';

const numbers = (xs: ReadonlyArray<number | null | undefined>): number[] =>
  xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));

const sum = (xs: number[]): number | undefined =>
  xs.length === 0 ? undefined : xs.reduce((a, b) => a + b, 0);

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * What the kernel or quinn reported of the open connections at `now`, and the retransmits since
 * `prev`. Retransmits are cumulative per connection; one that closed in between takes its count
 * with it, so the interval's figure is then a lower bound (never negative). Undefined when the
 * stacks reported nothing (an older addon, a test double).
 */
export function kernelSample(prev: TransferCounters, now: TransferCounters): KernelPathSample | undefined {
  const active = now.connections.filter((c) => c.active);
  const retransmitted = (t: TransferCounters) => sum(numbers(t.connections.map((c) => c.retransmits)));
  const [before, after] = [retransmitted(prev), retransmitted(now)];
  const fields: KernelPathSample = {
    deliveryRateBytesPerSec: sum(numbers(active.map((c) => c.kernelDeliveryRate))),
    pacingRateBytesPerSec: sum(numbers(active.map((c) => c.pacingRate))),
    cwndBytes: sum(numbers(active.map((c) => c.cwndBytes))),
    rttMs: median(numbers(active.map((c) => c.kernelRttMs))),
    minRttMs: ((xs) => (xs.length === 0 ? undefined : Math.min(...xs)))(
      numbers(now.connections.map((c) => c.kernelMinRttMs)),
    ),
    retransmits: after === undefined ? undefined : Math.max(0, after - (before ?? 0)),
  };
  const present = Object.entries(fields).filter(([, v]) => v !== undefined);
  return present.length === 0 ? undefined : (Object.fromEntries(present) as KernelPathSample);
}

import type { MigrationPhase, MigrationRecord, MigrationStats } from '@novacron/cluster-state';
import { describe, expect, it } from 'vitest';
import {
  migrationDetails,
  type ProgressMemory,
  percentOf,
  progressCell,
  progressFrame,
  summaryLines,
} from './migration-progress';

const GB = 1e9;

function record(phase: MigrationPhase, stats: MigrationStats = {}, extra: Partial<MigrationRecord> = {}) {
  return {
    id: 'mig-1',
    vmId: 'vm-1',
    sourceNodeId: 'node-1',
    targetNodeId: 'node-2',
    phase,
    stats,
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:01:02.000Z',
    revision: 1,
    ...extra,
  } satisfies MigrationRecord;
}

/** The display over a sequence of records, as `dwcp migrate` folds it. */
function lines(records: MigrationRecord[]): string[] {
  let memory: ProgressMemory = {};
  return records.map((r) => {
    const frame = progressFrame(r, memory);
    memory = frame.memory;
    return frame.line;
  });
}

const live = (remaining: number, more: MigrationStats = {}): MigrationStats => ({
  ramBytes: 4 * GB,
  remainingBytes: remaining,
  wireBytesPerSec: 112.4e6,
  dirtyRateBytesPerSec: 40.1e6,
  dedupRatio: 0.37,
  etaMs: 42_000,
  ...more,
});

describe('progressFrame', () => {
  it('shows phase, bar, percent, ETA, wire rate, dirty rate and dedup', () => {
    expect(lines([record('transferring', live(2 * GB))])).toEqual([
      'transferring   [##########..........]  50.0%  ETA 42.0 s  wire 112.4 MB/s  dirty 40.1 MB/s  dedup 37.0%',
    ]);
  });

  it('keeps a marker at the best percent and says why when the percent goes back', () => {
    const out = lines([
      record('transferring', live(2.8 * GB)),
      record('transferring', live(1.2 * GB)),
      record('transferring', live(2.2 * GB)),
      record('transferring', live(0.4 * GB)),
    ]);
    expect(out[0]).toContain('[######..............]  30.0%');
    expect(out[1]).toContain('[##############......]  70.0%');
    // Back to 45%: the bar shrinks, the best (70%) stays marked, and the line says why.
    expect(out[2]).toContain('[#########....|......]  45.0%');
    expect(out[2]).toMatch(/ {2}re-sending dirtied pages \(best 70\.0%\)$/);
    // Past the best again: no marker, no note.
    expect(out[3]).toContain('[##################..]  90.0%');
    expect(out[3]).not.toContain('re-sending');
  });

  it('ignores a dip smaller than half a point (QEMU estimates jitter)', () => {
    const out = lines([record('transferring', live(1.2 * GB)), record('transferring', live(1.21 * GB))]);
    expect(out[1]).not.toContain('re-sending');
    expect(out[1]).not.toContain('|');
  });

  it('shows placeholders while nothing is measured', () => {
    expect(lines([record('pending'), record('preparing', { totalMs: 50 })])).toEqual([
      'pending        [....................]  --.-%  ETA -  wire -  dirty -  dedup -',
      'preparing      [....................]  --.-%  ETA -  wire -  dirty -  dedup -',
    ]);
    expect(percentOf({ ramBytes: 0, remainingBytes: 0 })).toBeUndefined();
    expect(percentOf({ remainingBytes: 5 })).toBeUndefined();
  });

  it('keeps the best percent through a record without progress', () => {
    const out = lines([
      record('transferring', live(1 * GB)),
      record('transferring', {}),
      record('transferring', live(3 * GB)),
    ]);
    expect(out[1]).toContain('--.-%');
    expect(out[2]).toContain('re-sending dirtied pages (best 75.0%)');
  });

  it('ends full on done, and without an ETA on failed or cancelled', () => {
    const [done] = lines([record('done', { ramBytes: 4 * GB, etaMs: 0 })]);
    expect(done).toMatch(/^done {11}\[#{20}\] 100\.0% {2}ETA - /);
    const [failed] = lines([record('failed', live(1 * GB))]);
    expect(failed).toMatch(/^failed {9}\[#{15}\.{5}\] {2}75\.0% {2}ETA - {2}wire/);
    const [cancelled] = lines([record('cancelled')]);
    expect(cancelled).toContain('--.-%  ETA -');
  });

  it('clamps a remaining count above the RAM size to 0%', () => {
    expect(percentOf({ ramBytes: 100, remainingBytes: 150 })).toBe(0);
  });
});

describe('summaryLines', () => {
  it('reports result, time, bytes, reduction, dedup, compression and downtime of a done migration', () => {
    const r = record('done', {
      bytesIn: 4.29 * GB,
      bytesOnWire: 1.1 * GB,
      dedupRatio: 0.375,
      compressionRatio: 2.5,
      downtimeMs: 120,
      totalMs: 62_400,
    });
    expect(summaryLines(r)).toEqual([
      'migration mig-1 of vm-1: node-1 -> node-2',
      '  result:            done',
      '  total time:        1m02s',
      '  bytes from QEMU:   4.29 GB',
      '  bytes on the wire: 1.10 GB',
      '  reduction:         3.90x',
      '  dedup:             37.5% of the bytes from QEMU',
      '  compression:       2.50x',
      '  downtime:          120 ms',
    ]);
  });

  it('gives the reason of a failed or cancelled migration, and dashes for what was never measured', () => {
    const failed = summaryLines(record('failed', {}, { reason: 'destination QEMU exited' }));
    expect(failed).toContain('  result:            failed');
    expect(failed).toContain('  bytes on the wire: -');
    expect(failed).toContain('  reduction:         -');
    // Without totalMs, the time between the record's creation and its last update.
    expect(failed).toContain('  total time:        1m02s');
    expect(failed.at(-1)).toBe('  reason:            destination QEMU exited');
    expect(summaryLines(record('cancelled', {}, { reason: 'by request' })).at(-1)).toBe(
      '  reason:            by request',
    );
  });
});

describe('migration details and list cell', () => {
  it('shows live progress only while the migration runs', () => {
    const running = migrationDetails(record('transferring', live(1 * GB)));
    expect(running).toContain('progress:          75.0%');
    expect(running).toContain('ETA:               42.0 s');
    const done = migrationDetails(record('done', { bytesIn: 10 }));
    expect(done.some((l) => l.startsWith('progress:'))).toBe(false);
    expect(progressCell(record('done'))).toBe('100.0%');
    expect(progressCell(record('pending'))).toBe('--.-%');
  });
});

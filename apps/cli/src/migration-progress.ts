/**
 * What `dwcp migrate` shows of a migration record: a progress line per observation and a summary at
 * the end. Pure functions of the records, so the display is tested without a cluster. Progress can go
 * back (the guest re-dirties pages QEMU already sent); the line then keeps a marker at the best percent.
 */
import { isTerminal, type MigrationRecord, type MigrationStats } from '@novacron/cluster-state';
import {
  formatBytes,
  formatDuration,
  formatFactor,
  formatFraction,
  formatRate,
  keyValues,
  NONE,
} from './text-output';

const BAR_WIDTH = 20;
/** Percentage points below the best before the line says pages are being re-sent (QEMU's estimate jitters). */
const SETBACK_POINTS = 0.5;

/** `1 - remainingBytes / ramBytes` in percent, once QEMU has reported both. */
export function percentOf(stats: MigrationStats): number | undefined {
  const { ramBytes, remainingBytes } = stats;
  if (ramBytes === undefined || ramBytes <= 0 || remainingBytes === undefined) return undefined;
  return Math.min(100, Math.max(0, (1 - remainingBytes / ramBytes) * 100));
}

/** What the display remembers between records. */
export interface ProgressMemory {
  bestPercent?: number;
}

export interface ProgressFrame {
  line: string;
  memory: ProgressMemory;
}

function bar(percent: number | undefined, best: number | undefined): string {
  const cells = Array.from({ length: BAR_WIDTH }, () => '.');
  const filled = percent === undefined ? 0 : Math.round((percent / 100) * BAR_WIDTH);
  cells.fill('#', 0, filled);
  if (best !== undefined) {
    const at = Math.round((best / 100) * BAR_WIDTH) - 1;
    if (at >= filled) cells[Math.min(at, BAR_WIDTH - 1)] = '|';
  }
  return `[${cells.join('')}]`;
}

const pct = (p: number | undefined) => (p === undefined ? '--.-%' : `${p.toFixed(1)}%`);

/**
 * One line for `record`: phase, bar, percent, ETA, wire rate, dirty rate, dedup, most important
 * first so a narrow terminal cuts the least useful end.
 */
export function progressFrame(record: MigrationRecord, memory: ProgressMemory): ProgressFrame {
  const s = record.stats;
  const percent = record.phase === 'done' ? 100 : percentOf(s);
  const best = percent === undefined ? memory.bestPercent : Math.max(memory.bestPercent ?? 0, percent);
  const setback =
    percent !== undefined && best !== undefined && best - percent >= SETBACK_POINTS ? best : undefined;
  const running = !isTerminal(record.phase);
  const parts = [
    `${record.phase.padEnd(14)} ${bar(percent, setback)} ${pct(percent).padStart(6)}`,
    `ETA ${running && s.etaMs !== undefined ? formatDuration(s.etaMs) : NONE}`,
    `wire ${formatRate(s.wireBytesPerSec)}`,
    `dirty ${formatRate(s.dirtyRateBytesPerSec)}`,
    `dedup ${formatFraction(s.dedupRatio)}`,
  ];
  if (setback !== undefined) parts.push(`re-sending dirtied pages (best ${pct(setback)})`);
  return { line: parts.join('  '), memory: best === undefined ? {} : { bestPercent: best } };
}

function totalMsOf(record: MigrationRecord): number | undefined {
  if (record.stats.totalMs !== undefined) return record.stats.totalMs;
  const ms = Date.parse(record.updatedAt) - Date.parse(record.createdAt);
  return Number.isFinite(ms) ? ms : undefined;
}

function reductionOf(s: MigrationStats): number | undefined {
  return s.bytesIn !== undefined && s.bytesOnWire ? s.bytesIn / s.bytesOnWire : undefined;
}

function statsFacts(record: MigrationRecord): [string, string][] {
  const s = record.stats;
  return [
    ['total time', formatDuration(totalMsOf(record))],
    ['bytes from QEMU', formatBytes(s.bytesIn)],
    ['bytes on the wire', formatBytes(s.bytesOnWire)],
    ['reduction', formatFactor(reductionOf(s))],
    ['dedup', s.dedupRatio === undefined ? NONE : `${formatFraction(s.dedupRatio)} of the bytes from QEMU`],
    ['compression', formatFactor(s.compressionRatio)],
    ['downtime', formatDuration(s.downtimeMs)],
    ...(s.cpuThrottlePercent === undefined
      ? []
      : ([['auto-converge', `the guest was throttled up to ${s.cpuThrottlePercent} %`]] as [
          string,
          string,
        ][])),
  ];
}

/** Printed once a followed migration ends. */
export function summaryLines(record: MigrationRecord): string[] {
  const facts: [string, string][] = [['result', record.phase], ...statsFacts(record)];
  if (record.reason !== undefined && record.phase !== 'done') facts.push(['reason', record.reason]);
  return [
    `migration ${record.id} of ${record.vmId}: ${record.sourceNodeId} -> ${record.targetNodeId}`,
  ].concat(keyValues(facts).map((l) => `  ${l}`));
}

/** Everything `dwcp migrate get` shows. */
export function migrationDetails(record: MigrationRecord): string[] {
  const s = record.stats;
  const facts: [string, string][] = [
    ['id', record.id],
    ['vm', record.vmId],
    ['from', record.sourceNodeId],
    ['to', record.targetNodeId],
    ['phase', record.phase],
  ];
  if (record.reason !== undefined) facts.push(['reason', record.reason]);
  if (!isTerminal(record.phase)) {
    facts.push(
      ['progress', pct(percentOf(s))],
      ['remaining', formatBytes(s.remainingBytes)],
      ['wire rate', formatRate(s.wireBytesPerSec)],
      ['dirty rate', formatRate(s.dirtyRateBytesPerSec)],
      ['ETA', formatDuration(s.etaMs)],
    );
  }
  facts.push(...statsFacts(record), ['created', record.createdAt], ['updated', record.updatedAt]);
  return keyValues(facts);
}

/** The progress column of `dwcp migrate list`. */
export function progressCell(record: MigrationRecord): string {
  if (record.phase === 'done') return '100.0%';
  return pct(percentOf(record.stats));
}

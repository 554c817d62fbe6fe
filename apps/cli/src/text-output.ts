/** How records read on a terminal: aligned tables, key-value blocks and human units (decimal: 1 MB = 10^6 bytes). */

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

export function keyValues(pairs: readonly (readonly [string, string])[]): string[] {
  const width = Math.max(0, ...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`);
}

/** A missing value. */
export const NONE = '-';

export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined) return NONE;
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

export function formatRate(bytesPerSec: number | undefined): string {
  return bytesPerSec === undefined ? NONE : `${(bytesPerSec / 1e6).toFixed(1)} MB/s`;
}

export function formatDuration(ms: number | undefined): string {
  if (ms === undefined) return NONE;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const totalSeconds = ms / 1000;
  if (totalSeconds < 60) return `${totalSeconds.toFixed(1)} s`;
  const s = Math.round(totalSeconds);
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h${two(m)}m${two(sec)}s` : `${m}m${two(sec)}s`;
}

/** A ratio such as raw bytes per sent byte. */
export function formatFactor(ratio: number | undefined): string {
  return ratio === undefined || !Number.isFinite(ratio) ? NONE : `${ratio.toFixed(2)}x`;
}

/** A fraction in [0, 1] as a percentage. */
export function formatFraction(fraction: number | undefined): string {
  return fraction === undefined ? NONE : `${(fraction * 100).toFixed(1)}%`;
}

export function formatLabels(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels);
  return entries.length === 0 ? NONE : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

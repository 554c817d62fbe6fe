/**
 * Throughput traces for bench:pba, in the `seconds Mbit/s` line format that adaptive-video work
 * (Pensieve, MPC, Comyco) publishes, turned into the 1 s goodput bins PBA's predictor is fed.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const SHIPPED_TRACES = resolve(__dirname, '../traces');
/**
 * The project's own recordings on bench/wan's emulator (bench:pba:record), in bench/traces/emulator/
 * with no tuning/evaluation split: the whole set is held out.
 */
export const EMULATOR_SET = 'emulator';

/**
 * Which part of a trace set a trace belongs to; PBA's model was fitted on `tuning` only, and the
 * `emulator` set is never split.
 */
export type TraceSplit = 'tuning' | 'evaluation' | 'external' | 'emulator';

export interface Trace {
  name: string;
  /** Mean goodput of each whole second from the trace's first timestamp, in bytes/s. */
  bins: number[];
}

export interface TraceSet {
  name: string;
  split: TraceSplit;
  dir: string;
  traces: Trace[];
}

/**
 * Reads one trace. Each value holds from its timestamp to the next one; bin k is the time-weighted
 * mean over [t0 + k, t0 + k + 1). Blank lines and `#` comments are skipped.
 */
export function loadTrace(path: string): number[] {
  const points: Array<[number, number]> = [];
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((line, i) => {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) return;
    const [t, mbps] = text.split(/\s+/).map(Number);
    if (t === undefined || mbps === undefined || !Number.isFinite(t) || !Number.isFinite(mbps) || mbps < 0) {
      throw new Error(`${path}:${i + 1}: expected "seconds Mbit/s", got "${text}"`);
    }
    const previous = points[points.length - 1];
    if (previous !== undefined && t < previous[0]) {
      throw new Error(`${path}:${i + 1}: time goes backwards (${t} after ${previous[0]})`);
    }
    points.push([t, mbps]);
  });
  const first = points[0];
  const last = points[points.length - 1];
  if (first === undefined || last === undefined) return [];
  const bins = new Array<number>(Math.floor(last[0] - first[0])).fill(0);
  for (let i = 0; i + 1 < points.length; i++) {
    const [a, mbps] = points[i] as [number, number];
    const b = (points[i + 1] as [number, number])[0];
    for (let k = Math.floor(a - first[0]); k < Math.min(bins.length, Math.ceil(b - first[0])); k++) {
      const overlap = Math.min(b, first[0] + k + 1) - Math.max(a, first[0] + k);
      if (overlap > 0) bins[k] = (bins[k] as number) + mbps * overlap;
    }
  }
  return bins.map((mbps) => (mbps * 1e6) / 8);
}

function traceFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.') && !/^readme/i.test(f) && statSync(join(dir, f)).isFile())
    .sort();
}

export function loadSet(name: string, split: TraceSplit, dir: string): TraceSet {
  return {
    name,
    split,
    dir,
    traces: traceFiles(dir).map((f) => ({ name: f, bins: loadTrace(join(dir, f)) })),
  };
}

/** Every public set under bench/traces, as bench/traces/<set>/{tuning,evaluation}/. */
export function shippedSets(split: 'tuning' | 'evaluation', root = SHIPPED_TRACES): TraceSet[] {
  return readdirSync(root)
    .filter((d) => d !== EMULATOR_SET && statSync(join(root, d)).isDirectory())
    .sort()
    .map((d) => loadSet(d, split, join(root, d, split)));
}

/** bench/traces/emulator as one held-out set, or undefined before anything was recorded. */
export function emulatorSet(root = SHIPPED_TRACES): TraceSet | undefined {
  const dir = join(root, EMULATOR_SET);
  if (!existsSync(dir)) return undefined;
  const set = loadSet(EMULATOR_SET, 'emulator', dir);
  return set.traces.length > 0 ? set : undefined;
}

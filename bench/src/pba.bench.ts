/**
 * `npm run bench:pba`: how well PBA's predictor (libs/bandwidth PathPredictor) predicts goodput
 * against two simple baselines, the harmonic mean of the last 5 s (MPC's) and the last second, on
 * measured throughput traces. Reports the evaluation half of each public set under bench/traces (PBA
 * was fitted on the tuning half only), the whole of bench/traces/emulator (recorded on the WAN
 * emulator by bench:pba:record, never fitted on) and any directory in DWCP_PBA_TRACES. Writes
 * docs/benchmarks/pba.md and pba.json.
 */
import { writeFileSync } from 'node:fs';
import { basename, relative, resolve } from 'node:path';
import {
  HarmonicMeanPredictor,
  LastBinPredictor,
  LOWER_QUANTILE,
  PathPredictor,
  PREDICTION_HORIZONS,
  type PredictionHorizon,
} from '@novacron/bandwidth';
import { type MachineInfo, machineInfo, machineMarkdown } from './machine';
import { emulatorSet, loadSet, shippedSets, type TraceSet } from './pba-traces';

const REPO_ROOT = resolve(__dirname, '../..');
/** Every predictor has seen 5 bins (the harmonic mean's window) before it is scored. */
const WARMUP_BINS = 5;
/** Done means: PBA's median and p90 error each at least 20 % below the better baseline's. */
const TARGET_RATIO = 0.8;
const METHODS = ['pba', 'harmonicMean5', 'lastSample'] as const;
type Method = (typeof METHODS)[number];

export interface ErrorStats {
  median: number;
  p90: number;
}

export interface HorizonResult {
  horizonSec: PredictionHorizon;
  /** Predictions scored (one per second of every trace, after the warm-up). */
  samples: number;
  /** Seconds whose actual rate was 0, where a percentage error is undefined; not scored. */
  skippedZeroActual: number;
  /** Absolute percentage error |predicted − actual| / actual, as a fraction. */
  error: Record<Method, ErrorStats>;
  /** The baseline with the lower error, for each statistic separately. */
  betterBaseline: { median: Method; p90: Method };
  /** PBA's error over the better baseline's: ≤ 0.8 meets the target. */
  ratio: ErrorStats;
  targetMet: boolean;
  /** Share of intervals whose actual rate was at or above PBA's lower value (aimed at 0.9). */
  lowerCoverage: number;
  /** Median of PBA's lower value over the actual rate: how much a user of it gives up. */
  lowerOverActualMedian: number;
}

export interface SetResult {
  name: string;
  split: TraceSet['split'];
  dir: string;
  traces: number;
  seconds: number;
  horizons: HorizonResult[];
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo);
}

function stats(values: number[]): ErrorStats {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: quantile(sorted, 0.5), p90: quantile(sorted, 0.9) };
}

export function evaluateSet(set: TraceSet): SetResult {
  const errors = new Map<PredictionHorizon, Record<Method, number[]>>();
  const lower = new Map<PredictionHorizon, { covered: number; ratios: number[]; skipped: number }>();
  for (const h of PREDICTION_HORIZONS) {
    errors.set(h, { pba: [], harmonicMean5: [], lastSample: [] });
    lower.set(h, { covered: 0, ratios: [], skipped: 0 });
  }
  let seconds = 0;
  for (const { bins } of set.traces) {
    seconds += bins.length;
    const pba = new PathPredictor();
    const harmonic = new HarmonicMeanPredictor(5);
    const last = new LastBinPredictor();
    for (let k = 0; k < bins.length; k++) {
      const rate = bins[k] as number;
      pba.observe((k + 1) * 1000, rate);
      harmonic.observeBin(rate);
      last.observeBin(rate);
      if (k + 1 < WARMUP_BINS) continue;
      for (const h of PREDICTION_HORIZONS) {
        if (k + h >= bins.length) continue;
        let sum = 0;
        for (let j = 1; j <= h; j++) sum += bins[k + j] as number;
        const actual = sum / h;
        const l = lower.get(h) as { covered: number; ratios: number[]; skipped: number };
        if (actual <= 0) {
          l.skipped += 1;
          continue;
        }
        const p = pba.predict(h);
        if (p === undefined) throw new Error('PathPredictor predicts nothing after its warm-up');
        const predicted: Record<Method, number> = {
          pba: p.bytesPerSec,
          harmonicMean5: harmonic.predictRate(h) as number,
          lastSample: last.predictRate(h) as number,
        };
        const e = errors.get(h) as Record<Method, number[]>;
        for (const m of METHODS) e[m].push(Math.abs(predicted[m] - actual) / actual);
        if (actual >= p.lowerBytesPerSec) l.covered += 1;
        l.ratios.push(p.lowerBytesPerSec / actual);
      }
    }
  }
  const horizons = PREDICTION_HORIZONS.map((h): HorizonResult => {
    const e = errors.get(h) as Record<Method, number[]>;
    const l = lower.get(h) as { covered: number; ratios: number[]; skipped: number };
    const error = Object.fromEntries(METHODS.map((m) => [m, stats(e[m])])) as Record<Method, ErrorStats>;
    const better = (key: keyof ErrorStats): Method =>
      error.harmonicMean5[key] <= error.lastSample[key] ? 'harmonicMean5' : 'lastSample';
    const betterBaseline = { median: better('median'), p90: better('p90') };
    const ratio = {
      median: error.pba.median / error[betterBaseline.median].median,
      p90: error.pba.p90 / error[betterBaseline.p90].p90,
    };
    return {
      horizonSec: h,
      samples: e.pba.length,
      skippedZeroActual: l.skipped,
      error,
      betterBaseline,
      ratio,
      targetMet: ratio.median <= TARGET_RATIO && ratio.p90 <= TARGET_RATIO,
      lowerCoverage: l.covered / e.pba.length,
      lowerOverActualMedian: stats(l.ratios).median,
    };
  });
  const dir = relative(REPO_ROOT, set.dir);
  return {
    name: set.name,
    split: set.split,
    dir: dir.startsWith('..') ? set.dir : dir,
    traces: set.traces.length,
    seconds,
    horizons,
  };
}

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
const LABEL: Record<Method, string> = {
  pba: 'PBA',
  harmonicMean5: 'harmonic mean of 5',
  lastSample: 'last sample',
};

function table(results: SetResult[]): string {
  const rows = [
    '| set | horizon | scored | PBA median / p90 | harmonic mean of 5 | last sample | PBA ÷ better baseline (median, p90) | target ≤ 0.8 both | lower value: coverage, median lower ÷ actual |',
    '|---|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const r of results) {
    for (const h of r.horizons) {
      const cell = (m: Method): string => `${pct(h.error[m].median)} / ${pct(h.error[m].p90)}`;
      rows.push(
        `| ${r.name} | ${h.horizonSec} s | ${h.samples} | ${cell('pba')} | ${cell('harmonicMean5')} | ${cell('lastSample')} | ` +
          `${h.ratio.median.toFixed(2)} (vs ${LABEL[h.betterBaseline.median]}), ${h.ratio.p90.toFixed(2)} (vs ${LABEL[h.betterBaseline.p90]}) | ` +
          `${h.targetMet ? 'met' : '**missed**'} | ${pct(h.lowerCoverage)}, ${h.lowerOverActualMedian.toFixed(2)} |`,
      );
    }
  }
  return rows.join('\n');
}

function emulatorSection(set: TraceSet | undefined, result: SetResult | undefined): string[] {
  if (set === undefined || result === undefined) {
    return [
      'Not in this run: bench/traces/emulator holds no trace. `npm run bench:pba:record` (as root) records',
      'them on the WAN emulator.',
      '',
    ];
  }
  const perTrace = set.traces.map(({ name, bins }) => {
    const mbit = (8 * bins.reduce((a, b) => a + b, 0)) / Math.max(1, bins.length) / 1e6;
    return `${name.replace(/\.txt$/, '')} ${mbit.toFixed(1)} Mbit/s over ${bins.length} s`;
  });
  return [
    `Set: ${result.name}: ${result.traces} traces, ${(result.seconds / 60).toFixed(1)} min, recorded by \`npm run bench:pba:record\`.`,
    "Each trace is one real AMST transfer (TCP+TLS, the product's transport) through bench/wan's emulator,",
    'on a named scenario or with the rate following a schedule; the scenarios, schedules, machine and commit',
    'are in bench/traces/emulator/README.md. The whole set is held out: it has no tuning half.',
    `Mean goodput per trace: ${perTrace.join('; ')}.`,
    '',
    table([result]),
    '',
  ];
}

function markdown(
  machine: MachineInfo,
  evaluation: SetResult[],
  external: SetResult[],
  tuning: SetResult[],
  emulator: { set: TraceSet | undefined; result: SetResult | undefined },
): string {
  const sets = (rs: SetResult[]): string =>
    rs.map((r) => `${r.name}: ${r.traces} traces, ${(r.seconds / 3600).toFixed(1)} h`).join('; ');
  return [
    '# bench:pba: predicting goodput on measured throughput traces',
    '',
    '`npm run bench:pba` (bench/src/pba.bench.ts). Each trace becomes 1 s goodput bins fed, one a second, to',
    "PBA's `PathPredictor` and to two baselines: the harmonic mean of the last 5 bins (MPC's predictor) and the",
    'last bin. After each bin every predictor predicts the next second (horizon 1 s) and the mean of the next',
    '5 s (horizon 5 s). Error is |predicted − actual| / actual. Scoring starts once 5 bins are in.',
    `The target (issue 12): PBA's median and p90 error each ≤ ${TARGET_RATIO} × the better baseline's.`,
    '',
    '## Held-out evaluation (PBA was never fitted on these)',
    '',
    `Sets: ${sets(evaluation)}. Sources, licences and the split: bench/traces/<set>/README.md.`,
    '',
    table(evaluation),
    '',
    ...(external.length > 0
      ? ['## DWCP_PBA_TRACES', '', `Sets: ${sets(external)}.`, '', table(external), '']
      : ['No DWCP_PBA_TRACES directory was given in this run.', '']),
    '## Recorded on the emulator (held out: PBA was never fitted on these)',
    '',
    ...emulatorSection(emulator.set, emulator.result),
    '## Tuning half (what the model was fitted on; not evidence, shown to judge overfitting)',
    '',
    `Sets: ${sets(tuning)}.`,
    '',
    table(tuning),
    '',
    '## Machine',
    '',
    machineMarkdown(machine),
    '- offline compute on one core; the machine (2 cores) ran other work at the same time, which changes',
    '  only the run time, not the numbers',
    '',
    `The lower value is PBA's conservative goodput (the ${LOWER_QUANTILE} quantile of the path's own recent`,
    'errors); coverage is the share of intervals whose actual rate was at or above it.',
    '',
  ].join('\n');
}

function main(): void {
  const started = Date.now();
  const evaluation = shippedSets('evaluation').map(evaluateSet);
  const tuning = shippedSets('tuning').map(evaluateSet);
  const recorded = emulatorSet();
  const emulator = recorded === undefined ? undefined : evaluateSet(recorded);
  const externalDir = process.env.DWCP_PBA_TRACES;
  const external =
    externalDir === undefined || externalDir === ''
      ? []
      : [evaluateSet(loadSet(basename(resolve(externalDir)), 'external', resolve(externalDir)))];
  const machine = machineInfo();
  const docs = resolve(REPO_ROOT, 'docs/benchmarks');
  writeFileSync(
    resolve(docs, 'pba.json'),
    `${JSON.stringify({ machine, targetRatio: TARGET_RATIO, evaluation, external, tuning, emulator: emulator ?? null }, null, 2)}\n`,
  );
  writeFileSync(
    resolve(docs, 'pba.md'),
    markdown(machine, evaluation, external, tuning, { set: recorded, result: emulator }),
  );
  for (const r of [...evaluation, ...external, ...(emulator ? [emulator] : [])]) {
    for (const h of r.horizons) {
      console.log(
        `${r.name} (${r.split}) ${h.horizonSec} s: PBA ${pct(h.error.pba.median)} / ${pct(h.error.pba.p90)}, ` +
          `ratio ${h.ratio.median.toFixed(2)} / ${h.ratio.p90.toFixed(2)}: ${h.targetMet ? 'met' : 'missed'}`,
      );
    }
  }
  console.log(`wrote docs/benchmarks/pba.md and pba.json in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

if (require.main === module) main();

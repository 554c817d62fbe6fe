/**
 * `node bench/dist/pba-fit.js`: fits PBA's rate model (libs/bandwidth predictor-model.ts) on the
 * tuning half of every shipped trace set, and prints the coefficients and the lower-bound prior.
 * The evaluation halves and bench/traces/emulator are never read here.
 */
import {
  FEATURE_NAMES,
  LogRateFeatures,
  PBA_COEFFICIENTS,
  PREDICTION_HORIZONS,
  type PredictionHorizon,
  predictedLogRatio,
} from '@novacron/bandwidth';
import { shippedSets, type TraceSet } from './pba-traces';

/** Least absolute deviation by reweighted least squares; the floor keeps weights finite. */
const IRLS_ROUNDS = 25;
const IRLS_FLOOR = 0.001;
/** A light ridge on all but the bias, relative to the number of rows. */
const RIDGE = 1e-4;

interface Row {
  features: number[];
  /** log(mean rate over the horizon / newest bin). */
  target: number;
}

export function fitRows(sets: TraceSet[], horizon: PredictionHorizon): Row[] {
  const rows: Row[] = [];
  for (const set of sets) {
    for (const { bins } of set.traces) {
      const features = new LogRateFeatures();
      for (let k = 0; k + horizon < bins.length; k++) {
        features.push(bins[k] as number);
        const v = features.vector();
        if (v === undefined) continue;
        let sum = 0;
        for (let j = 1; j <= horizon; j++) sum += bins[k + j] as number;
        rows.push({ features: v, target: Math.log(sum / horizon) - (features.newestLog as number) });
      }
    }
  }
  return rows;
}

function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i] as number]);
  for (let i = 0; i < n; i++) {
    let pivot = i;
    for (let j = i + 1; j < n; j++)
      if (Math.abs(m[j]?.[i] as number) > Math.abs(m[pivot]?.[i] as number)) pivot = j;
    [m[i], m[pivot]] = [m[pivot] as number[], m[i] as number[]];
    const pr = m[i] as number[];
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const rj = m[j] as number[];
      const c = (rj[i] as number) / (pr[i] as number);
      for (let k = i; k <= n; k++) rj[k] = (rj[k] as number) - c * (pr[k] as number);
    }
  }
  return m.map((row, i) => (row[n] as number) / (row[i] as number));
}

export function fitLeastAbsolute(rows: Row[]): number[] {
  const n = FEATURE_NAMES.length;
  let w = new Array<number>(n).fill(0);
  for (let round = 0; round <= IRLS_ROUNDS; round++) {
    const a = Array.from({ length: n }, () => new Array<number>(n).fill(0));
    const b = new Array<number>(n).fill(0);
    for (const { features, target } of rows) {
      const residual = target - predictedLogRatio(features, w);
      const weight = round === 0 ? 1 : 1 / Math.max(Math.abs(residual), IRLS_FLOOR);
      for (let i = 0; i < n; i++) {
        const ai = a[i] as number[];
        b[i] = (b[i] as number) + weight * (features[i] as number) * target;
        for (let j = 0; j < n; j++)
          ai[j] = (ai[j] as number) + weight * (features[i] as number) * (features[j] as number);
      }
    }
    const scale = (a[0] as number[])[0] as number;
    for (let i = 1; i < n; i++) (a[i] as number[])[i] = ((a[i] as number[])[i] as number) + RIDGE * scale;
    w = solve(a, b);
  }
  return w;
}

function lowQuantile(values: number[], q: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(q * (sorted.length - 1))] as number;
}

function main(): void {
  const sets = shippedSets('tuning');
  console.log(`tuning traces: ${sets.map((s) => `${s.name} ${s.traces.length}`).join(', ')}`);
  for (const h of PREDICTION_HORIZONS) {
    const rows = fitRows(sets, h);
    const w = fitLeastAbsolute(rows).map((x) => Number(x.toFixed(4)));
    const errors = rows.map((r) => r.target - predictedLogRatio(r.features, w));
    console.log(`horizon ${h} s, ${rows.length} rows`);
    console.log(`  fitted:    [${w.join(', ')}]`);
    console.log(`  committed: [${PBA_COEFFICIENTS[h].join(', ')}]`);
    console.log(`  10th percentile of log(actual / predicted): ${lowQuantile(errors, 0.1).toFixed(2)}`);
  }
}

if (require.main === module) main();

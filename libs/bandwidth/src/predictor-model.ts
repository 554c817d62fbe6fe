/**
 * PBA's rate model: a small linear model over the log of recent 1 s goodput bins, predicting the log
 * ratio of the next interval's mean rate to the newest bin. Its coefficients were fitted offline
 * (bench/src/pba-fit.ts) on the tuning halves of the FCC and HSDPA trace sets only.
 */

/** The horizons the model was fitted for, in seconds: the next bin, and the mean of the next five. */
export type PredictionHorizon = 1 | 5;
export const PREDICTION_HORIZONS: readonly PredictionHorizon[] = [1, 5];

/** Rates below this (8 kbit/s) are treated as this, so the log of a stalled bin stays finite. */
export const MIN_RATE_BYTES_PER_SEC = 1_000;

/** Bins the model needs before it predicts; until then the newest bin is the prediction. */
export const MODEL_WARMUP_BINS = 5;

/**
 * Smoothing of the two log-rate averages the model looks at. The fast one follows a regime, the
 * slow one remembers the link's longer-term level (mean reversion after a dip or a burst).
 */
const FAST_ALPHA = 0.3;
const SLOW_ALPHA = 0.05;

/**
 * The model's inputs, all relative to the newest bin's log rate `x`, so the model does not depend
 * on the link's scale: [1, the four older bins − x, fast average − x, slow average − x, |jump|,
 * jump·|jump|], where jump is x minus the previous bin.
 */
export const FEATURE_NAMES = [
  'bias',
  'lag1',
  'lag2',
  'lag3',
  'lag4',
  'fastAverage',
  'slowAverage',
  'jumpSize',
  'signedJumpSquare',
] as const;

/**
 * Fitted by least absolute deviation in the log domain (iteratively reweighted least squares) on
 * bench/traces/{fcc,hsdpa}/tuning; `node bench/dist/pba-fit.js` prints them again from the same data.
 */
export const PBA_COEFFICIENTS: Record<PredictionHorizon, readonly number[]> = {
  1: [-0.0011, -0.0378, 0.0394, -0.006, -0.0036, 0.0786, 0.0332, 0.0717, -0.0119],
  5: [-0.0011, 0.0088, 0.0258, -0.0001, 0.0131, 0.2131, 0.1587, 0.1646, -0.0212],
};

/** The online state behind the features: the last bins' logs and the two averages. */
export class LogRateFeatures {
  private readonly recent: number[] = [];
  private fast = 0;
  private slow = 0;
  private bins = 0;

  /** Bins seen so far. */
  get count(): number {
    return this.bins;
  }

  /** The newest bin's log rate; undefined before any bin. */
  get newestLog(): number | undefined {
    return this.recent[this.recent.length - 1];
  }

  /** Takes one bin's mean rate. */
  push(rateBytesPerSec: number): void {
    const x = Math.log(Math.max(rateBytesPerSec, MIN_RATE_BYTES_PER_SEC));
    if (this.bins === 0) {
      this.fast = x;
      this.slow = x;
    } else {
      this.fast += FAST_ALPHA * (x - this.fast);
      this.slow += SLOW_ALPHA * (x - this.slow);
    }
    this.recent.push(x);
    if (this.recent.length > MODEL_WARMUP_BINS) this.recent.shift();
    this.bins += 1;
  }

  /** The feature vector (see FEATURE_NAMES); undefined until MODEL_WARMUP_BINS bins are seen. */
  vector(): number[] | undefined {
    if (this.recent.length < MODEL_WARMUP_BINS) return undefined;
    const n = this.recent.length;
    const at = (back: number): number => this.recent[n - 1 - back] as number;
    const x = at(0);
    const jump = x - at(1);
    return [
      1,
      at(1) - x,
      at(2) - x,
      at(3) - x,
      at(4) - x,
      this.fast - x,
      this.slow - x,
      Math.abs(jump),
      jump * Math.abs(jump),
    ];
  }
}

/** The model's predicted log ratio (next interval's mean rate over the newest bin) from a feature vector. */
export function predictedLogRatio(features: readonly number[], coefficients: readonly number[]): number {
  let y = 0;
  for (let i = 0; i < features.length; i++) y += (coefficients[i] ?? 0) * (features[i] as number);
  return y;
}

/** PBA's model as a per-bin predictor, comparable with the baselines in predictor-baselines.ts. */
export class PbaBinPredictor {
  private readonly features = new LogRateFeatures();

  constructor(
    private readonly coefficients: Record<PredictionHorizon, readonly number[]> = PBA_COEFFICIENTS,
  ) {}

  /** Bins seen so far. */
  get bins(): number {
    return this.features.count;
  }

  observeBin(rateBytesPerSec: number): void {
    this.features.push(rateBytesPerSec);
  }

  /** The mean rate over the next `horizonSec` seconds; undefined before any bin. */
  predictRate(horizonSec: PredictionHorizon): number | undefined {
    const x = this.features.newestLog;
    if (x === undefined) return undefined;
    const v = this.features.vector();
    if (v === undefined) return Math.exp(x);
    return Math.exp(x + predictedLogRatio(v, this.coefficients[horizonSec]));
  }
}

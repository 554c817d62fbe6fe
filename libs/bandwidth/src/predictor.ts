/**
 * PBA's online path predictor: it takes the transport's goodput and RTT samples toward one peer and
 * predicts the next interval's bandwidth (with a conservative lower value) and RTT. Sans-IO: time is
 * the caller's, passed in with every sample, so the same samples always give the same predictions.
 */
import {
  MIN_RATE_BYTES_PER_SEC,
  PbaBinPredictor,
  PREDICTION_HORIZONS,
  type PredictionHorizon,
} from './predictor-model';

/** Which of the two candidates a prediction came from. */
export type PredictionSource = 'model' | 'lastBin';
const SOURCES: readonly PredictionSource[] = ['model', 'lastBin'];

export interface BandwidthPrediction {
  horizonSec: number;
  /** Predicted mean goodput over the next `horizonSec` seconds. */
  bytesPerSec: number;
  /**
   * A conservative goodput: the prediction scaled by the 0.1 quantile (LOWER_QUANTILE) of this
   * path's own recent prediction errors, an online empirical quantile. About 90 % of intervals
   * come out at or above it; bench:pba reports the coverage measured on held-out traces.
   */
  lowerBytesPerSec: number;
  lowerQuantile: number;
  /**
   * `model` is PBA's fitted model; `lastBin` is the newest 1 s bin, used while it has been the more
   * accurate of the two on this path (mean |log error| over the last `errorWindow` predictions).
   */
  source: PredictionSource;
}

export interface RttPrediction {
  /** Smoothed RTT (RFC 6298's SRTT). */
  rttMs: number;
  /** SRTT + 4·RTTVAR, RFC 6298's retransmission timeout before clamping: a high, safe RTT. */
  upperMs: number;
}

export interface PathPredictorOptions {
  /** How many of its most recent errors per horizon the choice and the lower value use; 120 by default. */
  errorWindow?: number;
  /** When the measured transfer began (ms, the samples' clock): the first sample covers from here. */
  startMs?: number;
}

/** The model works on 1 s bins: its coefficients were fitted on 1 s bins. */
export const BIN_MS = 1_000;

/** The quantile of a path's own errors behind `lowerBytesPerSec`. */
export const LOWER_QUANTILE = 0.1;

/**
 * Until a path has this many errors of its own, the model is used and the lower value comes from
 * the tuning traces' errors: the 10th percentile of log(actual / predicted), printed by
 * bench/src/pba-fit.ts.
 */
const MIN_OWN_ERRORS = 20;
const PRIOR_LOWER_LOG_RATIO: Record<PredictionHorizon, number> = { 1: -0.29, 5: -0.35 };

const MAX_HORIZON = Math.max(...PREDICTION_HORIZONS);

/** Samples further apart than this are not one measured interval but a pause between transfers. */
export const MAX_SAMPLE_INTERVAL_MS = 5_000;

type Candidates = Record<PredictionSource, number>;

/**
 * Inputs: `observe(atMs, goodputBytesPerSec, rttMs?)`. Outputs: `predict(horizonS)` and
 * `predictRtt()`. Samples of any length are folded into 1 s bins; each complete bin updates the
 * model and scores the predictions made 1 and 5 bins before it.
 */
export class PathPredictor {
  private readonly model = new PbaBinPredictor();
  private readonly errorWindow: number;

  private lastAtMs: number | undefined;
  private binStartMs = 0;
  private binBytes = 0;
  private binCoveredMs = 0;
  private closedBins = 0;
  /** The last MAX_HORIZON bins' rates, newest last, to score past predictions. */
  private readonly recentRates: number[] = [];
  /** What each candidate predicted after each of the last MAX_HORIZON bins, newest last. */
  private readonly pastPredictions: Array<Record<PredictionHorizon, Candidates>> = [];
  /** Signed log(actual / predicted) of each candidate's recent predictions. */
  private readonly errors: Record<PredictionHorizon, Record<PredictionSource, number[]>> = {
    1: { model: [], lastBin: [] },
    5: { model: [], lastBin: [] },
  };

  private srttMs: number | undefined;
  private rttVarMs = 0;

  constructor(options: PathPredictorOptions = {}) {
    this.errorWindow = options.errorWindow ?? 120;
    this.lastAtMs = options.startMs;
    if (options.startMs !== undefined) this.binStartMs = options.startMs;
    if (!(Number.isInteger(this.errorWindow) && this.errorWindow >= MIN_OWN_ERRORS)) {
      throw new RangeError(`errorWindow must be an integer ≥ ${MIN_OWN_ERRORS}, got ${this.errorWindow}`);
    }
  }

  /** Complete 1 s bins seen so far. */
  get bins(): number {
    return this.closedBins;
  }

  /**
   * Takes one sample: the goodput over the interval that ends at `atMs` and began at the previous
   * sample (the first one at `startMs`). Without `startMs` the first sample covers the second
   * before it, and so does one that comes more than MAX_SAMPLE_INTERVAL_MS after the previous (a
   * pause between transfers). A sample that ends at or before the
   * previous one is ignored (the clock is monotonic), and so is a goodput that is not a finite
   * number ≥ 0; an RTT that is not a finite number > 0 is ignored.
   */
  observe(atMs: number, goodputBytesPerSec: number, rttMs?: number): void {
    if (rttMs !== undefined) this.observeRtt(rttMs);
    const rate = goodputBytesPerSec;
    if (!(Number.isFinite(rate) && rate >= 0 && Number.isFinite(atMs))) return;
    if (this.lastAtMs !== undefined && atMs <= this.lastAtMs) return;
    const gap = this.lastAtMs === undefined ? Number.POSITIVE_INFINITY : atMs - this.lastAtMs;
    let from = gap > MAX_SAMPLE_INTERVAL_MS ? atMs - BIN_MS : (this.lastAtMs as number);
    if (this.lastAtMs === undefined) this.binStartMs = from;
    this.lastAtMs = atMs;
    for (;;) {
      const binEnd = this.binStartMs + BIN_MS;
      const until = Math.min(atMs, binEnd);
      if (until > from) {
        this.binBytes += (rate * (until - from)) / 1000;
        this.binCoveredMs += until - from;
      }
      if (atMs < binEnd) return;
      this.closeBin();
      from = Math.max(from, binEnd);
      // Bins inside a gap had no samples: they are skipped, not invented.
      this.binStartMs = from >= binEnd + BIN_MS ? from - ((from - binEnd) % BIN_MS) : binEnd;
    }
  }

  /**
   * The mean goodput over the next `horizonS` seconds; undefined before the first complete bin.
   * The model was fitted for 1 s and 5 s: shorter horizons get the 1 s prediction, longer ones the
   * 5 s one, and those between a log-linear blend of the two.
   */
  predict(horizonS: number): BandwidthPrediction | undefined {
    if (!(horizonS > 0)) throw new RangeError(`horizonS must be > 0, got ${horizonS}`);
    const one = this.predictFitted(1);
    const five = this.predictFitted(5);
    if (one === undefined || five === undefined) return undefined;
    if (horizonS <= 1) return { ...one, horizonSec: horizonS };
    if (horizonS >= 5) return { ...five, horizonSec: horizonS };
    const w = (horizonS - 1) / 4;
    const blend = (a: number, b: number): number => Math.exp((1 - w) * Math.log(a) + w * Math.log(b));
    return {
      horizonSec: horizonS,
      bytesPerSec: blend(one.bytesPerSec, five.bytesPerSec),
      lowerBytesPerSec: blend(one.lowerBytesPerSec, five.lowerBytesPerSec),
      lowerQuantile: LOWER_QUANTILE,
      source: w < 0.5 ? one.source : five.source,
    };
  }

  /** The RTT as RFC 6298 smooths it; undefined before any RTT sample. */
  predictRtt(): RttPrediction | undefined {
    if (this.srttMs === undefined) return undefined;
    return { rttMs: this.srttMs, upperMs: this.srttMs + 4 * this.rttVarMs };
  }

  private predictFitted(h: PredictionHorizon): BandwidthPrediction | undefined {
    const model = this.model.predictRate(h);
    const lastBin = this.recentRates[this.recentRates.length - 1];
    if (model === undefined || lastBin === undefined) return undefined;
    const source = this.moreAccurate(h);
    const bytesPerSec = source === 'model' ? model : lastBin;
    const own = this.errors[h][source];
    const lowerLogRatio =
      own.length >= MIN_OWN_ERRORS ? quantile(own, LOWER_QUANTILE) : PRIOR_LOWER_LOG_RATIO[h];
    return {
      horizonSec: h,
      bytesPerSec,
      lowerBytesPerSec: bytesPerSec * Math.exp(Math.min(0, lowerLogRatio)),
      lowerQuantile: LOWER_QUANTILE,
      source,
    };
  }

  /** The model, unless the last bin has had the lower mean |log error| over enough recent predictions. */
  private moreAccurate(h: PredictionHorizon): PredictionSource {
    const { model, lastBin } = this.errors[h];
    if (model.length < MIN_OWN_ERRORS) return 'model';
    return meanAbsolute(lastBin) < meanAbsolute(model) ? 'lastBin' : 'model';
  }

  private observeRtt(rttMs: number): void {
    if (!(Number.isFinite(rttMs) && rttMs > 0)) return;
    if (this.srttMs === undefined) {
      this.srttMs = rttMs;
      this.rttVarMs = rttMs / 2;
      return;
    }
    this.rttVarMs = 0.75 * this.rttVarMs + 0.25 * Math.abs(this.srttMs - rttMs);
    this.srttMs = 0.875 * this.srttMs + 0.125 * rttMs;
  }

  private closeBin(): void {
    if (this.binCoveredMs <= 0) return;
    const rate = (this.binBytes * 1000) / this.binCoveredMs;
    this.binBytes = 0;
    this.binCoveredMs = 0;
    this.closedBins += 1;
    this.recentRates.push(rate);
    if (this.recentRates.length > MAX_HORIZON) this.recentRates.shift();
    this.scorePastPredictions();
    this.model.observeBin(rate);
    const made = {} as Record<PredictionHorizon, Candidates>;
    for (const h of PREDICTION_HORIZONS)
      made[h] = { model: this.model.predictRate(h) as number, lastBin: rate };
    this.pastPredictions.push(made);
    if (this.pastPredictions.length > MAX_HORIZON) this.pastPredictions.shift();
  }

  /** With the newest bin in, the predictions made `h` bins ago can be scored. */
  private scorePastPredictions(): void {
    const n = this.recentRates.length;
    for (const h of PREDICTION_HORIZONS) {
      const made = this.pastPredictions[this.pastPredictions.length - h];
      if (made === undefined || n < h) continue;
      let sum = 0;
      for (let i = n - h; i < n; i++) sum += this.recentRates[i] as number;
      const actual = Math.max(sum / h, MIN_RATE_BYTES_PER_SEC);
      for (const source of SOURCES) {
        const errors = this.errors[h][source];
        errors.push(Math.log(actual / Math.max(made[h][source], MIN_RATE_BYTES_PER_SEC)));
        if (errors.length > this.errorWindow) errors.shift();
      }
    }
  }
}

function meanAbsolute(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += Math.abs(v);
  return sum / values.length;
}

/** The q quantile of `values`, linearly interpolated between order statistics. */
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (at - lo);
}

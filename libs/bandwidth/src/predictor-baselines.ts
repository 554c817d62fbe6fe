/**
 * The simple predictors PBA's model is measured against (bench:pba): the harmonic mean of the last
 * five bins (MPC's predictor, Yin et al., SIGCOMM 2015) and the last bin. Both predict the same value
 * at every horizon.
 */

/** A predictor fed one bin's mean rate at a time (1 s bins, oldest first). */
export interface BinRatePredictor {
  observeBin(rateBytesPerSec: number): void;
  /** Undefined before any bin. */
  predictRate(horizonSec: number): number | undefined;
}

export class LastBinPredictor implements BinRatePredictor {
  private last: number | undefined;

  observeBin(rateBytesPerSec: number): void {
    this.last = rateBytesPerSec;
  }

  predictRate(_horizonSec: number): number | undefined {
    return this.last;
  }
}

export class HarmonicMeanPredictor implements BinRatePredictor {
  private readonly window: number[] = [];

  constructor(private readonly size = 5) {}

  observeBin(rateBytesPerSec: number): void {
    this.window.push(rateBytesPerSec);
    if (this.window.length > this.size) this.window.shift();
  }

  predictRate(_horizonSec: number): number | undefined {
    if (this.window.length === 0) return undefined;
    let inverse = 0;
    for (const rate of this.window) inverse += 1 / Math.max(rate, Number.MIN_VALUE);
    return this.window.length / inverse;
  }
}

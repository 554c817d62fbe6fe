import { describe, expect, it } from 'vitest';
import { MAX_SAMPLE_INTERVAL_MS, PathPredictor } from './predictor';
import { HarmonicMeanPredictor, LastBinPredictor } from './predictor-baselines';
import { PbaBinPredictor } from './predictor-model';

const MB = 1_000_000;

/** A deterministic uniform generator in [0, 1) (mulberry32), so noisy tests never flake. */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Feeds one sample a second, the k-th ending at (k + 1) s. */
function feed(p: PathPredictor, rates: number[], startBin = 0): void {
  rates.forEach((rate, i) => {
    p.observe((startBin + i + 1) * 1000, rate);
  });
}

describe('PathPredictor', () => {
  it('predicts nothing before a whole bin, then a constant rate for a constant input', () => {
    const p = new PathPredictor({ startMs: 0 });
    expect(p.predict(1)).toBeUndefined();
    p.observe(500, 10 * MB);
    expect(p.predict(1)).toBeUndefined();
    feed(p, new Array(60).fill(10 * MB), 1);
    for (const h of [1, 5]) {
      const prediction = p.predict(h);
      expect(prediction?.bytesPerSec).toBeGreaterThan(9.9 * MB);
      expect(prediction?.bytesPerSec).toBeLessThan(10.1 * MB);
      expect(prediction?.lowerBytesPerSec).toBeLessThanOrEqual(prediction?.bytesPerSec as number);
    }
  });

  it('follows a halved link within 5 s at the 1 s horizon and within 10 s at the 5 s horizon', () => {
    const p = new PathPredictor();
    feed(p, new Array(60).fill(10 * MB));
    feed(p, new Array(5).fill(5 * MB), 60);
    expect(p.predict(1)?.bytesPerSec).toBeLessThan(5.5 * MB);
    feed(p, new Array(5).fill(5 * MB), 65);
    expect(p.predict(5)?.bytesPerSec).toBeLessThan(5.5 * MB);
    expect(p.predict(5)?.bytesPerSec).toBeGreaterThan(4.5 * MB);
  });

  it('on a noisy stationary link errs less than the last sample at the 5 s horizon', () => {
    const random = uniform(7);
    const rates = Array.from({ length: 600 }, () => 10 * MB * (0.6 + 0.8 * random()));
    const p = new PathPredictor();
    let pbaError = 0;
    let lastError = 0;
    for (let k = 0; k + 5 < rates.length; k++) {
      p.observe((k + 1) * 1000, rates[k] as number);
      if (k < 20) continue;
      const actual = rates.slice(k + 1, k + 6).reduce((a, b) => a + b, 0) / 5;
      pbaError += Math.abs((p.predict(5)?.bytesPerSec as number) - actual) / actual;
      lastError += Math.abs((rates[k] as number) - actual) / actual;
    }
    expect(pbaError).toBeLessThan(0.8 * lastError);
  });

  it('gives a lower value that about 90 % of intervals reach', () => {
    const random = uniform(11);
    const rates = Array.from({ length: 2000 }, () => 10 * MB * Math.exp(0.4 * (random() - 0.5)));
    const p = new PathPredictor();
    let covered = 0;
    let scored = 0;
    for (let k = 0; k + 1 < rates.length; k++) {
      p.observe((k + 1) * 1000, rates[k] as number);
      if (k < 200) continue;
      scored += 1;
      if ((rates[k + 1] as number) >= (p.predict(1)?.lowerBytesPerSec as number)) covered += 1;
    }
    expect(covered / scored).toBeGreaterThan(0.85);
    expect(covered / scored).toBeLessThan(0.95);
  });

  it('bins short samples into seconds: four 250 ms samples a second predict as one 1 s sample', () => {
    const random = uniform(3);
    const rates = Array.from({ length: 40 }, () => MB * (1 + random()));
    const perSecond = new PathPredictor({ startMs: 0 });
    const quarters = new PathPredictor({ startMs: 0 });
    rates.forEach((rate, k) => {
      perSecond.observe((k + 1) * 1000, rate);
      for (let q = 1; q <= 4; q++) quarters.observe(k * 1000 + q * 250, rate);
    });
    expect(quarters.bins).toBe(40);
    for (const h of [1, 3, 5]) {
      expect(quarters.predict(h)?.bytesPerSec).toBeCloseTo(perSecond.predict(h)?.bytesPerSec as number, 6);
    }
  });

  it('is deterministic, ignores samples that go back in time, and skips a pause between transfers', () => {
    const run = (): PathPredictor => {
      const p = new PathPredictor();
      feed(
        p,
        [1, 2, 3, 4, 5, 6, 7, 8].map((x) => x * MB),
      );
      p.observe(4000, 100 * MB);
      p.observe(Number.NaN, MB);
      return p;
    };
    expect(run().predict(5)).toEqual(run().predict(5));
    expect(run().bins).toBe(8);
    const p = run();
    p.observe(8000 + MAX_SAMPLE_INTERVAL_MS + 60_000, 8 * MB);
    expect(p.bins).toBe(9);
  });

  it('switches to the last bin on a path where the last bin has been the more accurate', () => {
    // A staircase: long flat steps, where holding the last value is exact.
    const rates = Array.from({ length: 300 }, (_, k) => (Math.floor(k / 30) % 2 === 0 ? 2 : 8) * MB);
    const p = new PathPredictor();
    feed(p, rates);
    expect(p.predict(1)?.source).toBe('lastBin');
    expect(p.predict(1)?.bytesPerSec).toBe(rates[rates.length - 1]);
  });

  it('smooths RTT as RFC 6298 does, with a high value above it', () => {
    const p = new PathPredictor();
    expect(p.predictRtt()).toBeUndefined();
    p.observe(1000, MB, 100);
    expect(p.predictRtt()).toEqual({ rttMs: 100, upperMs: 300 });
    p.observe(2000, MB, 200);
    expect(p.predictRtt()?.rttMs).toBeCloseTo(112.5, 9);
    expect(p.predictRtt()?.upperMs).toBeCloseTo(112.5 + 4 * 62.5, 9);
    p.observe(3000, MB, -1);
    expect(p.predictRtt()?.rttMs).toBeCloseTo(112.5, 9);
  });
});

describe('baselines', () => {
  it('the harmonic mean covers the last 5 bins, the last bin is the last', () => {
    const harmonic = new HarmonicMeanPredictor(5);
    const last = new LastBinPredictor();
    expect(harmonic.predictRate(1)).toBeUndefined();
    for (const rate of [100, 1, 2, 4, 4, 4]) {
      harmonic.observeBin(rate);
      last.observeBin(rate);
    }
    expect(harmonic.predictRate(5)).toBeCloseTo(5 / (1 + 0.5 + 0.25 * 3), 12);
    expect(last.predictRate(5)).toBe(4);
  });

  it("PBA's model holds a flat rate and, unlike the last bin, discounts a one-second spike", () => {
    const model = new PbaBinPredictor();
    for (let k = 0; k < 30; k++) model.observeBin(MB);
    model.observeBin(4 * MB);
    const afterSpike = model.predictRate(5) as number;
    expect(afterSpike).toBeLessThan(3.5 * MB);
    expect(afterSpike).toBeGreaterThan(2 * MB);
  });
});

/**
 * Chooses how many parallel connections to use (port of `amst/src/adapt.rs`): add one while
 * aggregate goodput grows by a margin, take it back when it did not, and now and then test whether
 * one fewer does as well.
 */

import { AmstError } from './error';

/** Settings of the stream-count controller. */
export interface JsAdaptConfig {
  /** Never fewer connections. */
  minStreams: number;
  /** Never more connections. */
  maxStreams: number;
  /** Connections at start. */
  initialStreams: number;
  /** How long one measurement lasts. A few RTTs at least, so a new connection can ramp up. */
  epochMs: number;
  /** Relative goodput gain that justifies a connection (0.1 = 10%). */
  gain: number;
  /** Epochs to hold after a rejected probe before probing again. */
  holdEpochs: number;
}

export const DEFAULT_ADAPT_CONFIG: Readonly<JsAdaptConfig> = {
  minStreams: 1,
  maxStreams: 16,
  initialStreams: 2,
  epochMs: 500,
  gain: 0.1,
  holdEpochs: 6,
};

/** Checks ranges, naming the bad field. */
export function validateAdaptConfig(c: JsAdaptConfig): void {
  if (!Number.isInteger(c.minStreams) || c.minStreams < 1) {
    throw AmstError.invalidParam('minStreams', 'must be at least 1');
  }
  if (!Number.isInteger(c.maxStreams) || c.maxStreams < c.minStreams || c.maxStreams > 256) {
    throw AmstError.invalidParam('maxStreams', 'must be between minStreams and 256');
  }
  if (
    !Number.isInteger(c.initialStreams) ||
    c.initialStreams < c.minStreams ||
    c.initialStreams > c.maxStreams
  ) {
    throw AmstError.invalidParam('initialStreams', 'must be between minStreams and maxStreams');
  }
  if (!(c.epochMs >= 10 && Number.isFinite(c.epochMs))) {
    throw AmstError.invalidParam('epochMs', 'must be at least 10 ms');
  }
  if (!(c.gain > 0 && c.gain < 10)) throw AmstError.invalidParam('gain', 'must be in (0, 10)');
  if (!Number.isInteger(c.holdEpochs) || c.holdEpochs < 0) {
    throw AmstError.invalidParam('holdEpochs', 'must be a whole number of epochs');
  }
}

type Phase =
  /** Measuring the current count. */
  | { kind: 'measure' }
  /** Just added one: skip an epoch while it ramps up, then judge it against `before`. */
  | { kind: 'settle'; before: number }
  | { kind: 'judge'; before: number }
  /** Just removed one: judge whether goodput held within the margin of `before`. */
  | { kind: 'judgeFewer'; before: number }
  /** Waiting `left` epochs before probing again. */
  | { kind: 'hold'; left: number };

/** The sans-IO controller: feed it the stream's delivered byte count, read the target count. */
export class JsStreamCountController {
  private readonly config: JsAdaptConfig;
  private currentTarget: number;
  private phase: Phase = { kind: 'measure' };
  private epochStart: { at: number; delivered: number } | null = null;
  private goodput = 0;
  private probesDown = false;

  /** A controller with validated settings (missing ones take the defaults). */
  constructor(config: Partial<JsAdaptConfig> = {}) {
    const c = { ...DEFAULT_ADAPT_CONFIG, ...config };
    validateAdaptConfig(c);
    this.config = c;
    this.currentTarget = c.initialStreams;
  }

  /** How many connections to run now. */
  target(): number {
    return this.currentTarget;
  }

  /** Goodput in bytes per second over the last finished epoch. */
  lastGoodput(): number {
    return this.goodput;
  }

  /** When (ms) the current epoch ends. */
  pollTimeout(): number | null {
    return this.epochStart === null ? null : this.epochStart.at + this.config.epochMs;
  }

  /** Reports the total bytes delivered so far. Returns the new target when it changes. */
  handleProgress(delivered: number, now: number): number | null {
    const start = this.epochStart;
    if (start === null) {
      this.epochStart = { at: now, delivered };
      return null;
    }
    const elapsed = Math.max(0, now - start.at);
    if (elapsed < this.config.epochMs) return null;
    const goodput = Math.max(0, delivered - start.delivered) / (elapsed / 1000);
    this.epochStart = { at: now, delivered };
    this.goodput = goodput;
    const before = this.currentTarget;
    this.step(goodput);
    return this.currentTarget !== before ? this.currentTarget : null;
  }

  private step(goodput: number): void {
    const c = this.config;
    const p = this.phase;
    switch (p.kind) {
      case 'measure':
        if (this.currentTarget < c.maxStreams) {
          this.currentTarget += 1;
          this.phase = { kind: 'settle', before: goodput };
        } else {
          this.phase = { kind: 'hold', left: c.holdEpochs };
        }
        return;
      case 'settle':
        this.phase = { kind: 'judge', before: p.before };
        return;
      case 'judge':
        if (goodput >= p.before * (1 + c.gain)) {
          this.phase = { kind: 'measure' };
        } else {
          this.currentTarget -= 1;
          this.phase = { kind: 'hold', left: c.holdEpochs };
        }
        return;
      case 'judgeFewer':
        if (goodput < p.before * (1 - c.gain)) this.currentTarget += 1;
        this.phase = { kind: 'hold', left: c.holdEpochs };
        return;
      case 'hold':
        if (p.left > 1) {
          this.phase = { kind: 'hold', left: p.left - 1 };
          return;
        }
        // Alternate probes: up to find more goodput, down to shed useless connections.
        this.probesDown = !this.probesDown;
        if (this.probesDown && this.currentTarget > c.minStreams) {
          this.currentTarget -= 1;
          this.phase = { kind: 'judgeFewer', before: goodput };
        } else {
          this.phase = { kind: 'measure' };
        }
        return;
    }
  }
}

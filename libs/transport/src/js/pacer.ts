/** A token bucket that holds the sender to an optional rate cap (port of `amst/src/pacer.rs`). */
export class JsPacer {
  private tokens: number;
  private updated: number | null = null;

  /** `rate` in bytes per second, `null` for uncapped; bursts of up to `burst` bytes. */
  constructor(
    private rate: number | null,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  /** The cap in bytes per second, if any. */
  get rateCap(): number | null {
    return this.rate;
  }

  /** Changes the cap; tokens already earned are kept up to the burst. */
  setRate(rate: number | null): void {
    this.rate = rate;
  }

  /** When (ms) `len` bytes may go, or `null` for now (uncapped or enough tokens). */
  delayUntil(len: number, now: number): number | null {
    const rate = this.rate;
    if (rate === null) return null;
    this.refill(now);
    const need = len - this.tokens;
    if (need <= 0) return null;
    return now + (need / rate) * 1000;
  }

  /** Spends tokens for `len` bytes sent at `now`. */
  onSent(len: number, now: number): void {
    if (this.rate !== null) {
      this.refill(now);
      this.tokens -= len;
    }
  }

  private refill(now: number): void {
    const rate = this.rate;
    if (rate === null) return;
    if (this.updated !== null) {
      const earned = (Math.max(0, now - this.updated) / 1000) * rate;
      this.tokens = Math.min(this.tokens + earned, this.burst);
    }
    this.updated = now;
  }
}

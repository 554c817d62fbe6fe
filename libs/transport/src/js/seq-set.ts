/**
 * An ordered set of sequence numbers: the JS stand-in for the `BTreeSet<u64>` of frames to send
 * again. It is small and rarely touched (only after a connection fails), so a sorted array will do.
 */
export class SeqSet {
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  first(): number | undefined {
    return this.items[0];
  }

  has(seq: number): boolean {
    return this.items[this.lowerBound(seq)] === seq;
  }

  add(seq: number): void {
    const at = this.lowerBound(seq);
    if (this.items[at] !== seq) this.items.splice(at, 0, seq);
  }

  /** Removes `seq`; returns whether it was there. */
  delete(seq: number): boolean {
    const at = this.lowerBound(seq);
    if (this.items[at] !== seq) return false;
    this.items.splice(at, 1);
    return true;
  }

  private lowerBound(seq: number): number {
    let lo = 0;
    let hi = this.items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.items[mid] ?? Number.POSITIVE_INFINITY) < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

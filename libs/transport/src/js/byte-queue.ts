/**
 * Bytes read from a socket and not yet parsed. Chunks are kept as they arrive; a frame is copied
 * into one buffer only when it straddles chunks, so a big read is never copied per frame.
 */
const EMPTY = Buffer.alloc(0);

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** The first `n` bytes (n ≤ length) as one buffer: a view when they lie in one chunk. */
  peek(n: number): Buffer {
    const first = this.chunks[this.head];
    if (first === undefined || n === 0) return EMPTY;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (let i = this.head; at < n; i++) {
      const c = this.chunks[i];
      if (c === undefined) break;
      at += c.copy(out, at, 0, Math.min(c.length, n - at));
    }
    return out.subarray(0, at);
  }

  /** Drops the first `n` bytes (n ≤ length). */
  consume(n: number): void {
    let left = n;
    this.bytes -= n;
    while (left > 0) {
      const c = this.chunks[this.head];
      if (c === undefined) break;
      if (c.length <= left) {
        left -= c.length;
        this.chunks[this.head] = EMPTY;
        this.head += 1;
      } else {
        this.chunks[this.head] = c.subarray(left);
        left = 0;
      }
    }
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head > 64) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

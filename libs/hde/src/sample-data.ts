/**
 * A documented stand-in for VM memory, for machines without QEMU: 4 KiB pages drawn as
 * 30% zero pages, 20% copies of a small set of "library" pages (shared code and page cache),
 * 25% English-like text, 25% random (encrypted or compressed data). Deterministic per seed.
 */
const PAGE = 4096;
const WORDS = (
  'the kernel scheduler migrates running tasks between cores while memory pages stay resident ' +
  'and the page cache holds recently read files so that a second read is served without disk io'
).split(' ');

/** xorshift32: small, fast and reproducible. */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export function randomBytes(len: number, seed: number): Buffer {
  const next = xorshift32(seed);
  const out = Buffer.allocUnsafe(len + 4);
  for (let i = 0; i < len; i += 4) out.writeUInt32LE(next(), i);
  return out.subarray(0, len);
}

function textPage(next: () => number): Buffer {
  const parts: string[] = [];
  let len = 0;
  while (len < PAGE) {
    const w = WORDS[next() % WORDS.length] ?? 'x';
    parts.push(w);
    len += w.length + 1;
  }
  return Buffer.from(parts.join(' ').slice(0, PAGE), 'latin1');
}

/** `len` bytes of VM-memory-like data (see the module comment). */
export function vmLikeData(len: number, seed = 1): Buffer {
  const next = xorshift32(seed);
  const library = Array.from({ length: 64 }, (_, i) => randomBytes(PAGE, seed * 7919 + i + 1));
  const out = Buffer.alloc(Math.ceil(len / PAGE) * PAGE);
  for (let at = 0; at < out.length; at += PAGE) {
    const roll = next() % 100;
    if (roll < 30) continue; // zero page: already zero
    if (roll < 50) (library[next() % library.length] as Buffer).copy(out, at);
    else if (roll < 75) textPage(next).copy(out, at);
    else randomBytes(PAGE, next()).copy(out, at);
  }
  return out.subarray(0, len);
}

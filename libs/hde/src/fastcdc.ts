/**
 * FastCDC 2020 content-defined chunking in plain TypeScript. It cuts exactly where the native
 * chunker does (Rust crate `fastcdc` 5, `v2020::cut` with `select_masks`), so it can check the
 * addon and stand in for it.
 */
import { GEAR_HI, GEAR_LO, GEAR_LS_HI, GEAR_LS_LO, MASKS_HI, MASKS_LO } from './gear-table';

/** How strongly chunk sizes are pulled toward `avgSize` (FastCDC paper §4.4). */
export type Normalization = 0 | 1 | 2 | 3;

/** Chunk sizes in bytes. The ranges are those of the `fastcdc` crate. */
export interface ChunkerParams {
  /** No chunk is shorter, except the last one of a stream. 64..=1_048_576, even. */
  minSize: number;
  /** The target size. 256..=4_194_304, even. */
  avgSize: number;
  /** No chunk is longer. 1024..=16_777_216, even. */
  maxSize: number;
  /** Default 1. */
  normalization?: Normalization;
}

/** A chunker parameter is out of range; `field` names it as the caller spells it. */
export class HdeParamError extends Error {
  override readonly name = 'HdeParamError';
  readonly code = 'ERR_HDE_INVALID_PARAM';

  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`invalid parameter \`${field}\`: ${reason}`);
  }
}

/**
 * Checks the parameters the same way, and in the same order, as the native `ChunkerParams`, and
 * fills in the default normalization.
 */
export function validateChunkerParams(p: ChunkerParams): Required<ChunkerParams> {
  checkSize('minSize', p.minSize, 64, 1_048_576);
  checkSize('avgSize', p.avgSize, 256, 4_194_304);
  checkSize('maxSize', p.maxSize, 1024, 16_777_216);
  if (p.minSize > p.avgSize) {
    throw new HdeParamError('minSize', `${p.minSize} is greater than avgSize ${p.avgSize}`);
  }
  if (p.avgSize > p.maxSize) {
    throw new HdeParamError('avgSize', `${p.avgSize} is greater than maxSize ${p.maxSize}`);
  }
  const normalization = p.normalization ?? 1;
  if (normalization !== 0 && normalization !== 1 && normalization !== 2 && normalization !== 3) {
    throw new HdeParamError('normalization', `${String(normalization)} is not 0, 1, 2 or 3`);
  }
  return { minSize: p.minSize, avgSize: p.avgSize, maxSize: p.maxSize, normalization };
}

function checkSize(field: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new HdeParamError(field, `${String(value)} is not an integer`);
  }
  if (value < min || value > max) {
    throw new HdeParamError(field, `${value} is outside ${min}..=${max}`);
  }
  // The crate scans two bytes per step, so an odd size silently moves boundaries by one byte.
  if (value % 2 !== 0) {
    throw new HdeParamError(field, `${value} must be even`);
  }
}

/** Sizes plus the four cut masks of `v2020::cut`, each 64-bit mask as int32 halves. */
interface CutConfig {
  readonly minSize: number;
  readonly avgSize: number;
  readonly maxSize: number;
  readonly maskSHi: number;
  readonly maskSLo: number;
  readonly maskLHi: number;
  readonly maskLLo: number;
  readonly maskSLsHi: number;
  readonly maskSLsLo: number;
  readonly maskLLsHi: number;
  readonly maskLLsLo: number;
}

function cutConfig(p: Required<ChunkerParams>): CutConfig {
  // `select_masks`: the mask bucket is log2(avgSize) rounded to nearest, moved by the level.
  // Validation keeps both buckets within MASKS (5..=25).
  const bits = Math.round(Math.log2(p.avgSize));
  const sHi = MASKS_HI[bits + p.normalization] as number;
  const sLo = MASKS_LO[bits + p.normalization] as number;
  const lHi = MASKS_HI[bits - p.normalization] as number;
  const lLo = MASKS_LO[bits - p.normalization] as number;
  // The `_ls` masks are the masks shifted left one bit, as `FastCDC::with_level` derives them.
  return {
    minSize: p.minSize,
    avgSize: p.avgSize,
    maxSize: p.maxSize,
    maskSHi: sHi | 0,
    maskSLo: sLo | 0,
    maskLHi: lHi | 0,
    maskLLo: lLo | 0,
    maskSLsHi: (sHi << 1) | (sLo >>> 31),
    maskSLsLo: sLo << 1,
    maskLLsHi: (lHi << 1) | (lLo >>> 31),
    maskLLsLo: lLo << 1,
  };
}

// Signed views of the tables: V8 keeps int32 loads in registers, while uint32 values above 2^31
// would be boxed as doubles in the hot loop.
const G_HI = new Int32Array(GEAR_HI.buffer, GEAR_HI.byteOffset, GEAR_HI.length);
const G_LO = new Int32Array(GEAR_LO.buffer, GEAR_LO.byteOffset, GEAR_LO.length);
const GLS_HI = new Int32Array(GEAR_LS_HI.buffer, GEAR_LS_HI.byteOffset, GEAR_LS_HI.length);
const GLS_LO = new Int32Array(GEAR_LS_LO.buffer, GEAR_LS_LO.byteOffset, GEAR_LS_LO.length);

/**
 * `v2020::cut` on `src[start..end)`: the length of the next chunk (0 only when start == end).
 *
 * The 64-bit gear hash is kept as int32 halves `hi:lo`. For `lo + g` the carry out of bit 31 is
 * the top bit of `(lo & g) | ((lo | g) & ~sum)`, which stays in int32 arithmetic. The `as number`
 * casts are for indexes the loop bounds already keep in range.
 */
function cut(src: Uint8Array, start: number, end: number, c: CutConfig): number {
  let remaining = end - start;
  if (remaining <= c.minSize) {
    return remaining;
  }
  let center = c.avgSize;
  if (remaining > c.maxSize) {
    remaining = c.maxSize;
  } else if (remaining < center) {
    center = remaining;
  }
  // Byte pairs (a, a + 1) are tested from minSize on, with the strict masks below the center.
  const limit1 = start + (center & ~1);
  const limit2 = start + (remaining & ~1);
  let a = start + c.minSize;
  let hi = 0;
  let lo = 0;
  let mHi = c.maskSHi;
  let mLo = c.maskSLo;
  let mLsHi = c.maskSLsHi;
  let mLsLo = c.maskSLsLo;
  let limit = limit1;
  for (;;) {
    for (; a < limit; a += 2) {
      // hash = (hash << 2) + GEAR_LS[src[a]]
      let b = src[a] as number;
      const x = lo << 2;
      let g = GLS_LO[b] as number;
      let sum = (x + g) | 0;
      hi = (((hi << 2) | (lo >>> 30)) + (GLS_HI[b] as number) + (((x & g) | ((x | g) & ~sum)) >>> 31)) | 0;
      lo = sum;
      if (((hi & mLsHi) | (lo & mLsLo)) === 0) {
        return a - start;
      }
      // hash += GEAR[src[a + 1]]
      b = src[a + 1] as number;
      g = G_LO[b] as number;
      sum = (lo + g) | 0;
      hi = (hi + (G_HI[b] as number) + (((lo & g) | ((lo | g) & ~sum)) >>> 31)) | 0;
      lo = sum;
      if (((hi & mHi) | (lo & mLo)) === 0) {
        return a + 1 - start;
      }
    }
    if (limit === limit2) {
      return remaining;
    }
    limit = limit2;
    mHi = c.maskLHi;
    mLo = c.maskLLo;
    mLsHi = c.maskLLsHi;
    mLsLo = c.maskLLsLo;
  }
}

/**
 * Cuts a byte stream fed in pieces of any size into the same chunks as {@link chunkLengths} on
 * the whole stream.
 *
 * A cut is only searched with `maxSize` bytes in view, or at the end of the stream, which is
 * everything whole-input FastCDC looks at. Only the part of each piece that is not yet cut (less
 * than `maxSize` bytes) is copied, plus at most `maxSize` bytes to finish a chunk that began in an
 * earlier piece.
 */
export class FastCdcChunker {
  private readonly config: CutConfig;
  /** `carryLen` uncut bytes from `carryStart`; room for 2 * maxSize so refills rarely shift. */
  private readonly carry: Uint8Array;
  private carryStart = 0;
  private carryLen = 0;

  constructor(p: ChunkerParams) {
    this.config = cutConfig(validateChunkerParams(p));
    this.carry = new Uint8Array(2 * this.config.maxSize);
  }

  /** Feeds the next piece; returns the lengths of the chunks it completed, in order. */
  push(data: Uint8Array): number[] {
    const c = this.config;
    const max = c.maxSize;
    const carry = this.carry;
    const out: number[] = [];
    let pos = 0;
    if (this.carryLen > 0) {
      // The next chunk began in an earlier piece: cut it in the carry, topped up to max bytes.
      let start = this.carryStart;
      let len = this.carryLen;
      let borrowed = 0; // how many of the carry's last bytes are data[0..pos)
      for (;;) {
        const take = Math.min(max - len, data.length - pos);
        if (start + len + take > carry.length) {
          carry.copyWithin(0, start, start + len);
          start = 0;
        }
        carry.set(data.subarray(pos, pos + take), start + len);
        pos += take;
        len += take;
        borrowed += take;
        if (len < max) {
          this.carryStart = start;
          this.carryLen = len;
          return out;
        }
        const n = cut(carry, start, start + len, c);
        out.push(n);
        start += n;
        len -= n;
        if (len <= borrowed) {
          // What is left starts inside `data`: go on cutting it in place.
          pos -= len;
          break;
        }
      }
    }
    while (data.length - pos >= max) {
      const n = cut(data, pos, data.length, c);
      out.push(n);
      pos += n;
    }
    carry.set(data.subarray(pos));
    this.carryStart = 0;
    this.carryLen = data.length - pos;
    return out;
  }

  /** Ends the stream and returns the lengths of its last chunks; the chunker is then reusable. */
  finish(): number[] {
    const out: number[] = [];
    let start = this.carryStart;
    const end = start + this.carryLen;
    while (start < end) {
      const n = cut(this.carry, start, end, this.config);
      out.push(n);
      start += n;
    }
    this.carryStart = 0;
    this.carryLen = 0;
    return out;
  }
}

/** Chunk lengths of a whole input, as `v2020::FastCDC::with_level` yields them. */
export function chunkLengths(data: Uint8Array, p: ChunkerParams): number[] {
  const c = cutConfig(validateChunkerParams(p));
  const out: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    const n = cut(data, pos, data.length, c);
    out.push(n);
    pos += n;
  }
  return out;
}

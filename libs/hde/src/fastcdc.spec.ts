import { describe, expect, it } from 'vitest';

import {
  type ChunkerParams,
  chunkLengths,
  FastCdcChunker,
  HdeParamError,
  validateChunkerParams,
} from './fastcdc';

/** xorshift32 output as little-endian bytes; the expected cuts below came from the same stream. */
function xorshiftBytes(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const view = new DataView(out.buffer);
  let x = seed;
  let i = 0;
  for (; i + 4 <= length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    view.setUint32(i, x >>> 0, true);
  }
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  for (let k = 0; i < length; i++, k++) {
    out[i] = (x >>> (8 * k)) & 0xff;
  }
  return out;
}

/** Small deterministic generator for push sizes. */
function pieceSizes(seed: number, bound: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % bound;
  };
}

function chunkInPieces(data: Uint8Array, p: ChunkerParams, nextSize: () => number): number[] {
  const chunker = new FastCdcChunker(p);
  const out: number[] = [];
  for (let pos = 0; pos < data.length; ) {
    const n = Math.min(nextSize(), data.length - pos);
    out.push(...chunker.push(data.subarray(pos, pos + n)));
    pos += n;
  }
  out.push(...chunker.finish());
  return out;
}

const BIG = xorshiftBytes(0x9e3779b9, 256 * 1024 + 7);
const SMALL = xorshiftBytes(0x9e3779b9, 4097);
const P_8K: ChunkerParams = { minSize: 2048, avgSize: 8192, maxSize: 65536 };
const P_256 = { minSize: 64, avgSize: 256, maxSize: 1024 };
// fastcdc 5.0.0 lengths for BIG with P_8K at level 1.
const BIG_8K_LENGTHS = [
  11342, 8322, 8800, 6517, 17147, 9408, 18906, 16671, 4373, 14693, 13709, 11027, 31670, 13703, 8514, 11140,
  4890, 26371, 13972, 6287, 4689,
];

// Lengths printed by `v2020::FastCDC::with_level` of the Rust crate fastcdc 5.0.0.
const KNOWN: { data: Uint8Array; params: Required<ChunkerParams>; lengths: number[] }[] = [
  { data: BIG, params: { ...P_8K, normalization: 1 }, lengths: BIG_8K_LENGTHS },
  {
    // avgSize 6000 is no power of two: the mask bucket is log2 rounded (12.55 -> 13).
    data: BIG,
    params: { minSize: 4096, avgSize: 6000, maxSize: 10002, normalization: 2 },
    lengths: [
      10002, 7187, 7343, 9016, 7156, 10002, 8134, 8148, 6063, 7391, 7098, 7583, 4675, 7053, 7243, 9830, 6718,
      8017, 7731, 9488, 6291, 10002, 10002, 10002, 6057, 7710, 10002, 9754, 10002, 9899, 6274, 6677, 3601,
    ],
  },
  {
    data: SMALL,
    params: { ...P_256, normalization: 0 },
    lengths: [344, 128, 504, 207, 277, 170, 70, 84, 236, 98, 160, 304, 266, 256, 254, 158, 285, 189, 107],
  },
  {
    data: SMALL,
    params: { ...P_256, normalization: 1 },
    lengths: [161, 147, 518, 303, 110, 588, 177, 539, 179, 79, 93, 183, 112, 564, 95, 249],
  },
  {
    data: SMALL,
    params: { ...P_256, normalization: 2 },
    lengths: [308, 546, 299, 335, 306, 275, 254, 302, 446, 268, 284, 474],
  },
  {
    data: SMALL,
    params: { ...P_256, normalization: 3 },
    lengths: [264, 256, 282, 288, 258, 258, 270, 321, 273, 266, 245, 257, 264, 186, 325, 84],
  },
];

describe('chunkLengths', () => {
  it.each(KNOWN.map((k) => [JSON.stringify(k.params), k] as const))(
    'cuts where fastcdc 5 v2020 cuts: %s',
    (_, { data, params, lengths }) => {
      expect(chunkLengths(data, params)).toEqual(lengths);
    },
  );

  it('defaults to normalization level 1', () => {
    expect(chunkLengths(BIG, P_8K)).toEqual(BIG_8K_LENGTHS);
  });

  it('returns no chunk for empty input and one chunk for input shorter than minSize', () => {
    expect(chunkLengths(new Uint8Array(0), P_8K)).toEqual([]);
    expect(chunkLengths(BIG.subarray(0, 2047), P_8K)).toEqual([2047]);
  });

  it('never tests the unpaired last byte of an odd final window', () => {
    // SMALL cuts at 344 and 344 + 128 (level 0); 128 is even, so that cut was a pair's first byte.
    const p = { ...P_256, normalization: 0 } as const;
    expect(chunkLengths(SMALL.subarray(344, 344 + 130), p)).toEqual([128, 2]);
    expect(chunkLengths(SMALL.subarray(344, 344 + 129), p)).toEqual([129]);
  });

  it.each([
    { minSize: 2048, avgSize: 8192, maxSize: 65536 },
    { minSize: 16384, avgSize: 65536, maxSize: 262144 },
  ])('cuts all-zero input into maxSize chunks: %o', (p) => {
    const zeros = new Uint8Array(4 * p.maxSize + 12345);
    expect(chunkLengths(zeros, p)).toEqual([p.maxSize, p.maxSize, p.maxSize, p.maxSize, 12345]);
  });
});

describe('FastCdcChunker', () => {
  const nearMax = pieceSizes(2, 3);
  const cases: [string, Uint8Array, ChunkerParams, () => number][] = [
    ['pieces up to 3 * maxSize', BIG, P_8K, pieceSizes(1, 3 * 65536)],
    ['pieces of maxSize - 1 ..= maxSize + 1', BIG, P_8K, () => 65535 + nearMax()],
    ['pieces below minSize, some empty', BIG, P_8K, pieceSizes(3, 2048)],
    ['single bytes', SMALL, P_256, () => 1],
    ['pieces of 0..40 bytes', SMALL, { ...P_256, normalization: 3 }, pieceSizes(4, 41)],
  ];

  it.each(cases)('gives the same chunks as whole input for %s', (_, data, p, nextSize) => {
    const whole = chunkLengths(data, p);
    expect(chunkInPieces(data, p, nextSize)).toEqual(whole);
  });

  it('holds back the uncut tail until finish and can then start a new stream', () => {
    const chunker = new FastCdcChunker(P_8K);
    expect(chunker.push(BIG.subarray(0, 65535))).toEqual([]);
    const first = [...chunker.push(BIG.subarray(65535)), ...chunker.finish()];
    expect(first).toEqual(BIG_8K_LENGTHS);
    const second = [...chunker.push(BIG), ...chunker.finish()];
    expect(second).toEqual(BIG_8K_LENGTHS);
  });
});

describe('validateChunkerParams', () => {
  it('fills in normalization 1', () => {
    expect(validateChunkerParams(P_8K)).toEqual({ ...P_8K, normalization: 1 });
  });

  it.each([
    ['minSize', { ...P_8K, minSize: 62 }],
    ['minSize', { ...P_8K, minSize: 2049 }],
    ['minSize', { ...P_8K, minSize: 2048.5 }],
    ['minSize', { ...P_8K, minSize: Number.NaN }],
    ['minSize', { minSize: 1_048_578, avgSize: 2_097_152, maxSize: 4_194_304 }],
    ['minSize', { ...P_8K, minSize: 16384 }],
    ['avgSize', { ...P_8K, minSize: 64, avgSize: 254 }],
    ['avgSize', { minSize: 2048, avgSize: 4_194_306, maxSize: 8_388_608 }],
    ['avgSize', { ...P_8K, avgSize: 8193 }],
    ['avgSize', { ...P_8K, maxSize: 4096 }],
    ['maxSize', { minSize: 64, avgSize: 256, maxSize: 1022 }],
    ['maxSize', { ...P_8K, maxSize: 16_777_218 }],
    ['maxSize', { ...P_8K, maxSize: 65537 }],
    ['maxSize', { ...P_8K, maxSize: '65536' as unknown as number }],
    ['normalization', { ...P_8K, normalization: 4 as unknown as 0 }],
  ] as const)('rejects a bad %s: %o', (field, p) => {
    let caught: unknown;
    try {
      validateChunkerParams(p);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HdeParamError);
    const err = caught as HdeParamError;
    expect(err.code).toBe('ERR_HDE_INVALID_PARAM');
    expect(err.field).toBe(field);
    expect(err.message).toContain(field);
    expect(() => new FastCdcChunker(p)).toThrow(HdeParamError);
  });
});

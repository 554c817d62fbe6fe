/** The native path against the pure-TS reference: same cut points, same ids, one stream format. */
import { openSync, readSync } from 'node:fs';
import { blake3 } from '@noble/hashes/blake3';
import { describe, expect, it } from 'vitest';
import {
  type ChunkerParams,
  chunkIdSync,
  chunkLengthsSync,
  HdeDecoder,
  HdeEncoder,
  JsHdeDecoder,
  JsHdeEncoder,
  jsChunkLengths,
  randomBytes,
  vmLikeData,
} from './index';

/** Real data that every machine has: a slice of the Node binary itself. */
function nodeBinarySlice(len: number): Buffer {
  const fd = openSync(process.execPath, 'r');
  const out = Buffer.alloc(len);
  const n = readSync(fd, out, 0, len, 0);
  return out.subarray(0, n);
}

const paramSets: ChunkerParams[] = [
  { minSize: 2048, avgSize: 8192, maxSize: 65536 },
  { minSize: 16384, avgSize: 65536, maxSize: 262144, normalization: 1 },
  { minSize: 4096, avgSize: 16384, maxSize: 131072, normalization: 2 },
  { minSize: 64, avgSize: 256, maxSize: 1024, normalization: 0 },
];

describe('native and JS chunkers', () => {
  const inputs: Array<[string, Buffer]> = [
    ['random', randomBytes(6 << 20, 77)],
    ['vm-like', vmLikeData(6 << 20, 5)],
    ['node binary', nodeBinarySlice(12 << 20)],
    ['zeros', Buffer.alloc(1 << 20)],
  ];
  for (const [name, data] of inputs) {
    it.each(paramSets)(`cut ${name} at the same points (%o)`, (params) => {
      const native = chunkLengthsSync(data, params);
      const js = jsChunkLengths(data, params);
      expect(js.length).toBeGreaterThan(1);
      expect(js).toEqual(native);
    });
  }
});

describe('native and JS encoders', () => {
  const data = Buffer.concat([vmLikeData(3 << 20, 9), randomBytes(1 << 20, 1), vmLikeData(3 << 20, 9)]);
  const chunker = { minSize: 4096, avgSize: 16384, maxSize: 65536 };

  it('name chunks with the same BLAKE3 ids', () => {
    const js = new JsHdeEncoder({ chunker, codec: { codec: 'none', level: 0 } });
    const native = new HdeEncoder({ chunker, codec: { codec: 'none' } });
    const jsWire = Buffer.concat([js.push(data), js.finish()]);
    const nativeWire = Buffer.concat([native.pushSync(data), native.finishSync()]);
    // With no compression both produce the very same bytes.
    expect(jsWire.equals(nativeWire)).toBe(true);
    expect(chunkIdSync(data.subarray(0, 1000))).toBe(
      Buffer.from(blake3(data.subarray(0, 1000))).toString('hex'),
    );
  });

  it('a JS-encoded deflate stream decodes natively, and the reverse', () => {
    const js = new JsHdeEncoder({ chunker, codec: { codec: 'deflate', level: 1 } });
    const jsWire = Buffer.concat([
      js.push(data.subarray(0, 1 << 20)),
      js.push(data.subarray(1 << 20)),
      js.finish(),
    ]);
    const native = new HdeDecoder();
    expect(native.pushSync(jsWire).equals(data)).toBe(true);
    native.finish();
    expect(js.stats().dedupBytes).toBeGreaterThan(2 << 20);

    const enc = new HdeEncoder({ chunker, codec: { codec: 'deflate', level: 6 } });
    const nativeWire = Buffer.concat([enc.pushSync(data), enc.finishSync()]);
    const jsDec = new JsHdeDecoder();
    expect(jsDec.push(nativeWire).equals(data)).toBe(true);
    jsDec.finish();
  });

  it('the JS decoder rejects a corrupted chunk with the native code', () => {
    const js = new JsHdeEncoder({ chunker, codec: { codec: 'none', level: 0 } });
    const wire = Buffer.concat([js.push(randomBytes(200_000, 3)), js.finish()]);
    wire[100_000] = (wire[100_000] ?? 0) ^ 1;
    expect(() => new JsHdeDecoder().push(wire)).toThrow(
      expect.objectContaining({ code: 'ERR_HDE_CHUNK_CORRUPT' }),
    );
  });
});

describe('page mode (stream format 2)', () => {
  /** A QEMU-shaped stream: one RAM section of page records, then an EOS and some device state. */
  function qemuLike(pages: Buffer[]): Buffer {
    const parts: Buffer[] = [Buffer.from('QEVM\0\0\0\x03'), Buffer.from([0x02, 0, 0, 0, 2])];
    pages.forEach((page, i) => {
      const word = Buffer.alloc(8);
      word.writeBigUInt64BE((BigInt(i) << 12n) | (i === 0 ? 0x08n : 0x28n));
      parts.push(word);
      if (i === 0) parts.push(Buffer.from([6]), Buffer.from('pc.ram'));
      parts.push(page);
    });
    const eos = Buffer.alloc(8);
    eos.writeBigUInt64BE(0x10n);
    parts.push(eos, randomBytes(20_000, 9));
    return Buffer.concat(parts);
  }

  it('round trips natively with a HELD list, and the JS decoder refuses it with a typed error', () => {
    const pages = Array.from({ length: 300 }, (_, i) => randomBytes(4096, i + 1));
    const first = qemuLike(pages);
    pages[17] = randomBytes(4096, 999);
    const second = qemuLike(pages);
    const e1 = new HdeEncoder({ split: 'pages' });
    const w1 = Buffer.concat([e1.pushSync(first), e1.finishSync()]);
    expect(w1.subarray(0, 4).toString('latin1')).toBe('HDE\x02');
    const held = e1.heldIds();
    const e2 = new HdeEncoder({ split: 'pages' });
    e2.markPresent(held);
    const w2 = Buffer.concat([e2.pushSync(second), e2.finishSync()]);
    // One new page plus runs of references, not 300 references.
    expect(w2.length).toBeLessThan(4096 + 4000);

    const d1 = new HdeDecoder();
    expect(d1.pushSync(w1).equals(first)).toBe(true);
    d1.finish();
    expect(() => new JsHdeDecoder().push(w1)).toThrow(expect.objectContaining({ code: 'ERR_HDE_MALFORMED' }));
    expect(() => new HdeEncoder({ split: 'bytes' as 'pages' })).toThrow(/split/);
  });
});

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ChunkStore,
  type CodecName,
  chunkIdSync,
  chunkLengths,
  chunkLengthsSync,
  decodeFrame,
  decodeFrameSync,
  encodeFrame,
  encodeFrameSync,
  HdeDecoder,
  HdeEncoder,
  NativeError,
} from './index';

function pseudoRandom(len: number, seed: number): Buffer {
  const out = Buffer.alloc(len);
  let x = seed;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const text = Buffer.from('live migration moves a running VM between hosts. '.repeat(20_000));

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(NativeError);
    return (e as NativeError).code;
  }
  return undefined;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'dwcp-native-'));
}

describe('frames', () => {
  it.each<CodecName>(['none', 'lz4', 'zstd', 'deflate'])('round-trips %s, sync and async', async (codec) => {
    const frame = encodeFrameSync(text, { codec });
    expect(decodeFrameSync(frame).equals(text)).toBe(true);
    const viaWorker = await encodeFrame(text, { codec });
    expect((await decodeFrame(viaWorker)).equals(text)).toBe(true);
    if (codec !== 'none') expect(frame.length).toBeLessThan(text.length / 10);
  });

  it('gives typed errors for unknown codecs, bad levels and truncated frames', () => {
    expect(codeOf(() => encodeFrameSync(text, { codec: 'brotli' as CodecName }))).toBe(
      'ERR_HDE_INVALID_PARAM',
    );
    expect(codeOf(() => encodeFrameSync(text, { codec: 'zstd', level: 99 }))).toBe('ERR_HDE_INVALID_PARAM');
    const frame = encodeFrameSync(text, { codec: 'zstd' });
    expect(codeOf(() => decodeFrameSync(frame.subarray(0, frame.length - 3)))).toBe('ERR_HDE_TRUNCATED');
    expect(codeOf(() => decodeFrameSync(frame.subarray(0, 4)))).toBe('ERR_HDE_TRUNCATED');
    const unknown = Buffer.from(frame);
    unknown[1] = 42;
    expect(codeOf(() => decodeFrameSync(unknown))).toBe('ERR_HDE_UNKNOWN_CODEC');
  });

  it('rejects async calls with the same typed error', async () => {
    await expect(decodeFrame(Buffer.from([0xdc, 9, 0, 0, 0, 0, 0, 0, 0, 0]))).rejects.toMatchObject({
      code: 'ERR_HDE_UNKNOWN_CODEC',
    });
  });
});

describe('chunking parameters', () => {
  it('names the bad field', () => {
    const cases: Array<[object, string]> = [
      [{ minSize: 0 }, 'minSize'],
      [{ avgSize: 0 }, 'avgSize'],
      [{ maxSize: 0 }, 'maxSize'],
      [{ minSize: 32768, avgSize: 16384 }, 'minSize'],
      [{ normalization: 7 }, 'normalization'],
    ];
    for (const [options, field] of cases) {
      try {
        chunkLengthsSync(text, options);
        expect.unreachable(`accepted ${JSON.stringify(options)}`);
      } catch (e) {
        expect((e as NativeError).code).toBe('ERR_HDE_INVALID_PARAM');
        expect((e as NativeError).message).toContain(`\`${field}\``);
      }
    }
  });

  it('chunks off the JS thread and honours an already-aborted signal', async () => {
    const data = pseudoRandom(2 << 20, 3);
    expect(await chunkLengths(data)).toEqual(chunkLengthsSync(data));
    const controller = new AbortController();
    controller.abort();
    await expect(chunkLengths(data, undefined, controller.signal)).rejects.toMatchObject({
      name: 'AbortError',
    });
  });
});

describe('encoder and decoder', () => {
  it('rebuild the exact stream through the addon, sync and async', async () => {
    const data = Buffer.concat([pseudoRandom(3 << 20, 1), text, pseudoRandom(3 << 20, 1)]);
    const enc = new HdeEncoder({ codec: { codec: 'zstd', level: 3 } });
    const dec = new HdeDecoder();
    const parts: Buffer[] = [];
    for (let at = 0; at < data.length; at += 1 << 20) {
      parts.push(await dec.push(await enc.push(data.subarray(at, at + (1 << 20)))));
    }
    parts.push(dec.pushSync(enc.finishSync()));
    dec.finish();
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(enc.stats().dedupBytes).toBeGreaterThan(2.5 * 2 ** 20);
    expect(dec.stats().bytesOut).toBe(data.length);
  });

  it('on several threads give the same stream and rebuild it; a thread count out of range is a typed error', () => {
    const data = Buffer.concat([pseudoRandom(6 << 20, 2), text, pseudoRandom(2 << 20, 2)]);
    const encode = (threads: number) => {
      const enc = new HdeEncoder({ codec: { codec: 'zstd', level: 1 }, threads });
      return Buffer.concat([enc.pushSync(data), enc.finishSync()]);
    };
    const one = encode(1);
    expect(encode(3).equals(one)).toBe(true);
    const dec = new HdeDecoder();
    dec.setThreads(3);
    expect(dec.pushSync(one).equals(data)).toBe(true);
    dec.finish();
    expect(codeOf(() => new HdeEncoder({ threads: 0 }))).toBe('ERR_HDE_INVALID_PARAM');
    expect(codeOf(() => new HdeDecoder().setThreads(65))).toBe('ERR_HDE_INVALID_PARAM');
  });

  it('refuses a second push while one is running', async () => {
    const enc = new HdeEncoder();
    const first = enc.push(pseudoRandom(4 << 20, 5));
    expect(codeOf(() => enc.pushSync(text))).toBe('ERR_HDE_BUSY');
    await first;
    expect(enc.pushSync(text)).toBeInstanceOf(Buffer);
  });

  it('detects a flipped bit in a received chunk and emits nothing of it', () => {
    const data = pseudoRandom(1 << 20, 9);
    const enc = new HdeEncoder({ codec: { codec: 'none' } });
    const wire = Buffer.concat([enc.pushSync(data), enc.finishSync()]);
    wire[wire.length >> 1] ^= 0x04;
    const dec = new HdeDecoder();
    expect(codeOf(() => dec.pushSync(wire))).toBe('ERR_HDE_CHUNK_CORRUPT');
  });

  it('reports a truncated stream at finish', () => {
    const enc = new HdeEncoder();
    const wire = Buffer.concat([enc.pushSync(text), enc.finishSync()]);
    const dec = new HdeDecoder();
    dec.pushSync(wire.subarray(0, wire.length - 10));
    expect(codeOf(() => dec.finish())).toBe('ERR_HDE_TRUNCATED');
  });

  it('sends only references for chunks already in the destination store', () => {
    const store = ChunkStore.open(tempDir(), 1 << 30);
    const data = pseudoRandom(4 << 20, 11);
    const first = new HdeEncoder();
    new HdeDecoder(store).pushSync(Buffer.concat([first.pushSync(data), first.finishSync()]));
    const second = new HdeEncoder();
    second.markPresent(store.ids());
    const wire = Buffer.concat([second.pushSync(data), second.finishSync()]);
    expect(wire.length).toBeLessThan(5000);
    const dec = new HdeDecoder(store);
    expect(dec.pushSync(wire).equals(data)).toBe(true);
    dec.finish();
  });
});

describe('chunk store', () => {
  it('detects a flipped bit on disk with a typed error and drops the chunk', () => {
    const dir = tempDir();
    const store = ChunkStore.open(dir, 1 << 30, { codec: 'none' });
    const chunk = pseudoRandom(10_000, 21);
    const id = store.put(chunk);
    expect(id).toBe(chunkIdSync(chunk));
    const path = join(dir, 'chunks', id.slice(0, 2), id);
    const bytes = readFileSync(path);
    bytes[500] = (bytes[500] ?? 0) ^ 0x80;
    writeFileSync(path, bytes);
    expect(codeOf(() => store.get(id))).toBe('ERR_HDE_CHUNK_CORRUPT');
    expect(store.contains(id)).toBe(false);
    expect(codeOf(() => ChunkStore.open(dir, 0))).toBe('ERR_HDE_INVALID_PARAM');
    expect(codeOf(() => store.get('not-hex'))).toBe('ERR_HDE_INVALID_PARAM');
  });

  it('survives a writer killed mid-write: every chunk left verifies, no temp file remains', async () => {
    const dir = tempDir();
    const writer = resolve(__dirname, 'testing', 'store-writer.cjs');
    const child = spawn(process.execPath, [writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    // Kill once it has written a few hundred chunks, at whatever point it is.
    await new Promise<void>((done, fail) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.split('\n').length > 300) {
          child.kill('SIGKILL');
          done();
        }
      });
      child.on('exit', (code) => fail(new Error(`writer exited early with ${code}`)));
    });
    await new Promise((r) => child.once('exit', r));
    const store = ChunkStore.open(dir, 1 << 30);
    const report = store.verifyAll();
    expect(report.checked).toBeGreaterThan(250);
    expect(report.corrupt).toEqual([]);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });
});

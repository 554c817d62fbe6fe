/**
 * The pure-TypeScript HDE encoder: the reference for the native `HdeEncoder`, producing the same
 * stream format (with deflate instead of zstd/lz4), so either decoder can read it.
 */
import { blake3 } from '@noble/hashes/blake3';
import { type ChunkerParams, FastCdcChunker } from './fastcdc';
import { encodeJsFrame, FRAME_HEADER_LEN, type JsCodec } from './js-frame';
import { chunkRecord, endRecord, refRecord, STREAM_HEADER } from './js-wire';

export interface JsEncoderStats {
  bytesIn: number;
  bytesOut: number;
  chunks: number;
  dedupChunks: number;
  dedupBytes: number;
  sentRawBytes: number;
  sentFrameBytes: number;
}

export class JsHdeEncoder {
  readonly #chunker: FastCdcChunker;
  readonly #codec: JsCodec;
  readonly #present = new Set<string>();
  readonly #digest = blake3.create({});
  #pending: Buffer = Buffer.alloc(0);
  #started = false;
  #finished = false;
  readonly #stats: JsEncoderStats = {
    bytesIn: 0,
    bytesOut: 0,
    chunks: 0,
    dedupChunks: 0,
    dedupBytes: 0,
    sentRawBytes: 0,
    sentFrameBytes: 0,
  };

  constructor(options: { chunker: ChunkerParams; codec: JsCodec }) {
    this.#chunker = new FastCdcChunker(options.chunker);
    this.#codec = options.codec;
  }

  markPresent(ids: Iterable<string>): void {
    for (const id of ids) this.#present.add(id);
  }

  stats(): JsEncoderStats {
    return { ...this.#stats };
  }

  push(data: Uint8Array): Buffer {
    const out = this.#start();
    this.#stats.bytesIn += data.length;
    const lengths = this.#chunker.push(data);
    const buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, data]) : Buffer.from(data);
    const used = this.#emit(buf, lengths, out);
    this.#pending = Buffer.from(buf.subarray(used));
    return this.#flush(out);
  }

  finish(): Buffer {
    const out = this.#start();
    this.#emit(this.#pending, this.#chunker.finish(), out);
    this.#pending = Buffer.alloc(0);
    out.push(endRecord(this.#stats.bytesIn, this.#digest.digest()));
    this.#finished = true;
    return this.#flush(out);
  }

  #start(): Buffer[] {
    if (this.#finished) throw new Error('ERR_HDE_FINISHED: encoder already finished');
    if (this.#started) return [];
    this.#started = true;
    return [STREAM_HEADER];
  }

  #emit(buf: Buffer, lengths: number[], out: Buffer[]): number {
    let at = 0;
    for (const len of lengths) {
      const chunk = buf.subarray(at, at + len);
      at += len;
      const id = blake3(chunk);
      const hex = Buffer.from(id).toString('hex');
      this.#digest.update(id);
      this.#stats.chunks++;
      if (this.#present.has(hex)) {
        this.#stats.dedupChunks++;
        this.#stats.dedupBytes += len;
        out.push(refRecord(id, len));
      } else {
        this.#present.add(hex);
        const frame = encodeJsFrame(chunk, this.#codec);
        this.#stats.sentRawBytes += len;
        this.#stats.sentFrameBytes += frame.length - FRAME_HEADER_LEN;
        out.push(...chunkRecord(id, frame));
      }
    }
    return at;
  }

  #flush(out: Buffer[]): Buffer {
    const bytes = Buffer.concat(out);
    this.#stats.bytesOut += bytes.length;
    return bytes;
  }
}

/** HDE through the addon: chunking, chunk ids, frames, the chunk store, the stream encoder and decoder. */
import * as binding from '../binding';
import { asBuffer, call, callAsync } from './errors';

export type CodecName = 'none' | 'lz4' | 'zstd' | 'deflate';

export interface ChunkerOptions {
  minSize?: number;
  avgSize?: number;
  maxSize?: number;
  normalization?: 0 | 1 | 2 | 3;
}

export interface CodecOptions {
  codec?: CodecName;
  /** zstd: -7..19 (negative = fast modes), deflate: 0..9, lz4/none: 0. Default: the fast level. */
  level?: number;
}

export interface EncoderOptions {
  chunker?: ChunkerOptions;
  codec?: CodecOptions;
  /**
   * `'cdc'` (default): FastCDC chunks, stream format 1, which the JS decoder also reads.
   * `'pages'`: QEMU RAM pages as units, stream format 2, native decoder only (docs/hde.md).
   */
  split?: 'cdc' | 'pages';
  /** Threads for hashing and compression, 1..=64 (default 1). The stream is the same at any count. */
  threads?: number;
}

export type EncoderStats = binding.BindingEncoderStats;
export type DecoderStats = binding.BindingDecoderStats;
export type StoreVerifyReport = binding.BindingStoreVerifyReport;

/** Lengths of the content-defined (FastCDC 2020) chunks of `data`. */
export function chunkLengthsSync(data: Uint8Array, options?: ChunkerOptions): number[] {
  return call(() => binding.chunkLengthsSync(asBuffer(data), options));
}

export function chunkLengths(
  data: Uint8Array,
  options?: ChunkerOptions,
  signal?: AbortSignal,
): Promise<number[]> {
  return callAsync(() => binding.chunkLengths(asBuffer(data), options, signal), signal);
}

/** The BLAKE3 id of a chunk, 64 hex digits. */
export function chunkIdSync(data: Uint8Array): string {
  return call(() => binding.chunkIdSync(asBuffer(data)));
}

/** One self-describing compressed frame (codec + raw length + payload). */
export function encodeFrameSync(data: Uint8Array, options?: CodecOptions): Buffer {
  return call(() => binding.encodeFrameSync(asBuffer(data), options));
}

export function encodeFrame(data: Uint8Array, options?: CodecOptions, signal?: AbortSignal): Promise<Buffer> {
  return callAsync(() => binding.encodeFrame(asBuffer(data), options, signal), signal);
}

export function decodeFrameSync(frame: Uint8Array): Buffer {
  return call(() => binding.decodeFrameSync(asBuffer(frame)));
}

export function decodeFrame(frame: Uint8Array, signal?: AbortSignal): Promise<Buffer> {
  return callAsync(() => binding.decodeFrame(asBuffer(frame), signal), signal);
}

/** A content-addressed chunk store on disk, verified on read, bounded by an LRU byte budget. */
export class ChunkStore {
  private constructor(readonly handle: binding.ChunkStore) {}

  static open(dir: string, budgetBytes: number, codec?: CodecOptions): ChunkStore {
    return new ChunkStore(call(() => binding.ChunkStore.open(dir, budgetBytes, codec)));
  }

  /** Stores a chunk and returns its id. */
  put(data: Uint8Array): string {
    return call(() => this.handle.put(asBuffer(data)));
  }

  /** The chunk, verified; `null` if absent. Throws `ERR_HDE_CHUNK_CORRUPT` and drops a bad chunk. */
  get(id: string): Buffer | null {
    return call(() => this.handle.get(id));
  }

  contains(id: string): boolean {
    return call(() => this.handle.contains(id));
  }

  remove(id: string): boolean {
    return call(() => this.handle.remove(id));
  }

  ids(): string[] {
    return call(() => this.handle.ids());
  }

  /**
   * What this store holds, for a migration source (`MigrationSource.start({ inventory })`): the
   * 32-byte chunk ids, sorted and concatenated. 32 bytes per chunk, against 64 characters per id
   * from `ids()`.
   */
  inventory(): Buffer {
    return call(() => this.handle.inventory());
  }

  get count(): number {
    return this.handle.count;
  }

  get sizeBytes(): number {
    return this.handle.sizeBytes;
  }

  get evicted(): number {
    return this.handle.evicted;
  }

  verifyAll(): StoreVerifyReport {
    return call(() => this.handle.verifyAll());
  }
}

/** Encodes one stream into HDE records. Await each `push` before the next. */
export class HdeEncoder {
  readonly #inner: binding.HdeEncoder;

  constructor(options?: EncoderOptions) {
    this.#inner = call(() => new binding.HdeEncoder(options));
  }

  /** Chunks the receiver already holds go out as references. */
  markPresent(ids: Iterable<string>): void {
    call(() => this.#inner.markPresent([...ids]));
  }

  /**
   * Every unit the receiver holds once it has this stream. With `split: 'pages'` in stream order:
   * the next stream of the same VM gives them to `markPresent` (and its decoder to `setHeld`)
   * before its first push, so unchanged pages cost a run, not a reference each.
   */
  heldIds(): string[] {
    return call(() => this.#inner.heldIds());
  }

  /**
   * Page mode: the previous stream of this VM, which the receiver holds; a changed page is then
   * sent as zstd against its previous version. Copies `previous`.
   */
  setReference(previous: Uint8Array): void {
    call(() => this.#inner.setReference(asBuffer(previous)));
  }

  setCodec(codec: CodecOptions): void {
    call(() => this.#inner.setCodec(codec));
  }

  stats(): EncoderStats {
    return call(() => this.#inner.stats());
  }

  pushSync(data: Uint8Array): Buffer {
    return call(() => this.#inner.pushSync(asBuffer(data)));
  }

  push(data: Uint8Array, signal?: AbortSignal): Promise<Buffer> {
    return callAsync(() => this.#inner.push(asBuffer(data), signal), signal);
  }

  finishSync(): Buffer {
    return call(() => this.#inner.finishSync());
  }
}

/** Rebuilds a stream from HDE records, verifying every chunk; optionally keeps chunks in a store. */
export class HdeDecoder {
  readonly #inner: binding.HdeDecoder;

  constructor(store?: ChunkStore) {
    this.#inner = new binding.HdeDecoder(store?.handle);
  }

  pushSync(data: Uint8Array): Buffer {
    return call(() => this.#inner.pushSync(asBuffer(data)));
  }

  push(data: Uint8Array, signal?: AbortSignal): Promise<Buffer> {
    return callAsync(() => this.#inner.push(asBuffer(data), signal), signal);
  }

  /** Threads for decompression and verification from the next push on, 1..=64 (default 1). */
  setThreads(threads: number): void {
    call(() => this.#inner.setThreads(threads));
  }

  /** The ordered ids the encoder's `markPresent` got before its first push (page mode). */
  setHeld(ids: Iterable<string>): void {
    call(() => this.#inner.setHeld([...ids]));
  }

  /** Throws `ERR_HDE_TRUNCATED` unless a verified END record was seen. */
  finish(): void {
    call(() => this.#inner.finish());
  }

  stats(): DecoderStats {
    return call(() => this.#inner.stats());
  }
}

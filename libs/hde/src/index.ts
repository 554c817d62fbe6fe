/**
 * HDE (Hierarchical Delta Encoding). The native path (from `@novacron/native`) is what DWCP runs;
 * the `Js*` classes are the pure-TypeScript reference, same chunk boundaries and stream format,
 * for cross-checks and the native-vs-JS bench.
 */

export {
  type ChunkerOptions,
  ChunkStore,
  type CodecName,
  type CodecOptions,
  chunkIdSync,
  chunkLengths,
  chunkLengthsSync,
  decodeFrame,
  decodeFrameSync,
  type EncoderOptions,
  type EncoderStats,
  encodeFrame,
  encodeFrameSync,
  HdeDecoder,
  HdeEncoder,
  NativeError,
} from '@novacron/native';
export { CHUNK_STORE, ChunkStoreModule, type ChunkStoreOptions } from './chunk-store.module';
export { HdeFormatError } from './errors';
export {
  type ChunkerParams,
  chunkLengths as jsChunkLengths,
  FastCdcChunker,
  HdeParamError,
  type Normalization,
} from './fastcdc';
export { JsHdeDecoder } from './js-decoder';
export { type JsEncoderStats, JsHdeEncoder } from './js-encoder';
export { decodeJsFrame, encodeJsFrame, type JsCodec } from './js-frame';
export { randomBytes, vmLikeData, xorshift32 } from './sample-data';

/**
 * The HDE frame format in pure TypeScript, byte-compatible with the native one
 * (`native/crates/hde/src/frame.rs`): `0xDC | codec | raw_len u32 LE | payload_len u32 LE | payload`.
 * The JS path can only produce `none` and `deflate` (node:zlib has no zstd or lz4 in Node 20).
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { HdeFormatError } from './errors';

export const FRAME_MAGIC = 0xdc;
export const FRAME_HEADER_LEN = 10;
export const MAX_RAW_LEN = 16 * 1024 * 1024;
export const CODEC_NONE = 0;
export const CODEC_DEFLATE = 3;
const KNOWN_CODECS = new Set([0, 1, 2, 3]);

export interface JsCodec {
  codec: 'none' | 'deflate';
  /** deflate level 0..9 */
  level: number;
}

/** Encodes `raw` as a frame; stores it uncompressed when deflate would not shrink it. */
export function encodeJsFrame(raw: Uint8Array, codec: JsCodec): Buffer {
  let id = CODEC_NONE;
  let payload: Uint8Array = raw;
  if (codec.codec === 'deflate') {
    const packed = deflateRawSync(raw, { level: codec.level });
    if (packed.length < raw.length) {
      id = CODEC_DEFLATE;
      payload = packed;
    }
  }
  const frame = Buffer.allocUnsafe(FRAME_HEADER_LEN + payload.length);
  frame[0] = FRAME_MAGIC;
  frame[1] = id;
  frame.writeUInt32LE(raw.length, 2);
  frame.writeUInt32LE(payload.length, 6);
  frame.set(payload, FRAME_HEADER_LEN);
  return frame;
}

export interface JsFrameHeader {
  codec: number;
  rawLen: number;
  payloadLen: number;
}

/** Parses and checks a frame header at `buf[at..]`; `null` if not all 10 bytes are there yet. */
export function parseJsFrameHeader(buf: Buffer, at = 0): JsFrameHeader | null {
  if (buf.length - at < FRAME_HEADER_LEN) return null;
  if (buf[at] !== FRAME_MAGIC) throw new HdeFormatError('ERR_HDE_MALFORMED', `bad frame magic ${buf[at]}`);
  const codec = buf[at + 1] ?? -1;
  if (!KNOWN_CODECS.has(codec))
    throw new HdeFormatError('ERR_HDE_UNKNOWN_CODEC', `unknown codec id ${codec}`);
  const rawLen = buf.readUInt32LE(at + 2);
  const payloadLen = buf.readUInt32LE(at + 6);
  if (rawLen > MAX_RAW_LEN)
    throw new HdeFormatError('ERR_HDE_MALFORMED', `raw length ${rawLen} over the limit`);
  if (codec === CODEC_NONE && payloadLen !== rawLen) {
    throw new HdeFormatError('ERR_HDE_MALFORMED', `stored frame with payload ${payloadLen} != raw ${rawLen}`);
  }
  return { codec, rawLen, payloadLen };
}

/** Decodes one whole frame. zstd and lz4 frames need the native path. */
export function decodeJsFrame(frame: Buffer): Buffer {
  const h = parseJsFrameHeader(frame);
  if (h === null || frame.length < FRAME_HEADER_LEN + h.payloadLen) {
    throw new HdeFormatError('ERR_HDE_TRUNCATED', `frame of ${frame.length} bytes is truncated`);
  }
  const payload = frame.subarray(FRAME_HEADER_LEN, FRAME_HEADER_LEN + h.payloadLen);
  let raw: Buffer;
  if (h.codec === CODEC_NONE) raw = payload;
  else if (h.codec === CODEC_DEFLATE) raw = inflateRawSync(payload, { maxOutputLength: h.rawLen + 1 });
  else throw new HdeFormatError('ERR_HDE_UNKNOWN_CODEC', `codec ${h.codec} needs the native path`);
  if (raw.length !== h.rawLen) {
    throw new HdeFormatError(
      'ERR_HDE_MALFORMED',
      `payload decodes to ${raw.length} bytes, header says ${h.rawLen}`,
    );
  }
  return raw;
}

/**
 * The HDE stream format in pure TypeScript, byte-compatible with `native/crates/hde/src/wire.rs`:
 * header `HDE\x01`, then CHUNK (0x01 id frame), REF (0x02 id raw_len) and END (0x03 total digest).
 */
import { HdeFormatError } from './errors';
import { FRAME_HEADER_LEN, MAX_RAW_LEN, parseJsFrameHeader } from './js-frame';

export const STREAM_HEADER = Buffer.from([0x48, 0x44, 0x45, 0x01]);
const TAG_CHUNK = 1;
const TAG_REF = 2;
const TAG_END = 3;
const ID_LEN = 32;
const REF_LEN = 1 + ID_LEN + 4;
const END_LEN = 1 + 8 + ID_LEN;

export type JsRecord =
  | { kind: 'chunk'; id: Buffer; frame: Buffer; length: number }
  | { kind: 'ref'; id: Buffer; rawLen: number; length: number }
  | { kind: 'end'; totalLen: bigint; digest: Buffer; length: number };

export function chunkRecord(id: Uint8Array, frame: Buffer): Buffer[] {
  return [Buffer.from([TAG_CHUNK]), Buffer.from(id), frame];
}

export function refRecord(id: Uint8Array, rawLen: number): Buffer {
  const r = Buffer.allocUnsafe(REF_LEN);
  r[0] = TAG_REF;
  r.set(id, 1);
  r.writeUInt32LE(rawLen, 1 + ID_LEN);
  return r;
}

export function endRecord(totalLen: number, digest: Uint8Array): Buffer {
  const r = Buffer.allocUnsafe(END_LEN);
  r[0] = TAG_END;
  r.writeBigUInt64LE(BigInt(totalLen), 1);
  r.set(digest, 9);
  return r;
}

/** One record at `buf[at..]`, or `null` when it is not all buffered yet. */
export function parseJsRecord(buf: Buffer, at: number): JsRecord | null {
  if (at >= buf.length) return null;
  const tag = buf[at];
  if (tag === TAG_CHUNK) {
    const h = parseJsFrameHeader(buf, at + 1 + ID_LEN);
    if (h === null) return null;
    const length = 1 + ID_LEN + FRAME_HEADER_LEN + h.payloadLen;
    if (buf.length - at < length) return null;
    return {
      kind: 'chunk',
      id: buf.subarray(at + 1, at + 1 + ID_LEN),
      frame: buf.subarray(at + 1 + ID_LEN, at + length),
      length,
    };
  }
  if (tag === TAG_REF) {
    if (buf.length - at < REF_LEN) return null;
    const rawLen = buf.readUInt32LE(at + 1 + ID_LEN);
    if (rawLen === 0 || rawLen > MAX_RAW_LEN) {
      throw new HdeFormatError('ERR_HDE_MALFORMED', `ref raw length ${rawLen} is outside 1..=${MAX_RAW_LEN}`);
    }
    return { kind: 'ref', id: buf.subarray(at + 1, at + 1 + ID_LEN), rawLen, length: REF_LEN };
  }
  if (tag === TAG_END) {
    if (buf.length - at < END_LEN) return null;
    return {
      kind: 'end',
      totalLen: buf.readBigUInt64LE(at + 1),
      digest: buf.subarray(at + 9, at + END_LEN),
      length: END_LEN,
    };
  }
  throw new HdeFormatError('ERR_HDE_MALFORMED', `unknown record tag ${tag}`);
}

/**
 * AMST frames, byte-compatible with `native/crates/amst/src/frame.rs`. Every connection carries:
 *
 * ```text
 * DATA  0xA5 0x01 | seq u64 | len u32 | payload[len]
 * ACK   0xA5 0x02 | seq u64 | cumulative u64 | window u32
 * FIN   0xA5 0x03 | total_frames u64 | total_bytes u64
 * ```
 * All integers little-endian. Sequence numbers and byte counts are JS numbers: exact up to 2^53,
 * which no stream reaches. A u64 above that decodes to a number ≥ 2^53, so a DATA frame carrying
 * one is refused as beyond the window and an ACK carrying one as acking unsent frames, as in Rust.
 * The two reserved ACK `seq` values (u64::MAX, u64::MAX - 1) decode to the sentinels below.
 */

import { AmstError } from './error';

const MAGIC = 0xa5;
const KIND_DATA = 1;
const KIND_ACK = 2;
const KIND_FIN = 3;
/** Bytes before a DATA payload. */
export const DATA_HEADER_LEN = 2 + 8 + 4;
/** Length of an ACK frame. */
export const ACK_LEN = 2 + 8 + 8 + 4;
/** Length of a FIN frame. */
export const FIN_LEN = 2 + 8 + 8;
/** The ACK `seq` that acknowledges a FIN; u64::MAX on the wire. */
export const FIN_SEQ = -1;
/** The ACK `seq` that only reopens the receive window; u64::MAX - 1 on the wire. */
export const WINDOW_UPDATE_SEQ = -2;

const TWO_32 = 2 ** 32;

/** The receiver's answer to one DATA frame. */
export interface Ack {
  /** The DATA frame this answers, or `FIN_SEQ` / `WINDOW_UPDATE_SEQ`. */
  seq: number;
  /** Every frame below this has been delivered in order. */
  cumulative: number;
  /** Frames the receiver accepts beyond `cumulative` (u32). */
  window: number;
}

/** A parsed frame. DATA's payload is a view into the parsed buffer. */
export type Frame =
  | { kind: 'data'; seq: number; payload: Buffer }
  | { kind: 'ack'; ack: Ack }
  | { kind: 'fin'; totalFrames: number; totalBytes: number };

/** A DATA header for a payload of `len` bytes. */
export function dataHeader(seq: number, len: number): Buffer {
  const h = Buffer.allocUnsafe(DATA_HEADER_LEN);
  h[0] = MAGIC;
  h[1] = KIND_DATA;
  writeU64(h, 2, seq);
  h.writeUInt32LE(len, 10);
  return h;
}

/** Encodes an ACK. */
export function encodeAck(ack: Ack): Buffer {
  const b = Buffer.allocUnsafe(ACK_LEN);
  writeAck(b, 0, ack);
  return b;
}

/** Encodes an ACK into `b` at `at` (for batching several into one write). */
export function writeAck(b: Buffer, at: number, ack: Ack): void {
  b[at] = MAGIC;
  b[at + 1] = KIND_ACK;
  if (ack.seq === FIN_SEQ || ack.seq === WINDOW_UPDATE_SEQ) {
    b.writeUInt32LE(ack.seq === FIN_SEQ ? 0xffff_ffff : 0xffff_fffe, at + 2);
    b.writeUInt32LE(0xffff_ffff, at + 6);
  } else {
    writeU64(b, at + 2, ack.seq);
  }
  writeU64(b, at + 10, ack.cumulative);
  b.writeUInt32LE(ack.window, at + 18);
}

/** Encodes a FIN. */
export function encodeFin(totalFrames: number, totalBytes: number): Buffer {
  const b = Buffer.allocUnsafe(FIN_LEN);
  b[0] = MAGIC;
  b[1] = KIND_FIN;
  writeU64(b, 2, totalFrames);
  writeU64(b, 10, totalBytes);
  return b;
}

/**
 * How many bytes the frame at the start of `buf` occupies, known once its header is in; `null`
 * while the header is incomplete. Throws what `parseFrame` throws, from the header alone, so a
 * runtime can refuse an oversized frame before buffering it.
 */
export function frameLength(buf: Uint8Array, maxPayload: number): number | null {
  if (buf.length < 2) return null;
  if (buf[0] !== MAGIC) throw AmstError.malformedFrame(`bad magic 0x${hex2(buf[0] ?? 0)}`);
  switch (buf[1]) {
    case KIND_DATA: {
      if (buf.length < DATA_HEADER_LEN) return null;
      const len = u32At(buf, 10);
      if (len > maxPayload) throw AmstError.frameTooLarge(len, maxPayload);
      if (len === 0) throw AmstError.malformedFrame('empty DATA frame');
      return DATA_HEADER_LEN + len;
    }
    case KIND_ACK:
      return ACK_LEN;
    case KIND_FIN:
      return FIN_LEN;
    default:
      throw AmstError.malformedFrame(`unknown kind 0x${hex2(buf[1] ?? 0)}`);
  }
}

/**
 * Parses one frame from the start of `buf`. `null` means incomplete: read more. Payloads over
 * `maxPayload` are refused from the header alone.
 */
export function parseFrame(buf: Buffer, maxPayload: number): { frame: Frame; used: number } | null {
  const used = frameLength(buf, maxPayload);
  if (used === null || buf.length < used) return null;
  switch (buf[1]) {
    case KIND_DATA:
      return {
        frame: { kind: 'data', seq: u64At(buf, 2), payload: buf.subarray(DATA_HEADER_LEN, used) },
        used,
      };
    case KIND_ACK:
      return {
        frame: {
          kind: 'ack',
          ack: { seq: ackSeqAt(buf, 2), cumulative: u64At(buf, 10), window: u32At(buf, 18) },
        },
        used,
      };
    default:
      return { frame: { kind: 'fin', totalFrames: u64At(buf, 2), totalBytes: u64At(buf, 10) }, used };
  }
}

function writeU64(b: Buffer, at: number, n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not a u64 this codec can write`);
  b.writeUInt32LE(n >>> 0, at);
  b.writeUInt32LE(Math.floor(n / TWO_32), at + 4);
}

function u32At(buf: Uint8Array, at: number): number {
  return (
    ((buf[at] ?? 0) | ((buf[at + 1] ?? 0) << 8) | ((buf[at + 2] ?? 0) << 16)) +
    (buf[at + 3] ?? 0) * 0x100_0000
  );
}

function u64At(buf: Uint8Array, at: number): number {
  return u32At(buf, at) + u32At(buf, at + 4) * TWO_32;
}

function ackSeqAt(buf: Uint8Array, at: number): number {
  if (u32At(buf, at + 4) === 0xffff_ffff) {
    const lo = u32At(buf, at);
    if (lo === 0xffff_ffff) return FIN_SEQ;
    if (lo === 0xffff_fffe) return WINDOW_UPDATE_SEQ;
  }
  return u64At(buf, at);
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

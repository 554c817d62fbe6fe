/**
 * The hello that opens every AMST connection over TCP+TLS, after the TLS handshake and before any
 * frame: which transfer the connection belongs to. Byte-compatible with the native runtime
 * (`native/crates/transport/src/hello.rs`), so either side can be JS or native:
 *
 * ```text
 * "DWCPAMST" | version u8 = 1 | session id [16] | connection index u32 LE      (29 bytes)
 * ```
 * The session id is random per transfer; the index is the sender's id for the connection, unique
 * within the transfer (a replacement for a failed connection gets a new one). There is no reply:
 * the receiver closes a connection it will not take.
 */

import { AmstError } from './error';

const MAGIC = Buffer.from('DWCPAMST', 'latin1');
export const HELLO_VERSION = 1;
export const HELLO_LEN = 8 + 1 + 16 + 4;
export const SESSION_ID_LEN = 16;

export interface Hello {
  sessionId: Buffer;
  index: number;
}

export function encodeHello(h: Hello): Buffer {
  if (h.sessionId.length !== SESSION_ID_LEN) throw new RangeError('a session id has 16 bytes');
  const b = Buffer.alloc(HELLO_LEN);
  MAGIC.copy(b, 0);
  b[8] = HELLO_VERSION;
  h.sessionId.copy(b, 9);
  b.writeUInt32LE(h.index, 25);
  return b;
}

/** Parses a complete hello (`buf.length >= HELLO_LEN`). */
export function parseHello(buf: Buffer): Hello {
  if (!buf.subarray(0, 8).equals(MAGIC)) throw AmstError.badHello('not a DWCP AMST connection');
  if (buf[8] !== HELLO_VERSION) throw AmstError.badHello(`unsupported version ${buf[8]}`);
  return { sessionId: Buffer.from(buf.subarray(9, 25)), index: buf.readUInt32LE(25) };
}

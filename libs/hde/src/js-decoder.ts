/**
 * The pure-TypeScript HDE decoder: verifies every chunk against its BLAKE3 id, resolves
 * references from the chunks of this stream, and checks the END record.
 */
import { blake3 } from '@noble/hashes/blake3';
import { HdeFormatError } from './errors';
import { decodeJsFrame } from './js-frame';
import { parseJsRecord, STREAM_HEADER } from './js-wire';

export class JsHdeDecoder {
  readonly #chunks = new Map<string, Buffer>();
  readonly #digest = blake3.create({});
  #pending: Buffer = Buffer.alloc(0);
  #headerSeen = false;
  #endSeen = false;
  #bytesOut = 0;

  push(data: Uint8Array): Buffer {
    this.#pending = this.#pending.length > 0 ? Buffer.concat([this.#pending, data]) : Buffer.from(data);
    const out: Buffer[] = [];
    let at = 0;
    if (!this.#headerSeen) {
      if (this.#pending.length < STREAM_HEADER.length) return Buffer.alloc(0);
      if (!this.#pending.subarray(0, STREAM_HEADER.length).equals(STREAM_HEADER)) {
        throw new HdeFormatError('ERR_HDE_MALFORMED', 'bad stream header');
      }
      this.#headerSeen = true;
      at = STREAM_HEADER.length;
    }
    for (;;) {
      if (this.#endSeen && at < this.#pending.length) {
        throw new HdeFormatError('ERR_HDE_MALFORMED', 'bytes after the END record');
      }
      const record = parseJsRecord(this.#pending, at);
      if (record === null) break;
      at += record.length;
      if (record.kind === 'chunk') {
        const hex = record.id.toString('hex');
        const raw = decodeJsFrame(record.frame);
        const actual = Buffer.from(blake3(raw)).toString('hex');
        if (actual !== hex) {
          throw new HdeFormatError(
            'ERR_HDE_CHUNK_CORRUPT',
            `chunk ${hex} is corrupt: content hashes to ${actual}`,
          );
        }
        this.#chunks.set(actual, Buffer.from(raw));
        this.#accept(record.id, raw, out);
      } else if (record.kind === 'ref') {
        const hex = record.id.toString('hex');
        const raw = this.#chunks.get(hex);
        if (raw === undefined)
          throw new HdeFormatError('ERR_HDE_MISSING_CHUNK', `chunk ${hex} is not present`);
        if (raw.length !== record.rawLen)
          throw new HdeFormatError('ERR_HDE_MALFORMED', 'ref length disagrees');
        this.#accept(record.id, raw, out);
      } else {
        if (record.totalLen !== BigInt(this.#bytesOut)) {
          throw new HdeFormatError(
            'ERR_HDE_STREAM_MISMATCH',
            `declared ${record.totalLen}, rebuilt ${this.#bytesOut}`,
          );
        }
        if (!Buffer.from(this.#digest.digest()).equals(record.digest)) {
          throw new HdeFormatError('ERR_HDE_STREAM_MISMATCH', 'stream digest differs');
        }
        this.#endSeen = true;
      }
    }
    this.#pending = Buffer.from(this.#pending.subarray(at));
    return Buffer.concat(out);
  }

  finish(): void {
    if (!this.#endSeen) throw new HdeFormatError('ERR_HDE_TRUNCATED', 'stream ended before its END record');
  }

  #accept(id: Buffer, raw: Buffer, out: Buffer[]): void {
    this.#digest.update(id);
    this.#bytesOut += raw.length;
    out.push(raw);
  }
}

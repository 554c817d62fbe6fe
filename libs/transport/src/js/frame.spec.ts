import { describe, expect, it } from 'vitest';
import { AmstError } from './error';
import {
  type Ack,
  DATA_HEADER_LEN,
  dataHeader,
  encodeAck,
  encodeFin,
  FIN_SEQ,
  frameLength,
  parseFrame,
  WINDOW_UPDATE_SEQ,
} from './frame';

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof AmstError) return e.code;
    throw e;
  }
  return 'no error';
}

describe('AMST frames', () => {
  it('round-trip and parse incrementally', () => {
    const ack: Ack = { seq: 7, cumulative: 8, window: 64 };
    const wire = Buffer.concat([dataHeader(7, 5), Buffer.from('hello'), encodeAck(ack), encodeFin(8, 1234)]);
    for (let cut = 0; cut < DATA_HEADER_LEN + 5; cut++)
      expect(parseFrame(wire.subarray(0, cut), 1024)).toBeNull();
    const data = parseFrame(wire, 1024);
    expect(data?.frame).toEqual({ kind: 'data', seq: 7, payload: Buffer.from('hello') });
    const n = data?.used ?? 0;
    const a = parseFrame(wire.subarray(n), 1024);
    expect(a?.frame).toEqual({ kind: 'ack', ack });
    const fin = parseFrame(wire.subarray(n + (a?.used ?? 0)), 1024);
    expect(fin?.frame).toEqual({ kind: 'fin', totalFrames: 8, totalBytes: 1234 });
  });

  it('are byte-for-byte the native layout, u64 sentinels included', () => {
    expect(dataHeader(2 ** 40 + 3, 5).toString('hex')).toBe('a501' + '0300000000010000' + '05000000');
    expect(encodeAck({ seq: FIN_SEQ, cumulative: 8, window: 64 }).toString('hex')).toBe(
      'a502' + 'ffffffffffffffff' + '0800000000000000' + '40000000',
    );
    expect(encodeAck({ seq: WINDOW_UPDATE_SEQ, cumulative: 0, window: 1 }).toString('hex')).toBe(
      'a502' + 'feffffffffffffff' + '0000000000000000' + '01000000',
    );
    expect(encodeFin(8, 1234).toString('hex')).toBe('a503' + '0800000000000000' + 'd204000000000000');
    for (const seq of [FIN_SEQ, WINDOW_UPDATE_SEQ, 0, 2 ** 53 - 1]) {
      const parsed = parseFrame(encodeAck({ seq, cumulative: 1, window: 2 }), 0);
      expect(parsed?.frame).toEqual({ kind: 'ack', ack: { seq, cumulative: 1, window: 2 } });
    }
  });

  it('refuses bad frames with typed errors, from the header alone', () => {
    expect(codeOf(() => parseFrame(Buffer.from([0x00, 1]), 10))).toBe('ERR_AMST_MALFORMED_FRAME');
    expect(codeOf(() => parseFrame(Buffer.from([0xa5, 9]), 10))).toBe('ERR_AMST_MALFORMED_FRAME');
    expect(codeOf(() => parseFrame(dataHeader(0, 2 ** 30), 2 ** 20))).toBe('ERR_AMST_FRAME_TOO_LARGE');
    expect(codeOf(() => frameLength(dataHeader(0, 2 ** 30), 2 ** 20))).toBe('ERR_AMST_FRAME_TOO_LARGE');
    expect(codeOf(() => parseFrame(dataHeader(0, 0), 10))).toBe('ERR_AMST_MALFORMED_FRAME');
  });

  it('decode a u64 sequence number beyond 2^53 as one no window reaches', () => {
    const h = dataHeader(0, 1);
    h.writeUInt32LE(0xffff_ffff, 2);
    h.writeUInt32LE(0xffff_ffff, 6);
    const parsed = parseFrame(Buffer.concat([h, Buffer.from('x')]), 10);
    expect(parsed?.frame.kind === 'data' && parsed.frame.seq).toBeGreaterThanOrEqual(2 ** 53);
  });
});

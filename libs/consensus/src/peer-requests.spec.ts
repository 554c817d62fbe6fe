import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import type { MembershipChange } from './peer-proto';
import {
  checkBatch,
  checkCommand,
  checkMembershipChange,
  PeerRequestError,
  raftMessageSender,
} from './peer-requests';

function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  do {
    out.push(Number(v & 0x7fn) | (v > 0x7fn ? 0x80 : 0));
    v >>= 7n;
  } while (v > 0n);
  return out;
}
/** An eraftpb.Message with msg_type, to, from, term, and a context (field 12) after them. */
const message = (from: bigint, to = 1n) =>
  Buffer.from([0x08, 8, 0x10, ...varint(to), 0x18, ...varint(from), 0x20, 5, 0x62, 3, ...Buffer.from('ctx')]);

/** The gRPC status a check refuses with, or 'ok'. */
function outcome(f: () => void): grpc.status | 'ok' {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof PeerRequestError) return e.code;
    throw e;
  }
}

describe('raftMessageSender', () => {
  it('reads the from field past the others, up to 2^64 - 1', () => {
    expect(raftMessageSender(message(2n))).toBe(2n);
    expect(raftMessageSender(message(2n ** 64n - 1n))).toBe(2n ** 64n - 1n);
    expect(raftMessageSender(Buffer.alloc(0))).toBe(0n);
  });

  it('refuses what is not protobuf', () => {
    for (const bad of [[0x18], [0x18, 0x80], [0x62, 10, 1], [0x0f], [0x09, 1, 2], Array(11).fill(0xff)]) {
      expect(
        outcome(() => raftMessageSender(Buffer.from(bad))),
        JSON.stringify(bad),
      ).toBe(grpc.status.INVALID_ARGUMENT);
    }
  });
});

describe('checkBatch', () => {
  const names: Record<number, string> = { 1: 'n1', 2: 'n2' };
  const nodeNameOf = (id: number) => names[id];
  const check = (from: number, messages: Buffer[], cert = ['n2']) =>
    outcome(() => checkBatch({ from, messages }, nodeNameOf, cert));

  it("passes a batch of the certificate's member whose messages name it", () => {
    expect(check(2, [message(2n), message(2n)])).toBe('ok');
    expect(check(2, [])).toBe('ok');
  });

  it('refuses a batch from no raft id, or one this node does not know', () => {
    expect(check(0, [])).toBe(grpc.status.INVALID_ARGUMENT);
    expect(check(2 ** 64, [])).toBe(grpc.status.INVALID_ARGUMENT);
    expect(check(4242, [message(4242n)], ['mallory'])).toBe(grpc.status.PERMISSION_DENIED);
  });

  it("refuses a batch in another member's name, and messages that claim another sender", () => {
    expect(check(1, [message(1n)])).toBe(grpc.status.PERMISSION_DENIED);
    expect(check(2, [message(2n), message(1n)])).toBe(grpc.status.PERMISSION_DENIED);
    expect(check(2, [message(0n)])).toBe(grpc.status.INVALID_ARGUMENT);
    expect(check(2, [Buffer.from([0xff])])).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('checkCommand', () => {
  it('passes a cluster command', () => {
    const cmd = { type: 'vm.start', vmId: 'vm-abc' };
    expect(outcome(() => checkCommand(Buffer.from(JSON.stringify(cmd))))).toBe('ok');
  });

  it('refuses what is not UTF-8 JSON or not a command', () => {
    for (const bad of ['', '{', 'null', '42', '[]', '{}', '{"type":"vm.explode"}', '{"type":"vm.start"}']) {
      expect(
        outcome(() => checkCommand(Buffer.from(bad))),
        bad,
      ).toBe(grpc.status.INVALID_ARGUMENT);
    }
    expect(outcome(() => checkCommand(Buffer.from([0xff, 0x7b, 0x7d])))).toBe(grpc.status.INVALID_ARGUMENT);
  });
});

describe('checkMembershipChange', () => {
  const nodeNameOf = (id: number) => (id === 3 ? 'n3' : undefined);
  const check = (c: Partial<MembershipChange>) =>
    outcome(() =>
      checkMembershipChange({ kind: 'ADD_NODE', raftId: 3, context: Buffer.alloc(0), ...c }, nodeNameOf),
    );

  it('passes an addition of a registered node and any removal', () => {
    expect(check({})).toBe('ok');
    expect(check({ context: Buffer.from('{"nodeId":"node-3"}') })).toBe('ok');
    expect(check({ kind: 'REMOVE_NODE', raftId: 4242 })).toBe('ok');
  });

  it('refuses unknown kinds, ids that are no raft id, contexts that are no JSON object', () => {
    expect(check({ kind: 7 as unknown as MembershipChange['kind'] })).toBe(grpc.status.INVALID_ARGUMENT);
    for (const raftId of [0, -1, 2 ** 53, 1.5, 2 ** 64])
      expect(check({ raftId }), String(raftId)).toBe(grpc.status.INVALID_ARGUMENT);
    for (const context of ['{', '42', '[]', 'null'])
      expect(check({ context: Buffer.from(context) }), context).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('refuses to add a raft id that no node registered', () => {
    expect(check({ raftId: 4242 })).toBe(grpc.status.FAILED_PRECONDITION);
  });
});

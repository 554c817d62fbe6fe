/**
 * The peer server's refusals, with a real mutual-TLS server on loopback and fake node handlers:
 * what it refuses never reaches them. (test/cluster/peer-rpc-fuzz.spec.ts does this to node processes.)
 */
import * as grpc from '@grpc/grpc-js';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_STATUS_DETAILS, type PeerHandlers, PeerTransport } from './peer-transport';

const ca = generateClusterCa('peer-transport-spec');
const server = issueNodeCertificate(ca, { nodeName: 'n1', extraNames: ['127.0.0.1'] });
const caller = issueNodeCertificate(ca, { nodeName: 'n2' });
const called: string[] = [];
const handlers: PeerHandlers = {
  deliver: () => called.push('deliver'),
  propose: async () => {
    called.push('propose');
    return { result: Buffer.from('null'), errorCode: '', errorMessage: '', errorField: '' };
  },
  changeMembership: async () => {
    called.push('changeMembership');
    return { errorCode: '', errorMessage: '' };
  },
  nodeNameOf: (id) => ({ 1: 'n1', 2: 'n2' })[id],
  isMemberName: (name) => name === 'n1' || name === 'n2',
  isRemoved: () => false,
};
const transport = new PeerTransport({ caPem: ca.certPem, ...server }, handlers);
let client: grpc.Client;

beforeAll(async () => {
  // A service added next to RaftPeer gets the same guard.
  transport.addService(
    {
      Echo: {
        path: '/spec.Echo/Echo',
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb({ code: grpc.status.NOT_FOUND, details: `no ${call.request.toString()}` }),
    },
  );
  const port = await transport.listen('127.0.0.1', 0);
  client = new grpc.Client(
    `127.0.0.1:${port}`,
    grpc.credentials.createSsl(
      Buffer.from(ca.certPem),
      Buffer.from(caller.keyPem),
      Buffer.from(caller.certPem),
    ),
    { 'grpc.ssl_target_name_override': 'n1' },
  );
});
afterAll(async () => {
  client.close();
  await transport.close();
});

function call(path: string, body: Buffer): Promise<{ code: grpc.status; details: string }> {
  const raw = (b: Buffer) => b;
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      path,
      raw,
      raw,
      body,
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err) => resolve({ code: err ? err.code : grpc.status.OK, details: err?.details ?? '' }),
    ),
  );
}

describe('PeerTransport server', () => {
  it('answers INVALID_ARGUMENT to a request that does not decode, without calling the node', async () => {
    called.length = 0;
    // Field 3, length-delimited, 16 bytes long, of which 1 is there.
    for (const method of ['Deliver', 'Propose', 'ChangeMembership']) {
      const r = await call(`/dwcp.cluster.v1.RaftPeer/${method}`, Buffer.from([0x1a, 0x10, 1]));
      expect(r.code, method).toBe(grpc.status.INVALID_ARGUMENT);
      expect(r.details).toMatch(/does not decode/);
    }
    expect(called).toEqual([]);
  });

  it('refuses a Raft message that claims another sender than its batch', async () => {
    called.length = 0;
    // RaftBatch{from: 2, messages: [Message{msg_type: heartbeat, to: 1, from: 1}]}
    const forged = Buffer.from([0x08, 2, 0x12, 6, 0x08, 8, 0x10, 1, 0x18, 1]);
    const r = await call('/dwcp.cluster.v1.RaftPeer/Deliver', forged);
    expect(r, r.details).toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    expect(called).toEqual([]);
  });

  it('proposes nothing that is not a command, and adds no node that is not registered', async () => {
    called.length = 0;
    const propose = await call('/dwcp.cluster.v1.RaftPeer/Propose', Buffer.from([0x0a, 2, 0x34, 0x32]));
    expect(propose.code).toBe(grpc.status.INVALID_ARGUMENT);
    // MembershipChange{kind: ADD_NODE, raft_id: 4242}
    const add = await call('/dwcp.cluster.v1.RaftPeer/ChangeMembership', Buffer.from([0x10, 0x92, 0x21]));
    expect(add.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(called).toEqual([]);
  });

  it(`cuts status messages to ${MAX_STATUS_DETAILS} characters, so a long echo still arrives`, async () => {
    const r = await call('/spec.Echo/Echo', Buffer.from('m'.repeat(100_000)));
    expect(r.code).toBe(grpc.status.NOT_FOUND);
    expect(r.details.length).toBeLessThanOrEqual(MAX_STATUS_DETAILS);
  });
});

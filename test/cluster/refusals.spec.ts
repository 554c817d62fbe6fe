/**
 * What a 3-node cluster refuses, and that refusing leaves it working: bad tokens and roles on REST
 * and gRPC, foreign or mislabelled certificates on the peer port, a join with a wrong join token,
 * and malformed requests (4xx with a useful message through leader and follower alike, never 5xx).
 */
import * as grpc from '@grpc/grpc-js';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apiGrpcClient,
  bearer,
  type ClusterStatusBody,
  grpcCall,
  LocalCluster,
  type NodeProcess,
  peerClient,
  until,
  vmBody,
} from './harness';

const cluster = new LocalCluster(['--raft-min-tick-ms', '20']);
let leader: NodeProcess;
let follower: NodeProcess;
let seed: NodeProcess;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  await cluster.start(3);
  leader = await cluster.waitStable();
  follower = cluster.nodes.find((n) => n !== leader) as NodeProcess;
  seed = cluster.nodes[0] as NodeProcess;
}, 120_000);
afterAll(async () => {
  for (const c of clients) c.close();
  await cluster.stop();
});

function track<C extends grpc.Client>(c: C): C {
  clients.push(c);
  return c;
}

/** The cluster still commits a write and reads it back through every node. */
async function stillWorks(name: string): Promise<void> {
  const r = await cluster.createVm(follower, name);
  expect(r.status).toBe(201);
  for (const n of cluster.nodes) expect(await cluster.vmNames(n)).toContain(name);
}

describe('bad tokens, roles and certificates are refused', () => {
  it('REST: no token is 401 ERR_UNAUTHENTICATED, a viewer writing is 403 ERR_PERMISSION_DENIED', async () => {
    for (const n of [leader, follower]) {
      const none = await n.api<{ code: string }>('POST', '/v1/vms', undefined, vmBody('no-token'));
      expect(none).toMatchObject({ status: 401, body: { code: 'ERR_UNAUTHENTICATED' } });
      const bogus = await n.api<{ code: string }>('GET', '/v1/vms', 'dwcp_api_not-a-real-token');
      expect(bogus).toMatchObject({ status: 401, body: { code: 'ERR_UNAUTHENTICATED' } });
    }
    const viewer = await cluster.createToken('viewer', leader, 'rest-viewer');
    // A token is looked up in local state: the follower knows it once it has applied the entry.
    await until('the follower knows the viewer token', async () => {
      return (await follower.api('GET', '/v1/vms', viewer)).status === 200;
    });
    for (const n of [leader, follower]) {
      const r = await n.api<{ code: string; message: string }>(
        'POST',
        '/v1/vms',
        viewer,
        vmBody('by-viewer'),
      );
      expect(r.status).toBe(403);
      expect(r.body.code).toBe('ERR_PERMISSION_DENIED');
      expect(r.body.message).toMatch(/operator/);
    }
    expect(await cluster.vmNames(leader)).not.toContain('by-viewer');
  });

  it('gRPC: no token is UNAUTHENTICATED, a viewer writing is PERMISSION_DENIED', async () => {
    const viewer = await cluster.createToken('viewer', leader, 'grpc-viewer');
    await until('the follower knows the viewer token', async () => {
      return (await follower.api('GET', '/v1/vms', viewer)).status === 200;
    });
    const create = { name: 'grpc-by-viewer', image: 'debian', vcpus: 1, memory_mib: 1 };
    for (const n of [leader, follower]) {
      const vms = track(apiGrpcClient(n, 'VmService'));
      const none = await grpcCall(vms, 'CreateVm', create);
      expect(none).toMatchObject({
        ok: false,
        code: grpc.status.UNAUTHENTICATED,
        dwcpCode: 'ERR_UNAUTHENTICATED',
      });
      const denied = await grpcCall(vms, 'CreateVm', create, bearer(viewer));
      expect(denied).toMatchObject({
        ok: false,
        code: grpc.status.PERMISSION_DENIED,
        dwcpCode: 'ERR_PERMISSION_DENIED',
      });
      // The same token may read.
      expect(await grpcCall(vms, 'ListVms', {}, bearer(viewer))).toMatchObject({ ok: true });
    }
  });

  it('peer port: no client certificate and a foreign CA fail the handshake; a wrong name is denied', async () => {
    const caPem = cluster.clusterFile(seed, 'ca.pem');
    const batch = { from: 2, messages: [] };
    const serverName = leader.name;

    const anonymous = track(peerClient(leader, serverName, { caPem }));
    const r1 = await grpcCall(anonymous, 'deliver', batch, undefined, 5000);
    expect(r1).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });

    const foreign = issueNodeCertificate(generateClusterCa('intruders'), { nodeName: 'n2' });
    const outsider = track(peerClient(leader, serverName, { caPem, ...foreign }));
    const r2 = await grpcCall(outsider, 'deliver', batch, undefined, 5000);
    expect(r2).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
    const r2b = await grpcCall(outsider, 'propose', { command: Buffer.from('{}') }, undefined, 5000);
    expect(r2b).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });

    // Signed by the real CA (read from the seed), but for a name that is not raft node 2's.
    const ca = { certPem: caPem, keyPem: cluster.clusterFile(seed, 'ca.key') };
    const impostor = track(
      peerClient(leader, serverName, { caPem, ...issueNodeCertificate(ca, { nodeName: 'mallory' }) }),
    );
    const status = (await cluster.statusOf(leader)) as ClusterStatusBody;
    for (const from of status.voters.filter((v) => v !== status.raftId)) {
      const r3 = await grpcCall(impostor, 'deliver', { from, messages: [] }, undefined, 5000);
      expect(r3).toMatchObject({ ok: false, code: grpc.status.PERMISSION_DENIED });
    }
    // Nor may a certificate that names no member forward commands to the leader (here: make itself admin).
    const grab = Buffer.from(
      JSON.stringify({
        type: 'token.add',
        tokenId: 'tok-mallory',
        name: 'mallory',
        role: 'admin',
        sha256: '0'.repeat(64),
        at: new Date().toISOString(),
      }),
    );
    const r4 = await grpcCall(impostor, 'propose', { command: grab }, undefined, 5000);
    expect(r4).toMatchObject({ ok: false, code: grpc.status.PERMISSION_DENIED });
    const tokens = await leader.api<{ items: { name: string }[] }>('GET', '/v1/tokens', cluster.adminToken);
    expect(tokens.body.items.map((t) => t.name)).not.toContain('mallory');

    await stillWorks('after-bad-peers');
  });

  it('a join with a wrong join token exits non-zero with a clear message and changes nothing', async () => {
    const before = (await cluster.statusOf(leader)) as ClusterStatusBody;
    const nodesBefore = await leader.api<{ items: unknown[] }>('GET', '/v1/nodes', cluster.adminToken);
    const intruder = await cluster.add();
    try {
      intruder.start({ url: seed.apiUrl, token: 'dwcp_join_wrong' });
      const code = await intruder.exited();
      expect(code).not.toBe(0);
      expect(intruder.log).toMatch(/join refused .*401 ERR_UNAUTHENTICATED invalid join token/);
    } finally {
      cluster.nodes.pop();
    }
    const after = (await cluster.statusOf(leader)) as ClusterStatusBody;
    expect(after.voters).toEqual(before.voters);
    const nodesAfter = await leader.api<{ items: unknown[] }>('GET', '/v1/nodes', cluster.adminToken);
    expect(nodesAfter.body.items).toEqual(nodesBefore.body.items);
    await stillWorks('after-bad-join');
  });
});

interface ErrorBody {
  code: string;
  message: string;
  fields?: { path: string; message: string }[];
}

describe('invalid requests get 4xx with useful messages, through leader and follower', () => {
  it('bad body 400 with fields, unknown id 404, conflict 409, malformed JSON 400; never 5xx', async () => {
    const token = cluster.adminToken;
    for (const n of [leader, follower]) {
      const bad = await n.api<ErrorBody>('POST', '/v1/vms', token, {
        name: '',
        image: 'debian',
        vcpus: 0,
        extra: 1,
      });
      expect(bad.status).toBe(400);
      expect(bad.body.code).toBe('ERR_INVALID_ARGUMENT');
      expect(bad.body.fields?.map((f) => f.path).sort()).toEqual(
        expect.arrayContaining(['extra', 'memoryMiB', 'name', 'vcpus']),
      );
      expect(bad.body.message).toMatch(/vcpus/);

      const malformed = await n.apiRaw<ErrorBody>('POST', '/v1/vms', token, '{"name": "x", ');
      expect(malformed.status).toBe(400);
      expect(malformed.body.code).toBe('ERR_INVALID_ARGUMENT');
      expect(malformed.body.message).toMatch(/JSON/i);

      const badQuery = await n.api<ErrorBody>('GET', '/v1/vms?consistency=eventual', token);
      expect(badQuery).toMatchObject({ status: 400, body: { code: 'ERR_INVALID_ARGUMENT' } });

      for (const [method, path] of [
        ['GET', '/v1/vms/vm-doesnotexist'],
        ['POST', '/v1/vms/vm-doesnotexist/start'],
        ['DELETE', '/v1/vms/vm-doesnotexist'],
        ['GET', '/v1/nodes/node-99'],
        ['DELETE', '/v1/nodes/node-99'],
        ['GET', '/v1/no-such-route'],
      ] as const) {
        const r = await n.api<ErrorBody>(method, path, token);
        expect(r.status, `${method} ${path}`).toBe(404);
        expect(r.body.code).toBe('ERR_NOT_FOUND');
      }

      const created = await cluster.createVm(n, `conflicts-via-${n.name}`);
      expect(created.status).toBe(201);
      const id = created.body.id;
      const cas = await n.api<ErrorBody>('PATCH', `/v1/vms/${id}/labels`, token, {
        set: { owner: 'b' },
        expect: { owner: 'a' },
      });
      expect(cas.status).toBe(409);
      expect(cas.body).toMatchObject({ code: 'ERR_CONFLICT', fields: [{ path: 'expect.owner' }] });
      const tooBig = await n.api<ErrorBody>('POST', '/v1/vms', token, {
        ...vmBody(`too-big-via-${n.name}`),
        memoryMiB: 64 * 1024 * 1024,
      });
      expect(tooBig.status).toBe(409);
      expect(tooBig.body.code).toBe('ERR_CONFLICT');
    }
    for (const n of cluster.nodes) {
      const text = await (await fetch(`${n.apiUrl}/metrics`)).text();
      const answered = text.split('\n').filter((l) => l.startsWith('dwcp_api_requests_total{'));
      expect(answered.length).toBeGreaterThan(0);
      expect(answered.filter((l) => /code="5\d\d"/.test(l))).toEqual([]);
    }
  });
});

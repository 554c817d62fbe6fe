import { DomainError } from '@novacron/cluster-state';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from './testing/test-node';

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode();
});
afterAll(async () => {
  await t?.node.close();
});

const vmBody = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  image: 'debian-12',
  vcpus: 2,
  memoryMiB: 1024,
  ...extra,
});

async function createRunningVm(name: string, nodeId = 'node-1'): Promise<string> {
  const created = await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody(name, { nodeId }) });
  expect(created.status).toBe(201);
  expect((await t.call('POST', `/v1/vms/${created.body.id}/start`, { role: 'operator' })).status).toBe(200);
  return created.body.id;
}

describe('REST /v1/nodes', () => {
  it('lists and gets nodes', async () => {
    const list = await t.call('GET', '/v1/nodes', { role: 'viewer' });
    expect(list.status).toBe(200);
    expect(list.body.items.map((n: { id: string }) => n.id)).toEqual(['node-1', 'node-2']);
    const one = await t.call('GET', '/v1/nodes/node-2?consistency=local', { role: 'viewer' });
    expect(one).toMatchObject({ status: 200, body: { id: 'node-2', raftId: 2, status: 'ready' } });
  });

  it('answers 404 for an unknown node and 400 for a bad consistency', async () => {
    expect(await t.call('GET', '/v1/nodes/node-9')).toMatchObject({
      status: 404,
      body: { code: 'ERR_NOT_FOUND' },
    });
    const bad = await t.call('GET', '/v1/nodes?consistency=eventual');
    expect(bad.status).toBe(400);
    expect(bad.body.fields[0].path).toBe('consistency');
  });

  it('drain and remove need admin: 403 for an operator, and they work for an admin', async () => {
    await t.store.execute({
      type: 'node.register',
      nodeId: 'node-3',
      raftId: 3,
      name: 'node-3',
      apiUrl: 'http://127.0.0.1:7703',
      peerAddr: '127.0.0.1:7803',
      capacity: { vcpus: 4, memoryMiB: 4096 },
      labels: {},
      at: '2025-01-01T00:00:00.000Z',
    });
    const denied = await t.call('POST', '/v1/nodes/node-3/drain', { role: 'operator' });
    expect(denied).toMatchObject({ status: 403, body: { code: 'ERR_PERMISSION_DENIED' } });
    expect(denied.body.message).toContain('admin');
    expect(await t.call('POST', '/v1/nodes/node-3/drain')).toMatchObject({
      status: 200,
      body: { status: 'draining' },
    });
    expect(await t.call('DELETE', '/v1/nodes/node-3')).toMatchObject({
      status: 200,
      body: { status: 'removed' },
    });
    expect(await t.call('DELETE', '/v1/nodes/node-42')).toMatchObject({ status: 404 });
    expect(await t.call('POST', '/v1/nodes/node-3/drain')).toMatchObject({
      status: 409,
      body: { code: 'ERR_CONFLICT' },
    });
  });
});

describe('REST /v1/vms', () => {
  it('creates (placement picks the node with the most free memory), lists, gets', async () => {
    const created = await t.call('POST', '/v1/vms', {
      role: 'operator',
      body: vmBody('web-1', { labels: { app: 'web' } }),
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      name: 'web-1',
      nodeId: 'node-2',
      state: 'stopped',
      labels: { app: 'web' },
    });
    expect(created.body.id).toMatch(/^vm-[a-z0-9]+$/);
    const list = await t.call('GET', '/v1/vms', { role: 'viewer' });
    expect(list.body.items.map((v: { id: string }) => v.id)).toContain(created.body.id);
    expect(await t.call('GET', `/v1/vms/${created.body.id}`, { role: 'viewer' })).toMatchObject({
      status: 200,
      body: { id: created.body.id },
    });
  });

  it('starts, stops and deletes', async () => {
    const id = await createRunningVm('power-1');
    expect((await t.call('GET', `/v1/vms/${id}`)).body.state).toBe('running');
    expect(await t.call('POST', `/v1/vms/${id}/stop`, { role: 'operator' })).toMatchObject({
      status: 200,
      body: { state: 'stopped' },
    });
    expect(await t.call('DELETE', `/v1/vms/${id}`, { role: 'operator' })).toMatchObject({
      status: 200,
      body: { state: 'deleted' },
    });
    expect(await t.call('GET', `/v1/vms/${id}`)).toMatchObject({
      status: 404,
      body: { code: 'ERR_NOT_FOUND' },
    });
  });

  it('answers 404 for unknown VMs on every operation', async () => {
    for (const [method, path] of [
      ['GET', '/v1/vms/vm-nope'],
      ['GET', '/v1/vms/not-even-an-id'],
      ['POST', '/v1/vms/vm-nope/start'],
      ['POST', '/v1/vms/vm-nope/stop'],
      ['DELETE', '/v1/vms/vm-nope'],
    ] as const) {
      expect((await t.call(method, path, { role: 'operator' })).status, `${method} ${path}`).toBe(404);
    }
    expect(
      (await t.call('PATCH', '/v1/vms/vm-nope/labels', { role: 'operator', body: { set: {} } })).status,
    ).toBe(404);
  });

  it('answers 409 for a duplicate name and for a VM too big for any node', async () => {
    await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody('dup') });
    expect(await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody('dup') })).toMatchObject({
      status: 409,
      body: { code: 'ERR_CONFLICT', fields: [{ path: 'name' }] },
    });
    expect(
      (await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody('huge', { memoryMiB: 1_000_000 }) }))
        .status,
    ).toBe(409);
  });

  it('answers 400 with per-field messages for wrong types, missing and extra fields', async () => {
    const wrong = await t.call('POST', '/v1/vms', {
      role: 'operator',
      body: vmBody('x', { memoryMiB: '1024' }),
    });
    expect(wrong.status).toBe(400);
    expect(wrong.body).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      fields: [{ path: 'memoryMiB', message: 'Expected number, received string' }],
    });
    const missing = await t.call('POST', '/v1/vms', { role: 'operator', body: { name: 'x' } });
    expect(missing.status).toBe(400);
    expect(missing.body.fields.map((f: { path: string }) => f.path).sort()).toEqual([
      'image',
      'memoryMiB',
      'vcpus',
    ]);
    expect(missing.body.fields[0].message).toBe('Required');
    const extra = await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody('x', { colour: 'red' }) });
    expect(extra).toMatchObject({
      status: 400,
      body: { fields: [{ path: 'colour', message: 'Unrecognized key' }] },
    });
    const none = await t.call('POST', '/v1/vms', { role: 'operator' });
    expect(none).toMatchObject({ status: 400, body: { code: 'ERR_INVALID_ARGUMENT' } });
  });

  it('answers 400, not 500, for malformed JSON', async () => {
    const r = await t.call('POST', '/v1/vms', { role: 'operator', raw: '{"name": "x",' });
    expect(r).toMatchObject({ status: 400, body: { code: 'ERR_INVALID_ARGUMENT' } });
  });

  it('PATCH labels is a compare-and-set: 200 when expectations hold, 409 and no change when not', async () => {
    const id = (
      await t.call('POST', '/v1/vms', {
        role: 'operator',
        body: vmBody('labelled', { labels: { owner: 'a' } }),
      })
    ).body.id;
    const ok = await t.call('PATCH', `/v1/vms/${id}/labels`, {
      role: 'operator',
      body: { set: { owner: 'b', lock: '1' }, expect: { owner: 'a', lock: null } },
    });
    expect(ok).toMatchObject({ status: 200, body: { labels: { owner: 'b', lock: '1' } } });
    const lost = await t.call('PATCH', `/v1/vms/${id}/labels`, {
      role: 'operator',
      body: { set: { owner: 'c' }, expect: { owner: 'a' } },
    });
    expect(lost).toMatchObject({
      status: 409,
      body: { code: 'ERR_CONFLICT', fields: [{ path: 'expect.owner' }] },
    });
    const removed = await t.call('PATCH', `/v1/vms/${id}/labels`, {
      role: 'operator',
      body: { set: { lock: null } },
    });
    expect(removed.body.labels).toEqual({ owner: 'b' });
  });
});

describe('REST /v1/migrations', () => {
  it('creates, lists, gets and cancels a migration', async () => {
    const vmId = await createRunningVm('mover-1');
    const created = await t.call('POST', '/v1/migrations', {
      role: 'operator',
      body: { vmId, targetNodeId: 'node-2' },
    });
    expect(created).toMatchObject({
      status: 201,
      body: { vmId, sourceNodeId: 'node-1', targetNodeId: 'node-2', phase: 'pending' },
    });
    const id = created.body.id;
    expect(
      (await t.call('GET', '/v1/migrations', { role: 'viewer' })).body.items.map((m: { id: string }) => m.id),
    ).toContain(id);
    expect(await t.call('GET', `/v1/migrations/${id}`, { role: 'viewer' })).toMatchObject({
      status: 200,
      body: { id },
    });
    expect(await t.call('DELETE', `/v1/vms/${vmId}`, { role: 'operator' })).toMatchObject({ status: 409 });
    const cancelled = await t.call('POST', `/v1/migrations/${id}/cancel`, {
      role: 'operator',
      body: { reason: 'test' },
    });
    expect(cancelled).toMatchObject({ status: 200, body: { phase: 'cancelled', reason: 'test' } });
    expect(await t.call('POST', `/v1/migrations/${id}/cancel`, { role: 'operator' })).toMatchObject({
      status: 409,
      body: { code: 'ERR_CONFLICT' },
    });
  });

  it('answers 409 for a second active migration or the same node, 404 for unknown ids, 400 for bad bodies', async () => {
    const vmId = await createRunningVm('mover-2');
    expect(
      (await t.call('POST', '/v1/migrations', { role: 'operator', body: { vmId, targetNodeId: 'node-1' } }))
        .status,
    ).toBe(409);
    await t.call('POST', '/v1/migrations', { role: 'operator', body: { vmId, targetNodeId: 'node-2' } });
    expect(
      (await t.call('POST', '/v1/migrations', { role: 'operator', body: { vmId, targetNodeId: 'node-2' } }))
        .status,
    ).toBe(409);
    expect(
      (
        await t.call('POST', '/v1/migrations', {
          role: 'operator',
          body: { vmId: 'vm-nope', targetNodeId: 'node-2' },
        })
      ).status,
    ).toBe(404);
    expect((await t.call('GET', '/v1/migrations/mig-nope')).status).toBe(404);
    expect((await t.call('POST', '/v1/migrations/mig-nope/cancel', { role: 'operator' })).status).toBe(404);
    const bad = await t.call('POST', '/v1/migrations', { role: 'operator', body: { vmId } });
    expect(bad).toMatchObject({
      status: 400,
      body: { fields: [{ path: 'targetNodeId', message: 'Required' }] },
    });
  });
});

describe('REST /v1/migrations policy', () => {
  it('records the defaults, or what was asked, and refuses a bad policy field by field with nothing created', async () => {
    const vmId = await createRunningVm('mover-3');
    const bad = await t.call('POST', '/v1/migrations', {
      role: 'operator',
      body: { vmId, targetNodeId: 'node-2', policy: { completionTimeoutPerGiBSec: 0, autoConverge: 'yes' } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.fields.map((f: { path: string }) => f.path).sort()).toEqual([
      'policy.autoConverge',
      'policy.completionTimeoutPerGiBSec',
    ]);
    expect(
      (await t.call('GET', '/v1/migrations')).body.items.some((m: { vmId: string }) => m.vmId === vmId),
    ).toBe(false);
    const asked = await t.call('POST', '/v1/migrations', {
      role: 'operator',
      body: { vmId, targetNodeId: 'node-2', policy: { autoConverge: false } },
    });
    expect(asked).toMatchObject({
      status: 201,
      body: { policy: { autoConverge: false, completionTimeoutPerGiBSec: 150 } },
    });
    await t.call('POST', `/v1/migrations/${asked.body.id}/cancel`, { role: 'operator' });
    const defaults = await t.call('POST', '/v1/migrations', {
      role: 'operator',
      body: { vmId, targetNodeId: 'node-2' },
    });
    expect(defaults.body.policy).toEqual({ autoConverge: true, completionTimeoutPerGiBSec: 150 });
  });
});

describe('REST /v1/cluster', () => {
  it('status, members and leader', async () => {
    expect(await t.call('GET', '/v1/cluster/status', { role: 'viewer' })).toMatchObject({
      status: 200,
      body: { nodeId: 'node-1', role: 'leader', leaderRaftId: 1, voters: [1] },
    });
    expect((await t.call('GET', '/v1/cluster/members', { role: 'viewer' })).body.items).toEqual([
      expect.objectContaining({ raftId: 1, nodeId: 'node-1', role: 'voter', isLeader: true }),
    ]);
    expect(await t.call('GET', '/v1/cluster/leader', { role: 'viewer' })).toMatchObject({
      status: 200,
      body: { raftId: 1, nodeId: 'node-1', apiUrl: 'http://127.0.0.1:7701' },
    });
  });

  it('join is refused when this node admits no members', async () => {
    const body = {
      nodeName: 'n9',
      peerAddr: '127.0.0.1:9',
      apiUrl: 'http://127.0.0.1:9',
      capacity: { vcpus: 1, memoryMiB: 1 },
    };
    expect(await t.call('POST', '/v1/cluster/join', { role: null, body })).toMatchObject({ status: 401 });
    expect(await t.call('POST', '/v1/cluster/join', { token: 'Bearer join-secret', body })).toMatchObject({
      status: 403,
    });
  });
});

describe('REST /v1/tokens', () => {
  it('an admin creates a token that then authenticates, and revokes it', async () => {
    const created = await t.call('POST', '/v1/tokens', { body: { name: 'ci', role: 'viewer' } });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^dwcp_api_[A-Za-z0-9_-]{43}$/);
    expect(created.body).not.toHaveProperty('sha256', created.body.token);
    const bearer = `Bearer ${created.body.token}`;
    expect((await t.call('GET', '/v1/vms', { token: bearer })).status).toBe(200);
    expect((await t.call('POST', '/v1/vms', { token: bearer, body: vmBody('nope') })).status).toBe(403);
    expect((await t.call('DELETE', `/v1/tokens/${created.body.id}`)).status).toBe(200);
    expect((await t.call('GET', '/v1/vms', { token: bearer })).status).toBe(401);
  });
});

describe('REST auth', () => {
  it('401 without a token, with a malformed header and with an unknown token', async () => {
    for (const token of [undefined, 'Basic abc', 'Bearer nope']) {
      const r = await t.call('GET', '/v1/vms', token === undefined ? { role: null } : { token });
      expect(r, String(token)).toMatchObject({ status: 401, body: { code: 'ERR_UNAUTHENTICATED' } });
    }
  });

  it('403 naming the role for a viewer on an operator endpoint', async () => {
    const r = await t.call('POST', '/v1/vms', { role: 'viewer', body: vmBody('v') });
    expect(r).toMatchObject({ status: 403, body: { code: 'ERR_PERMISSION_DENIED' } });
    expect(r.body.message).toContain('operator');
  });
});

describe('REST plumbing', () => {
  it('unknown routes are 404 in the API error shape', async () => {
    expect(await t.call('GET', '/v2/nothing')).toMatchObject({
      status: 404,
      body: { code: 'ERR_NOT_FOUND' },
    });
  });

  it('/metrics is public and counts requests by route pattern', async () => {
    await t.call('GET', '/v1/vms/vm-nope');
    const r = await t.call('GET', '/metrics', { role: null });
    expect(r.status).toBe(200);
    expect(r.body).toContain('dwcp_api_request_duration_seconds_bucket');
    expect(r.body).toMatch(/dwcp_api_requests_total\{route="\/v1\/vms\/:id",method="GET",code="404"\} \d+/);
    expect(r.body).not.toContain('vm-nope');
    expect(r.body).toContain('process_cpu_user_seconds_total');
  });

  it('/docs serves the OpenAPI document listing the /v1 routes', async () => {
    for (const path of ['/docs', '/docs/json']) {
      const r = await t.call('GET', path, { role: null });
      expect(r.status).toBe(200);
      expect(r.body.openapi).toMatch(/^3\./);
      for (const route of [
        '/v1/vms',
        '/v1/vms/{id}/labels',
        '/v1/migrations/{id}/cancel',
        '/v1/nodes/{id}/drain',
        '/v1/cluster/leader',
      ]) {
        expect(Object.keys(r.body.paths), route).toContain(route);
      }
    }
  });

  it('health: live always, ready only with a leader; 503 otherwise, and store outages map to 503/504', async () => {
    expect((await t.call('GET', '/health/live', { role: null })).status).toBe(200);
    expect(await t.call('GET', '/health/ready', { role: null })).toMatchObject({
      status: 200,
      body: { status: 'ok' },
    });
    const unauthenticated = await t.call('GET', '/v1/vms', { role: null });
    expect(unauthenticated.status).toBe(401);
    t.store.simulateOutage(new DomainError('ERR_UNAVAILABLE', 'no leader'));
    try {
      expect((await t.call('GET', '/health/live', { role: null })).status).toBe(200);
      expect(await t.call('GET', '/health/ready', { role: null })).toMatchObject({
        status: 503,
        body: { code: 'ERR_UNAVAILABLE' },
      });
      expect(await t.call('GET', '/v1/cluster/leader')).toMatchObject({ status: 503 });
    } finally {
      t.store.simulateOutage(undefined);
    }
  });

  it('a consensus timeout is 504, and a bug of ours is 500 ERR_INTERNAL', async () => {
    t.store.simulateOutage(new DomainError('ERR_TIMEOUT', 'commit timed out'));
    try {
      expect(await t.call('POST', '/v1/vms', { role: 'operator', body: vmBody('slow') })).toMatchObject({
        status: 504,
        body: { code: 'ERR_TIMEOUT' },
      });
      t.store.simulateOutage(new TypeError('a bug') as unknown as DomainError);
      expect(await t.call('GET', '/v1/vms')).toMatchObject({
        status: 500,
        body: { code: 'ERR_INTERNAL', message: 'internal error' },
      });
    } finally {
      t.store.simulateOutage(undefined);
    }
  });
});

import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode, TOKENS } from '../testing/test-node';
import { API_GRPC_OPTIONS } from './grpc-options';

// biome-ignore lint/suspicious/noExplicitAny: messages are loaded at run time; the specs assert their shape with expect.
type Loose = any;

type Client = grpc.Client &
  Record<
    string,
    (req: unknown, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: Loose) => void) => void
  >;

let t: TestNode;
let clients: Record<'NodeService' | 'VmService' | 'MigrationService' | 'ClusterService', Client>;

beforeAll(async () => {
  t = await startTestNode();
  const pkg = grpc.loadPackageDefinition(
    loadSync([...API_GRPC_OPTIONS.protoPath], API_GRPC_OPTIONS.loader),
  ) as Loose;
  const v1 = pkg.dwcp.api.v1;
  const make = (name: string) =>
    new v1[name](`127.0.0.1:${t.node.grpcPort}`, grpc.credentials.createInsecure()) as Client;
  clients = {
    NodeService: make('NodeService'),
    VmService: make('VmService'),
    MigrationService: make('MigrationService'),
    ClusterService: make('ClusterService'),
  };
});
afterAll(async () => {
  for (const c of Object.values(clients ?? {})) c.close();
  await t?.node.close();
});

function call(
  service: keyof typeof clients,
  method: string,
  request: unknown,
  role: keyof typeof TOKENS | null = 'admin',
): Promise<
  | { ok: true; value: Loose }
  | { ok: false; code: grpc.status; details: string; dwcpCode: unknown; fields: unknown }
> {
  const md = new grpc.Metadata();
  if (role !== null) md.set('authorization', `Bearer ${TOKENS[role]}`);
  return new Promise((resolve) =>
    clients[service][method]?.(request, md, (err, value) =>
      resolve(
        err
          ? {
              ok: false,
              code: err.code,
              details: err.details,
              dwcpCode: err.metadata.get('dwcp-error-code')[0],
              fields: JSON.parse(String(err.metadata.get('dwcp-error-fields')[0] ?? 'null')),
            }
          : { ok: true, value },
      ),
    ),
  );
}

async function ok(
  service: keyof typeof clients,
  method: string,
  request: unknown,
  role: keyof typeof TOKENS = 'admin',
) {
  const r = await call(service, method, request, role);
  if (!r.ok) throw new Error(`${method}: ${r.code} ${r.details}`);
  return r.value;
}

describe('gRPC API', () => {
  it('serves nodes and cluster status', async () => {
    const nodes = await ok('NodeService', 'ListNodes', { consistency: 'CONSISTENCY_LOCAL' }, 'viewer');
    expect(nodes.items.map((n: { id: string }) => n.id)).toEqual(['node-1', 'node-2']);
    expect(await ok('NodeService', 'GetNode', { id: 'node-2' }, 'viewer')).toMatchObject({
      id: 'node-2',
      raft_id: 2,
      capacity: { vcpus: 16, memory_mib: 32_768 },
    });
    expect(await ok('ClusterService', 'GetStatus', {}, 'viewer')).toMatchObject({
      role: 'leader',
      leader_raft_id: 1,
    });
    expect(await ok('ClusterService', 'GetLeader', {}, 'viewer')).toMatchObject({
      raft_id: 1,
      node_id: 'node-1',
    });
    expect((await ok('ClusterService', 'ListMembers', {}, 'viewer')).items).toHaveLength(1);
  });

  it('runs a VM and a migration through their lifecycle', async () => {
    const vm = await ok(
      'VmService',
      'CreateVm',
      { name: 'g1', image: 'img', vcpus: 1, memory_mib: 256, node_id: 'node-1', labels: { a: '1' } },
      'operator',
    );
    expect(vm).toMatchObject({ name: 'g1', node_id: 'node-1', state: 'stopped', labels: { a: '1' } });
    expect(await ok('VmService', 'StartVm', { id: vm.id }, 'operator')).toMatchObject({ state: 'running' });
    expect((await ok('VmService', 'GetVm', { id: vm.id }, 'viewer')).state).toBe('running');
    expect((await ok('VmService', 'ListVms', {}, 'viewer')).items.length).toBeGreaterThan(0);
    const labelled = await ok(
      'VmService',
      'UpdateVmLabels',
      { id: vm.id, set: { b: '2' }, remove: ['a'], expect: { a: '1' }, expect_absent: ['b'] },
      'operator',
    );
    expect(labelled.labels).toEqual({ b: '2' });
    const m = await ok(
      'MigrationService',
      'CreateMigration',
      { vm_id: vm.id, target_node_id: 'node-2' },
      'operator',
    );
    expect(m).toMatchObject({ vm_id: vm.id, source_node_id: 'node-1', phase: 'pending' });
    expect((await ok('MigrationService', 'GetMigration', { id: m.id }, 'viewer')).phase).toBe('pending');
    expect((await ok('MigrationService', 'ListMigrations', {}, 'viewer')).items.length).toBeGreaterThan(0);
    expect(
      await ok('MigrationService', 'CancelMigration', { id: m.id, reason: 'why not' }, 'operator'),
    ).toMatchObject({
      phase: 'cancelled',
      reason: 'why not',
    });
    expect(await ok('VmService', 'StopVm', { id: vm.id }, 'operator')).toMatchObject({ state: 'stopped' });
    expect(await ok('VmService', 'DeleteVm', { id: vm.id }, 'operator')).toMatchObject({ state: 'deleted' });
    expect(await ok('NodeService', 'DrainNode', { id: 'node-2' })).toMatchObject({ status: 'draining' });
  });

  it('shows the observed status next to the desired state, once the VM’s node has reported it', async () => {
    const vm = await ok(
      'VmService',
      'CreateVm',
      { name: 'web-status', image: 'nope', vcpus: 1, memory_mib: 64, node_id: 'node-1' },
      'operator',
    );
    expect(vm.status ?? null).toBeNull();
    const started = await ok('VmService', 'StartVm', { id: vm.id }, 'operator');
    await t.store.execute({
      type: 'vm.status',
      vmId: vm.id,
      nodeId: 'node-1',
      phase: 'failed',
      reason: 'image nope is not on this node',
      observedRevision: Number(started.revision),
      at: '2026-01-01T00:00:00.000Z',
    });
    const got = await ok('VmService', 'GetVm', { id: vm.id }, 'viewer');
    expect(got.state).toBe('running');
    expect(got.status).toMatchObject({
      phase: 'failed',
      reason: 'image nope is not on this node',
      node_id: 'node-1',
      since: '2026-01-01T00:00:00.000Z',
    });
    expect(Number(got.status.observed_revision)).toBe(Number(started.revision));
    await ok('VmService', 'DeleteVm', { id: vm.id }, 'operator');
  });

  it('declares disks on CreateVm and shows them on the VM; a VM with disks is not live-migrated yet', async () => {
    const vm = await ok(
      'VmService',
      'CreateVm',
      {
        name: 'db',
        image: 'img',
        vcpus: 1,
        memory_mib: 256,
        node_id: 'node-1',
        disks: [
          { id: 'ignored', size_bytes: 2 ** 30, image: 'base' },
          { id: 'vdb', size_bytes: 2 ** 20, format: 'raw' },
        ],
      },
      'operator',
    );
    // (proto3 `optional` also gives `_image`, the loader's oneof name.)
    expect(vm.disks).toMatchObject([
      { id: 'vda', size_bytes: 2 ** 30, format: 'qcow2', image: 'base', bus: 'virtio' },
      { id: 'vdb', size_bytes: 2 ** 20, format: 'raw', bus: 'virtio' },
    ]);
    expect((await ok('VmService', 'GetVm', { id: vm.id }, 'viewer')).disks).toHaveLength(2);
    const bad = await call(
      'VmService',
      'CreateVm',
      {
        name: 'db2',
        image: 'img',
        vcpus: 1,
        memory_mib: 256,
        disks: [{ size_bytes: 2 ** 20 + 1 }],
      },
      'operator',
    );
    expect(bad).toMatchObject({
      ok: false,
      code: grpc.status.INVALID_ARGUMENT,
      fields: [{ path: 'disks.0.sizeBytes' }],
    });
    await ok('VmService', 'StartVm', { id: vm.id }, 'operator');
    expect(
      await call(
        'MigrationService',
        'CreateMigration',
        { vm_id: vm.id, target_node_id: 'node-2' },
        'operator',
      ),
    ).toMatchObject({ ok: false, code: grpc.status.FAILED_PRECONDITION, dwcpCode: 'ERR_CONFLICT' });
  });

  it('maps errors to gRPC status codes', async () => {
    expect(await call('VmService', 'GetVm', { id: 'vm-nope' }, 'viewer')).toMatchObject({
      ok: false,
      code: grpc.status.NOT_FOUND,
      dwcpCode: 'ERR_NOT_FOUND',
    });
    const invalid = await call(
      'VmService',
      'CreateVm',
      { name: 'bad', image: 'img', vcpus: 0, memory_mib: 256 },
      'operator',
    );
    expect(invalid).toMatchObject({
      ok: false,
      code: grpc.status.INVALID_ARGUMENT,
      fields: [{ path: 'vcpus' }],
    });
    await ok('VmService', 'CreateVm', { name: 'twin', image: 'img', vcpus: 1, memory_mib: 1 }, 'operator');
    expect(
      await call(
        'VmService',
        'CreateVm',
        { name: 'twin', image: 'img', vcpus: 1, memory_mib: 1 },
        'operator',
      ),
    ).toMatchObject({
      ok: false,
      code: grpc.status.FAILED_PRECONDITION,
      dwcpCode: 'ERR_CONFLICT',
    });
    expect(await call('VmService', 'ListVms', {}, null)).toMatchObject({
      ok: false,
      code: grpc.status.UNAUTHENTICATED,
    });
    const denied = await call(
      'VmService',
      'CreateVm',
      { name: 'v', image: 'img', vcpus: 1, memory_mib: 1 },
      'viewer',
    );
    expect(denied).toMatchObject({ ok: false, code: grpc.status.PERMISSION_DENIED });
    expect(denied.ok === false && denied.details).toContain('operator');
    expect(await call('NodeService', 'DrainNode', { id: 'node-1' }, 'operator')).toMatchObject({
      ok: false,
      code: grpc.status.PERMISSION_DENIED,
    });
  });

  it('maps consensus unavailability and timeouts', async () => {
    const { DomainError } = await import('@novacron/cluster-state');
    t.store.simulateOutage(new DomainError('ERR_UNAVAILABLE', 'no quorum'));
    try {
      expect(await call('VmService', 'ListVms', {}, 'viewer')).toMatchObject({
        ok: false,
        code: grpc.status.UNAVAILABLE,
      });
      t.store.simulateOutage(new DomainError('ERR_TIMEOUT', 'slow'));
      expect(await call('VmService', 'ListVms', {}, 'viewer')).toMatchObject({
        ok: false,
        code: grpc.status.DEADLINE_EXCEEDED,
      });
    } finally {
      t.store.simulateOutage(undefined);
    }
  });

  it('serves grpc.health.v1', async () => {
    const healthProto = require.resolve('grpc-health-check/proto/health/v1/health.proto');
    const proto = grpc.loadPackageDefinition(loadSync(healthProto, { enums: String })) as Loose;
    const health = new proto.grpc.health.v1.Health(
      `127.0.0.1:${t.node.grpcPort}`,
      grpc.credentials.createInsecure(),
    ) as Client;
    const check = (service: string) =>
      new Promise<string>((resolve, reject) =>
        (health as Loose).check({ service }, (e: Error | null, r: { status: string }) =>
          e ? reject(e) : resolve(String(r?.status)),
        ),
      );
    expect(await check('')).toBe('SERVING');
    expect(await check('dwcp.api.v1.VmService')).toBe('SERVING');
    health.close();
  });
});

import { describe, expect, it } from 'vitest';
import type { MigrationRecord, NodeRecord, VmRecord } from './records';
import type { ClusterCommand } from './schema';
import { ClusterStateMachine } from './state-machine';
import { AT, createVm, LogDriver, registerNode } from './testing/fixtures';

const LATER = '2025-01-01T00:05:00.000Z';
const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

/** Two ready nodes (node-1 with 16 GiB, node-2 with 32 GiB) and a running VM on node-1. */
function clusterWithRunningVm(): LogDriver {
  const log = new LogDriver();
  log.ok(registerNode('node-1', 1, { vcpus: 16, memoryMiB: 16_384 }));
  log.ok(registerNode('node-2', 2, { vcpus: 16, memoryMiB: 32_768 }));
  log.ok(createVm('vm-a', 1024, { nodeId: 'node-1' }));
  log.ok({ type: 'vm.start', vmId: 'vm-a' });
  return log;
}

function migrate(log: LogDriver, migrationId = 'mig-1', targetNodeId = 'node-2'): MigrationRecord {
  return log.ok<MigrationRecord>({
    type: 'migration.create',
    migrationId,
    vmId: 'vm-a',
    targetNodeId,
    at: AT,
  });
}

function phase(migrationId: string, to: string, extra: Record<string, unknown> = {}): unknown {
  return { type: 'migration.phase', migrationId, phase: to, at: LATER, ...extra };
}

describe('node.register', () => {
  it('adds a ready node whose revision is the log index', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    const node = log.ok<NodeRecord>(registerNode('node-2', 2, undefined, { labels: { zone: 'a' } }));
    expect(node).toMatchObject({
      id: 'node-2',
      raftId: 2,
      status: 'ready',
      labels: { zone: 'a' },
      revision: 2,
    });
    expect(node.joinedAt).toBe(AT);
    expect(log.machine.listNodes().map((n) => n.id)).toEqual(['node-1', 'node-2']);
  });

  it('updates addresses and capacity on re-registration but keeps joinedAt and status', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    log.ok({ type: 'node.drain', nodeId: 'node-1' });
    const again = log.ok<NodeRecord>(
      registerNode(
        'node-1',
        1,
        { vcpus: 8, memoryMiB: 4096 },
        { apiUrl: 'http://127.0.0.1:9000', at: LATER },
      ),
    );
    expect(again).toMatchObject({ apiUrl: 'http://127.0.0.1:9000', capacity: { vcpus: 8, memoryMiB: 4096 } });
    expect(again.joinedAt).toBe(AT);
    expect(again.status).toBe('draining');
    expect(again.revision).toBe(3);
  });

  it('refuses a raft id or a name that belongs to another node', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    expect(log.err(registerNode('node-2', 1))).toMatchObject({ code: 'ERR_CONFLICT', field: 'raftId' });
    expect(log.err(registerNode('node-2', 2, undefined, { name: 'node-1' }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'name',
    });
    expect(log.err(registerNode('node-1', 7))).toMatchObject({ code: 'ERR_CONFLICT', field: 'raftId' });
    expect(log.machine.listNodes()).toHaveLength(1);
  });

  it('refuses a removed node rejoining under its old id', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    log.ok({ type: 'node.remove', nodeId: 'node-1' });
    expect(log.err(registerNode('node-1', 1)).code).toBe('ERR_CONFLICT');
  });
});

describe('node.drain and node.remove', () => {
  it('drains a node, idempotently', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    expect(log.ok<NodeRecord>({ type: 'node.drain', nodeId: 'node-1' })).toMatchObject({
      status: 'draining',
      revision: 2,
    });
    expect(log.ok<NodeRecord>({ type: 'node.drain', nodeId: 'node-1' }).revision).toBe(2);
  });

  it('answers not found for an unknown node and conflict for draining a removed one', () => {
    const log = new LogDriver();
    expect(log.err({ type: 'node.drain', nodeId: 'node-9' }).code).toBe('ERR_NOT_FOUND');
    expect(log.err({ type: 'node.remove', nodeId: 'node-9' }).code).toBe('ERR_NOT_FOUND');
    log.ok(registerNode('node-1', 1));
    log.ok({ type: 'node.remove', nodeId: 'node-1' });
    expect(log.err({ type: 'node.drain', nodeId: 'node-1' }).code).toBe('ERR_CONFLICT');
  });

  it('removing a node fails its active migrations and leaves the VM running on the source', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    const removed = log.ok<NodeRecord>({ type: 'node.remove', nodeId: 'node-2' });
    expect(removed.status).toBe('removed');
    expect(log.machine.getMigration('mig-1')).toMatchObject({
      phase: 'failed',
      reason: 'node node-2 was removed',
    });
    expect(log.machine.getVm('vm-a')).toMatchObject({ state: 'running', nodeId: 'node-1' });
  });
});

describe('vm.create placement', () => {
  it('picks the ready node with the most free memory', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1, { vcpus: 8, memoryMiB: 8192 }));
    log.ok(registerNode('node-2', 2, { vcpus: 8, memoryMiB: 6144 }));
    expect(log.ok<VmRecord>(createVm('vm-a', 4096)).nodeId).toBe('node-1'); // 8192 vs 6144 free
    expect(log.ok<VmRecord>(createVm('vm-b', 1024)).nodeId).toBe('node-2'); // 4096 vs 6144 free
    expect(log.machine.freeCapacity('node-1')).toEqual({ vcpus: 6, memoryMiB: 4096 });
  });

  it('breaks ties by the lowest node id and skips draining and removed nodes', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-b', 2));
    log.ok(registerNode('node-a', 1));
    expect(log.ok<VmRecord>(createVm('vm-a', 1)).nodeId).toBe('node-a');
    log.ok(registerNode('node-c', 3, { vcpus: 16, memoryMiB: 65_536 }));
    log.ok(registerNode('node-d', 4, { vcpus: 16, memoryMiB: 65_536 }));
    log.ok({ type: 'node.drain', nodeId: 'node-c' });
    log.ok({ type: 'node.remove', nodeId: 'node-d' });
    expect(log.ok<VmRecord>(createVm('vm-b', 1)).nodeId).toBe('node-b');
  });

  it('answers conflict when no node fits, in memory or in vCPUs', () => {
    const log = new LogDriver();
    expect(log.err(createVm('vm-a', 1))).toMatchObject({ code: 'ERR_CONFLICT', field: 'memoryMiB' });
    log.ok(registerNode('node-1', 1, { vcpus: 4, memoryMiB: 2048 }));
    expect(log.err(createVm('vm-a', 4096)).code).toBe('ERR_CONFLICT');
    expect(log.err(createVm('vm-a', 1024, { vcpus: 8 })).code).toBe('ERR_CONFLICT');
    log.ok(createVm('vm-a', 2048));
    expect(log.err(createVm('vm-b', 1)).code).toBe('ERR_CONFLICT');
    expect(log.machine.listVms().map((v) => v.id)).toEqual(['vm-a']);
  });

  it('honours an explicit node, and refuses an unknown, draining or too small one', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1, { vcpus: 8, memoryMiB: 2048 }));
    log.ok(registerNode('node-2', 2, { vcpus: 8, memoryMiB: 65_536 }));
    log.ok(registerNode('node-3', 3));
    log.ok({ type: 'node.drain', nodeId: 'node-3' });
    expect(log.ok<VmRecord>(createVm('vm-a', 1024, { nodeId: 'node-1' })).nodeId).toBe('node-1');
    expect(log.err(createVm('vm-b', 1024, { nodeId: 'node-9' }))).toMatchObject({
      code: 'ERR_NOT_FOUND',
      field: 'nodeId',
    });
    expect(log.err(createVm('vm-b', 1024, { nodeId: 'node-3' }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'nodeId',
    });
    expect(log.err(createVm('vm-b', 2048, { nodeId: 'node-1' }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'nodeId',
    });
  });

  it('refuses a duplicate id or name', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    log.ok(createVm('vm-a', 1, { name: 'web' }));
    expect(log.err(createVm('vm-a', 1, { name: 'db' }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'vmId',
    });
    expect(log.err(createVm('vm-b', 1, { name: 'web' }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'name',
    });
  });

  it('creates a stopped VM with its labels and the proposer-given time', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    const vm = log.ok<VmRecord>(createVm('vm-a', 512, { labels: { app: 'web' } }));
    expect(vm).toEqual({
      id: 'vm-a',
      name: 'vm-a',
      image: 'debian-12',
      vcpus: 2,
      memoryMiB: 512,
      nodeId: 'node-1',
      state: 'stopped',
      labels: { app: 'web' },
      createdAt: AT,
      revision: 2,
    });
  });
});

describe('vm.start, vm.stop, vm.delete', () => {
  it('starts and stops, idempotently', () => {
    const log = clusterWithRunningVm();
    expect(log.machine.getVm('vm-a')?.state).toBe('running');
    const rev = log.machine.getVm('vm-a')?.revision;
    expect(log.ok<VmRecord>({ type: 'vm.start', vmId: 'vm-a' }).revision).toBe(rev);
    expect(log.ok<VmRecord>({ type: 'vm.stop', vmId: 'vm-a' })).toMatchObject({
      state: 'stopped',
      revision: 6,
    });
    expect(log.ok<VmRecord>({ type: 'vm.stop', vmId: 'vm-a' }).revision).toBe(6);
  });

  it('answers not found for an unknown VM', () => {
    const log = new LogDriver();
    for (const type of ['vm.start', 'vm.stop', 'vm.delete']) {
      expect(log.err({ type, vmId: 'vm-zz' }).code).toBe('ERR_NOT_FOUND');
    }
    expect(log.err({ type: 'vm.labels', vmId: 'vm-zz', set: {} }).code).toBe('ERR_NOT_FOUND');
  });

  it('refuses start, stop and delete while the VM migrates', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    expect(log.err({ type: 'vm.stop', vmId: 'vm-a' }).code).toBe('ERR_CONFLICT');
    expect(log.err({ type: 'vm.start', vmId: 'vm-a' }).code).toBe('ERR_CONFLICT');
    expect(log.err({ type: 'vm.delete', vmId: 'vm-a' })).toMatchObject({
      code: 'ERR_CONFLICT',
      message: expect.stringContaining('mig-1'),
    });
    expect(log.machine.getVm('vm-a')?.state).toBe('migrating');
  });

  it('refuses to start a VM whose node was removed', () => {
    const log = clusterWithRunningVm();
    log.ok({ type: 'vm.stop', vmId: 'vm-a' });
    log.ok({ type: 'node.remove', nodeId: 'node-1' });
    expect(log.err({ type: 'vm.start', vmId: 'vm-a' }).code).toBe('ERR_CONFLICT');
  });

  it('deletes a VM: it leaves the state and frees its memory', () => {
    const log = clusterWithRunningVm();
    const deleted = log.ok<VmRecord>({ type: 'vm.delete', vmId: 'vm-a' });
    expect(deleted).toMatchObject({ id: 'vm-a', state: 'deleted', revision: 5 });
    expect(log.machine.getVm('vm-a')).toBeUndefined();
    expect(log.machine.freeCapacity('node-1')?.memoryMiB).toBe(16_384);
    expect(log.err({ type: 'vm.delete', vmId: 'vm-a' }).code).toBe('ERR_NOT_FOUND');
  });
});

describe('vm.labels compare-and-set', () => {
  function withLabels(labels: Record<string, string>): LogDriver {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    log.ok(createVm('vm-a', 1, { labels }));
    return log;
  }

  it('sets and deletes labels', () => {
    const log = withLabels({ a: '1', b: '2' });
    const vm = log.ok<VmRecord>({ type: 'vm.labels', vmId: 'vm-a', set: { a: null, c: '3' } });
    expect(vm.labels).toEqual({ b: '2', c: '3' });
    expect(vm.revision).toBe(3);
  });

  it('applies when every expectation holds, including absence', () => {
    const log = withLabels({ owner: 'alice' });
    const vm = log.ok<VmRecord>({
      type: 'vm.labels',
      vmId: 'vm-a',
      set: { owner: 'bob', lock: 'x' },
      expect: { owner: 'alice', lock: null },
    });
    expect(vm.labels).toEqual({ owner: 'bob', lock: 'x' });
  });

  it('changes nothing when any expectation fails', () => {
    const log = withLabels({ owner: 'alice' });
    const before = log.machine.getVm('vm-a');
    expect(
      log.err({ type: 'vm.labels', vmId: 'vm-a', set: { owner: 'carol' }, expect: { owner: 'bob' } }),
    ).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'expect.owner',
      message: expect.stringContaining('"alice"'),
    });
    expect(
      log.err({ type: 'vm.labels', vmId: 'vm-a', set: { x: '1' }, expect: { x: null, owner: null } }),
    ).toMatchObject({ code: 'ERR_CONFLICT', field: 'expect.owner' });
    expect(
      log.err({ type: 'vm.labels', vmId: 'vm-a', set: { x: '1' }, expect: { gone: 'v' } }).message,
    ).toContain('absent');
    expect(log.machine.getVm('vm-a')).toBe(before);
  });

  it('rejects invalid label keys as invalid arguments', () => {
    const log = withLabels({});
    expect(log.err({ type: 'vm.labels', vmId: 'vm-a', set: { 'bad key!': '1' } }).code).toBe(
      'ERR_INVALID_ARGUMENT',
    );
  });
});

describe('VM disks', () => {
  const disk = (extra: Record<string, unknown> = {}) => ({ sizeBytes: 2 ** 30, ...extra });

  it('records declared disks in order with their defaults; a VM without disks has no disks field', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    const vm = log.ok<VmRecord>(
      createVm('vm-a', 512, {
        disks: [disk({ image: 'debian-base' }), disk({ format: 'raw' })],
      }),
    );
    expect(vm.disks).toEqual([
      { id: 'vda', sizeBytes: 2 ** 30, format: 'qcow2', image: 'debian-base', bus: 'virtio' },
      { id: 'vdb', sizeBytes: 2 ** 30, format: 'raw', bus: 'virtio' },
    ]);
    expect('disks' in log.ok<VmRecord>(createVm('vm-b'))).toBe(false);
    // The snapshot carries them, and a replica restored from it holds the same records.
    const copy = new ClusterStateMachine();
    copy.restore(log.machine.snapshot());
    expect(copy.getVm('vm-a')).toEqual(vm);
  });

  it.each([
    [[disk({ sizeBytes: 2 ** 20 + 1 })], 'disks.0.sizeBytes'],
    [[disk({ sizeBytes: 0 })], 'disks.0.sizeBytes'],
    [[disk({ id: 'vda' })], 'disks.0'],
    [[disk({ format: 'vmdk' })], 'disks.0.format'],
    [Array.from({ length: 9 }, () => disk()), 'disks'],
    [[disk({ bus: 'ide' })], 'disks.0.bus'],
  ])('refuses a bad disk list, naming the field (%#), and creates nothing', (disks, field) => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    expect(log.err(createVm('vm-a', 512, { disks: disks as never }))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      field,
    });
    expect(log.machine.listVms()).toEqual([]);
  });

  it('refuses to live-migrate a VM with disks (they would stay behind) and changes nothing', () => {
    const log = new LogDriver();
    log.ok(registerNode('node-1', 1));
    log.ok(registerNode('node-2', 2));
    log.ok(createVm('vm-a', 512, { nodeId: 'node-1', disks: [disk()] }));
    log.ok({ type: 'vm.start', vmId: 'vm-a' });
    const error = log.err({
      type: 'migration.create',
      migrationId: 'mig-1',
      vmId: 'vm-a',
      targetNodeId: 'node-2',
      at: AT,
    });
    expect(error).toMatchObject({ code: 'ERR_CONFLICT', field: 'vmId' });
    expect(error.message).toContain('has 1 disk(s)');
    expect(log.machine.getVm('vm-a')?.state).toBe('running');
    expect(log.machine.listMigrations()).toEqual([]);
  });
});

describe('vm.status (observed state)', () => {
  const report = (extra: Record<string, unknown> = {}) => ({
    type: 'vm.status',
    vmId: 'vm-a',
    nodeId: 'node-1',
    phase: 'failed',
    reason: 'image nope is not on this node',
    observedRevision: 4,
    at: LATER,
    ...extra,
  });

  it('keeps the report of the VM’s node next to the desired state, bumping the revision', () => {
    const log = clusterWithRunningVm();
    const vm = log.ok<VmRecord>(report());
    expect(vm.state).toBe('running');
    expect(vm.status).toEqual({
      phase: 'failed',
      reason: 'image nope is not on this node',
      nodeId: 'node-1',
      since: LATER,
      observedRevision: 4,
    });
    expect(vm.revision).toBe(5);
    const running = log.ok<VmRecord>(
      report({ phase: 'running', reason: undefined, pid: 4242, observedRevision: 5, at: AT }),
    );
    expect(running.status).toEqual({
      phase: 'running',
      pid: 4242,
      nodeId: 'node-1',
      since: AT,
      observedRevision: 5,
    });
  });

  it('accepts a report that changes nothing without changing the record (since stays)', () => {
    const log = clusterWithRunningVm();
    const first = log.ok<VmRecord>(report());
    const again = log.ok<VmRecord>(report({ observedRevision: 5, at: AT }));
    expect(again).toBe(first);
    expect(log.machine.getVm('vm-a')?.status?.since).toBe(LATER);
  });

  it('refuses a report from a node that does not host the VM, and changes nothing', () => {
    const log = clusterWithRunningVm();
    expect(log.err(report({ nodeId: 'node-2' }))).toMatchObject({ code: 'ERR_CONFLICT', field: 'nodeId' });
    expect(log.machine.getVm('vm-a')?.status).toBeUndefined();
    expect(log.machine.getVm('vm-a')?.revision).toBe(4);
  });

  it('refuses a report older than the status kept, or of a revision not yet applied', () => {
    const log = clusterWithRunningVm();
    log.ok(report({ phase: 'running', reason: undefined, pid: 7, observedRevision: 4 }));
    const stale = log.err(report({ observedRevision: 3 }));
    expect(stale).toMatchObject({ code: 'ERR_CONFLICT', field: 'observedRevision' });
    expect(log.err(report({ observedRevision: 99 }))).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'observedRevision',
    });
    expect(log.machine.getVm('vm-a')?.status).toMatchObject({ phase: 'running', pid: 7 });
    expect(log.err(report({ vmId: 'vm-zz' }))).toMatchObject({ code: 'ERR_NOT_FOUND' });
    expect(log.err(report({ phase: 'exploded' }))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      field: 'phase',
    });
  });

  it('drops the source’s status when a migration moves the VM, and then takes the target’s only', () => {
    const log = clusterWithRunningVm();
    log.ok(report({ phase: 'running', reason: undefined, pid: 7 }));
    migrate(log);
    for (const to of ['preparing', 'transferring', 'switching-over', 'done']) log.ok(phase('mig-1', to));
    const moved = log.machine.getVm('vm-a') as VmRecord;
    expect(moved.nodeId).toBe('node-2');
    expect(moved.status).toBeUndefined();
    expect(
      log.err(report({ phase: 'stopped', reason: undefined, observedRevision: moved.revision })),
    ).toMatchObject({
      code: 'ERR_CONFLICT',
      field: 'nodeId',
    });
    const target = log.ok<VmRecord>(
      report({
        nodeId: 'node-2',
        phase: 'running',
        reason: undefined,
        pid: 9,
        observedRevision: moved.revision,
      }),
    );
    expect(target.status).toMatchObject({ nodeId: 'node-2', pid: 9 });
  });

  it('keeps the source’s status when a migration fails and the VM stays', () => {
    const log = clusterWithRunningVm();
    log.ok(report({ phase: 'running', reason: undefined, pid: 7 }));
    migrate(log);
    log.ok(phase('mig-1', 'failed', { reason: 'link cut' }));
    expect(log.machine.getVm('vm-a')?.status).toMatchObject({ nodeId: 'node-1', phase: 'running', pid: 7 });
  });

  it('round-trips through a snapshot, and an old snapshot without status still restores', () => {
    const log = clusterWithRunningVm();
    const vm = log.ok<VmRecord>(report());
    const copy = new ClusterStateMachine();
    copy.restore(log.machine.snapshot());
    expect(copy.getVm('vm-a')).toEqual(vm);

    const old = JSON.parse(new TextDecoder().decode(log.machine.snapshot()));
    for (const v of old.vms) delete v.status;
    const fromOld = new ClusterStateMachine();
    fromOld.restore(new TextEncoder().encode(JSON.stringify(old)));
    expect(fromOld.getVm('vm-a')?.status).toBeUndefined();
    expect(fromOld.getVm('vm-a')?.state).toBe('running');
    // A report after the restore is judged against the restored record alone.
    fromOld.apply(report({ observedRevision: 5 }), 6);
    expect(fromOld.getVm('vm-a')?.status?.phase).toBe('failed');
  });
});

describe('migration.create', () => {
  it('creates a pending migration, marks the VM migrating and reserves memory on the target', () => {
    const log = clusterWithRunningVm();
    const m = migrate(log);
    expect(m).toMatchObject({
      id: 'mig-1',
      vmId: 'vm-a',
      sourceNodeId: 'node-1',
      targetNodeId: 'node-2',
      phase: 'pending',
      stats: {},
      revision: 5,
    });
    expect(log.machine.getVm('vm-a')).toMatchObject({ state: 'migrating', revision: 5 });
    expect(log.machine.freeCapacity('node-2')?.memoryMiB).toBe(32_768 - 1024);
    expect(log.machine.activeMigrationOf('vm-a')?.id).toBe('mig-1');
  });

  it('answers not found for an unknown VM or target node', () => {
    const log = clusterWithRunningVm();
    const base = { type: 'migration.create', migrationId: 'mig-1', at: AT };
    expect(log.err({ ...base, vmId: 'vm-zz', targetNodeId: 'node-2' })).toMatchObject({
      code: 'ERR_NOT_FOUND',
      field: 'vmId',
    });
    expect(log.err({ ...base, vmId: 'vm-a', targetNodeId: 'node-9' })).toMatchObject({
      code: 'ERR_NOT_FOUND',
      field: 'targetNodeId',
    });
  });

  it('refuses a second active migration, the same node, a draining target, a stopped VM, a full target', () => {
    const log = clusterWithRunningVm();
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-1',
        vmId: 'vm-a',
        targetNodeId: 'node-1',
        at: AT,
      }),
    ).toMatchObject({ code: 'ERR_CONFLICT', field: 'targetNodeId' });
    log.ok(registerNode('node-3', 3));
    log.ok({ type: 'node.drain', nodeId: 'node-3' });
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-1',
        vmId: 'vm-a',
        targetNodeId: 'node-3',
        at: AT,
      }).message,
    ).toContain('draining');
    log.ok(registerNode('node-4', 4, { vcpus: 16, memoryMiB: 512 }));
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-1',
        vmId: 'vm-a',
        targetNodeId: 'node-4',
        at: AT,
      }).code,
    ).toBe('ERR_CONFLICT');
    migrate(log);
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-2',
        vmId: 'vm-a',
        targetNodeId: 'node-2',
        at: AT,
      }),
    ).toMatchObject({ code: 'ERR_CONFLICT', message: expect.stringContaining('active migration') });
    log.ok({ type: 'migration.cancel', migrationId: 'mig-1', at: LATER });
    log.ok({ type: 'vm.stop', vmId: 'vm-a' });
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-2',
        vmId: 'vm-a',
        targetNodeId: 'node-2',
        at: AT,
      }).message,
    ).toContain('stopped');
    expect(
      log.err({
        type: 'migration.create',
        migrationId: 'mig-1',
        vmId: 'vm-a',
        targetNodeId: 'node-2',
        at: AT,
      }).message,
    ).toContain('already exists');
  });
});

describe('migration.phase', () => {
  it('keeps the path the source last reported, through the end', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    const path = {
      measuredBytesPerSec: 12_000_000,
      measuredRttMs: 101.5,
      predictedBytesPerSec: 11_500_000,
      lowerBytesPerSec: 9_000_000,
      samples: 3,
      streams: 4,
      zstdLevel: 3,
      maxBandwidthBytesPerSec: 30_000_000,
      downtimeLimitMs: 500,
      basis: 'measured',
    };
    log.ok(phase('mig-1', 'preparing'));
    expect(log.ok<MigrationRecord>(phase('mig-1', 'transferring', { path })).path).toEqual(path);
    expect(log.ok<MigrationRecord>(phase('mig-1', 'transferring')).path).toEqual(path);
    const later = { ...path, samples: 4, maxBandwidthBytesPerSec: 20_000_000 };
    log.ok(phase('mig-1', 'switching-over', { path: later }));
    expect(log.ok<MigrationRecord>(phase('mig-1', 'done')).path).toEqual(later);
  });

  it('refuses a malformed path and changes nothing', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    const bad = {
      samples: -1,
      streams: 0,
      zstdLevel: 1,
      maxBandwidthBytesPerSec: 1,
      downtimeLimitMs: 1,
      basis: '',
    };
    expect(log.err(phase('mig-1', 'preparing', { path: bad }))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    expect(log.machine.getMigration('mig-1')?.phase).toBe('pending');
    expect(log.machine.getMigration('mig-1')?.path).toBeUndefined();
  });

  it('walks every phase to done; the VM ends running on the target; stats merge', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    log.ok(phase('mig-1', 'preparing'));
    log.ok(phase('mig-1', 'transferring', { stats: { bytesIn: 100 } }));
    log.ok(phase('mig-1', 'transferring', { stats: { bytesOnWire: 40, dedupRatio: 2.5 } }));
    log.ok(phase('mig-1', 'switching-over'));
    const done = log.ok<MigrationRecord>(phase('mig-1', 'done', { stats: { downtimeMs: 12, totalMs: 900 } }));
    expect(done).toMatchObject({
      phase: 'done',
      updatedAt: LATER,
      stats: { bytesIn: 100, bytesOnWire: 40, dedupRatio: 2.5, downtimeMs: 12, totalMs: 900 },
    });
    expect(log.machine.getVm('vm-a')).toMatchObject({ nodeId: 'node-2', state: 'running' });
    expect(log.machine.freeCapacity('node-1')?.memoryMiB).toBe(16_384);
    expect(log.machine.freeCapacity('node-2')?.memoryMiB).toBe(32_768 - 1024);
    expect(log.machine.activeMigrationOf('vm-a')).toBeUndefined();
  });

  it('rejects illegal transitions with conflict and changes nothing', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    for (const to of ['transferring', 'switching-over', 'done', 'cancelled']) {
      expect(log.err(phase('mig-1', to))).toMatchObject({ code: 'ERR_CONFLICT', field: 'phase' });
    }
    log.ok(phase('mig-1', 'preparing'));
    expect(log.err(phase('mig-1', 'pending')).code).toBe('ERR_CONFLICT');
    expect(log.machine.getMigration('mig-1')?.phase).toBe('preparing');
  });

  it('a failed migration leaves the VM running on its source, and a terminal phase is final', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    log.ok(phase('mig-1', 'preparing'));
    const failed = log.ok<MigrationRecord>(phase('mig-1', 'failed', { reason: 'target QEMU exited' }));
    expect(failed).toMatchObject({ phase: 'failed', reason: 'target QEMU exited' });
    expect(log.machine.getVm('vm-a')).toMatchObject({ nodeId: 'node-1', state: 'running' });
    for (const to of ['failed', 'preparing', 'done'])
      expect(log.err(phase('mig-1', to)).code).toBe('ERR_CONFLICT');
  });

  it('answers not found for an unknown migration and invalid argument for an unknown phase', () => {
    const log = clusterWithRunningVm();
    expect(log.err(phase('mig-9', 'preparing')).code).toBe('ERR_NOT_FOUND');
    migrate(log);
    expect(log.err(phase('mig-1', 'teleporting'))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      field: 'phase',
    });
  });
});

describe('migration.cancel', () => {
  it('cancels a pending or transferring migration; the VM stays on its source', () => {
    const log = clusterWithRunningVm();
    migrate(log);
    log.ok(phase('mig-1', 'preparing'));
    log.ok(phase('mig-1', 'transferring'));
    const m = log.ok<MigrationRecord>({
      type: 'migration.cancel',
      migrationId: 'mig-1',
      reason: 'operator',
      at: LATER,
    });
    expect(m).toMatchObject({ phase: 'cancelled', reason: 'operator' });
    expect(log.machine.getVm('vm-a')).toMatchObject({ nodeId: 'node-1', state: 'running' });
  });

  it('refuses to cancel a terminal or switching-over migration, and an unknown one is not found', () => {
    const log = clusterWithRunningVm();
    expect(log.err({ type: 'migration.cancel', migrationId: 'mig-1', at: LATER }).code).toBe('ERR_NOT_FOUND');
    migrate(log);
    for (const to of ['preparing', 'transferring', 'switching-over']) log.ok(phase('mig-1', to));
    expect(log.err({ type: 'migration.cancel', migrationId: 'mig-1', at: LATER }).message).toContain(
      'no longer be cancelled',
    );
    log.ok(phase('mig-1', 'done'));
    expect(log.err({ type: 'migration.cancel', migrationId: 'mig-1', at: LATER }).message).toContain(
      'already done',
    );
  });
});

describe('tokens', () => {
  it('adds, finds by hash and revokes', () => {
    const log = new LogDriver();
    log.ok({ type: 'token.add', tokenId: 'tok-1', name: 'ci', role: 'operator', sha256: SHA_A, at: AT });
    expect(log.machine.findTokenBySha256(SHA_A)).toMatchObject({
      id: 'tok-1',
      role: 'operator',
      revision: 1,
    });
    expect(log.machine.findTokenBySha256(SHA_B)).toBeUndefined();
    log.ok({ type: 'token.revoke', tokenId: 'tok-1' });
    expect(log.machine.findTokenBySha256(SHA_A)).toBeUndefined();
    expect(log.err({ type: 'token.revoke', tokenId: 'tok-1' }).code).toBe('ERR_NOT_FOUND');
  });

  it('never revokes the last admin token, and revokes an admin token once another exists', () => {
    const log = new LogDriver();
    const admin = (tokenId: string, sha256: string) =>
      ({ type: 'token.add', tokenId, name: tokenId, role: 'admin', sha256, at: AT }) as const;
    log.ok(admin('tok-admin', SHA_A));
    log.ok({ type: 'token.add', tokenId: 'tok-op', name: 'op', role: 'operator', sha256: SHA_B, at: AT });
    expect(log.err({ type: 'token.revoke', tokenId: 'tok-admin' })).toMatchObject({
      code: 'ERR_CONFLICT',
      message: expect.stringContaining('last admin token'),
    });
    expect(log.machine.findTokenBySha256(SHA_A)?.id).toBe('tok-admin');
    log.ok(admin('tok-admin-2', 'c'.repeat(64)));
    log.ok({ type: 'token.revoke', tokenId: 'tok-admin' });
    expect(log.err({ type: 'token.revoke', tokenId: 'tok-admin-2' }).code).toBe('ERR_CONFLICT');
  });

  it('refuses a duplicate id or hash, a bad hash and a bad role', () => {
    const log = new LogDriver();
    const add = (tokenId: string, sha256: string, role = 'viewer') => ({
      type: 'token.add',
      tokenId,
      name: 'x',
      role,
      sha256,
      at: AT,
    });
    log.ok(add('tok-1', SHA_A));
    expect(log.err(add('tok-1', SHA_B))).toMatchObject({ code: 'ERR_CONFLICT', field: 'tokenId' });
    expect(log.err(add('tok-2', SHA_A))).toMatchObject({ code: 'ERR_CONFLICT', field: 'sha256' });
    expect(log.err(add('tok-2', 'A'.repeat(64)))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      field: 'sha256',
    });
    expect(log.err(add('tok-2', SHA_B, 'root'))).toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      field: 'role',
    });
  });
});

describe('apply', () => {
  it('rejects malformed entries as invalid arguments instead of throwing', () => {
    const log = new LogDriver();
    for (const junk of [null, 42, 'vm.create', {}, { type: 'vm.explode' }, { type: 'vm.start' }]) {
      expect(log.err(junk).code).toBe('ERR_INVALID_ARGUMENT');
    }
    expect(log.err({ ...createVm('vm-a'), memoryMiB: '1024' })).toEqual({
      code: 'ERR_INVALID_ARGUMENT',
      message: 'memoryMiB: Expected number, received string',
      field: 'memoryMiB',
    });
    expect(log.err({ ...createVm('vm-a'), extra: true }).code).toBe('ERR_INVALID_ARGUMENT');
  });

  it('counts a rejected entry as applied and changes nothing else', () => {
    const log = clusterWithRunningVm();
    const before = new TextDecoder().decode(log.machine.snapshot()).replace(/"appliedIndex":\d+/, '');
    log.err({ type: 'vm.delete', vmId: 'vm-zz' });
    expect(log.machine.appliedIndex).toBe(5);
    const after = new TextDecoder().decode(log.machine.snapshot()).replace(/"appliedIndex":\d+/, '');
    expect(after).toBe(before);
  });

  it('throws when the log order is broken', () => {
    const machine = new ClusterStateMachine();
    machine.apply(registerNode('node-1', 1), 3);
    expect(() => machine.apply(registerNode('node-2', 2), 3)).toThrow(RangeError);
    expect(() => machine.apply(registerNode('node-2', 2), 2)).toThrow(RangeError);
    machine.advanceTo(10);
    expect(machine.appliedIndex).toBe(10);
  });

  it('hands out frozen records', () => {
    const log = clusterWithRunningVm();
    const vm = log.machine.getVm('vm-a') as VmRecord;
    expect(() => {
      vm.state = 'stopped';
    }).toThrow(TypeError);
    expect(() => {
      vm.labels.x = '1';
    }).toThrow(TypeError);
  });
});

/** A deterministic pseudo-random log over a small id space, so that both successes and rejections occur. */
function randomLog(seed: number, length: number): ClusterCommand[] {
  let s = seed >>> 0;
  const rand = (n: number) => {
    s = (Math.imul(s, 1_664_525) + 1_013_904_223) >>> 0;
    return s % n;
  };
  const vm = () => `vm-${rand(6)}`;
  const node = () => `node-${rand(4) + 1}`;
  const mig = () => `mig-${rand(5)}`;
  const phases = ['preparing', 'transferring', 'switching-over', 'done', 'failed'] as const;
  const out: ClusterCommand[] = [];
  for (let i = 0; i < length; i++) {
    const r = rand(10);
    if (r === 0) {
      const id = node();
      out.push(registerNode(id, Number(id.slice(5)), { vcpus: 8, memoryMiB: 1024 * (1 + rand(8)) }));
    } else if (r === 1) out.push(createVm(vm(), 256 * (1 + rand(8))));
    else if (r === 2) out.push({ type: rand(2) ? 'vm.start' : 'vm.stop', vmId: vm() });
    else if (r === 3)
      out.push({ type: 'vm.labels', vmId: vm(), set: { k: String(rand(3)) }, expect: { k: null } });
    else if (r === 4)
      out.push({ type: 'migration.create', migrationId: mig(), vmId: vm(), targetNodeId: node(), at: AT });
    else if (r === 5 || r === 6) {
      out.push({
        type: 'migration.phase',
        migrationId: mig(),
        phase: phases[rand(5)] ?? 'failed',
        at: LATER,
      });
    } else if (r === 7) out.push({ type: 'migration.cancel', migrationId: mig(), at: LATER });
    else if (r === 8) out.push({ type: 'vm.delete', vmId: vm() });
    else out.push({ type: rand(4) === 0 ? 'node.remove' : 'node.drain', nodeId: node() });
  }
  return out;
}

describe('determinism and snapshots', () => {
  const log = randomLog(42, 600);

  function replay(commands: ClusterCommand[], machine = new ClusterStateMachine(), from = 0) {
    const outcomes = commands.map((c, i) => machine.apply(c, from + i + 1));
    return { machine, outcomes };
  }

  it('the same log gives the same state and the same outcomes', () => {
    const a = replay(log);
    const b = replay(log);
    expect(a.outcomes.filter((o) => o.ok).length).toBeGreaterThan(50);
    expect(a.outcomes.filter((o) => !o.ok).length).toBeGreaterThan(50);
    expect(b.outcomes).toEqual(a.outcomes);
    expect(Buffer.from(b.machine.snapshot()).equals(Buffer.from(a.machine.snapshot()))).toBe(true);
  });

  it('a different log gives a different state (the comparison can fail)', () => {
    const a = replay(log);
    const c = replay(randomLog(43, 600));
    expect(Buffer.from(c.machine.snapshot()).equals(Buffer.from(a.machine.snapshot()))).toBe(false);
  });

  it('restore(snapshot) reproduces the state, and replay continues identically from it', () => {
    const whole = replay(log).machine;
    const first = replay(log.slice(0, 300)).machine;
    const restored = new ClusterStateMachine();
    restored.restore(first.snapshot());
    expect(restored.appliedIndex).toBe(300);
    expect(restored.listNodes()).toEqual(first.listNodes());
    expect(restored.listVms()).toEqual(first.listVms());
    expect(restored.listMigrations()).toEqual(first.listMigrations());
    expect(Buffer.from(restored.snapshot()).equals(Buffer.from(first.snapshot()))).toBe(true);
    replay(log.slice(300), restored, 300);
    expect(Buffer.from(restored.snapshot()).equals(Buffer.from(whole.snapshot()))).toBe(true);
  });

  it('restore replaces whatever state was there and round-trips tokens', () => {
    const src = new LogDriver();
    src.ok({ type: 'token.add', tokenId: 'tok-1', name: 'ci', role: 'admin', sha256: SHA_A, at: AT });
    const dst = clusterWithRunningVm();
    dst.machine.restore(src.machine.snapshot());
    expect(dst.machine.listVms()).toEqual([]);
    expect(dst.machine.listNodes()).toEqual([]);
    expect(dst.machine.findTokenBySha256(SHA_A)?.id).toBe('tok-1');
  });

  it('refuses bytes that are not a snapshot', () => {
    const machine = new ClusterStateMachine();
    expect(() => machine.restore(new TextEncoder().encode('{"format":"other"}'))).toThrow(
      /not a dwcp-cluster-state/,
    );
    expect(() =>
      machine.restore(
        new TextEncoder().encode('{"format":"dwcp-cluster-state","version":1,"appliedIndex":1}'),
      ),
    ).toThrow(/missing/);
    expect(() => machine.restore(new Uint8Array([0xff]))).toThrow();
  });
});

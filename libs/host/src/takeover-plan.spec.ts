import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { describe, expect, it } from 'vitest';
import { planTakeover } from './takeover-plan';

const vm = (id: string, nodeId: string, state: VmRecord['state'] = 'running'): VmRecord => ({
  id,
  name: id,
  image: 'test-guest',
  vcpus: 1,
  memoryMiB: 128,
  nodeId,
  state,
  labels: {},
  createdAt: '2025-01-01T00:00:00.000Z',
  revision: 1,
});

const migration = (
  id: string,
  vmId: string,
  from: string,
  to: string,
  phase: MigrationRecord['phase'],
): MigrationRecord => ({
  id,
  vmId,
  sourceNodeId: from,
  targetNodeId: to,
  phase,
  stats: {},
  createdAt: '2025-01-01T00:00:00.000Z',
  updatedAt: '2025-01-01T00:00:00.000Z',
  revision: 1,
});

describe('planTakeover', () => {
  it('takes over a VM recorded as running or migrating here, under its own name or a migration name', () => {
    const vms = [vm('vm-a', 'n1'), vm('vm-b', 'n1', 'migrating'), vm('vm-c', 'n1')];
    expect(planTakeover(['vm-a', 'vm-b', 'vm-c.mig-1'], vms, 'n1')).toEqual([
      { name: 'vm-a', vmId: 'vm-a', action: 'adopt' },
      { name: 'vm-b', vmId: 'vm-b', action: 'adopt' },
      { name: 'vm-c.mig-1', vmId: 'vm-c', action: 'adopt' },
    ]);
  });

  it('stops a VM the records place elsewhere, have stopped, or do not know, and a second copy', () => {
    const vms = [
      vm('vm-a', 'n2'),
      vm('vm-b', 'n2', 'migrating'),
      vm('vm-c', 'n1', 'stopped'),
      vm('vm-d', 'n1'),
    ];
    const plan = planTakeover(['vm-a', 'vm-b.mig-9', 'vm-c', 'vm-d', 'vm-d.mig-2', 'vm-gone'], vms, 'n1');
    expect(plan.map((s) => [s.name, s.action, s.action === 'stop' ? s.why : ''])).toEqual([
      ['vm-a', 'stop', 'the VM is placed on n2'],
      // The destination of a migration the restart cut short: the VM still runs on its source.
      ['vm-b.mig-9', 'stop', 'the VM is placed on n2'],
      ['vm-c', 'stop', 'the VM is recorded as stopped'],
      ['vm-d', 'adopt', ''],
      ['vm-d.mig-2', 'stop', 'another QEMU of the VM was taken over'],
      ['vm-gone', 'stop', 'no such VM in the records'],
    ]);
  });

  it('keeps the destination of a migration under way to this node if it runs, whatever the phase says', () => {
    const vms = [vm('vm-b', 'n2', 'migrating'), vm('vm-e', 'n2', 'migrating')];
    const migrations = [
      migration('mig-9', 'vm-b', 'n2', 'n1', 'transferring'),
      migration('mig-8', 'vm-e', 'n2', 'n1', 'failed'),
      migration('mig-7', 'vm-e', 'n2', 'n3', 'switching-over'),
    ];
    const plan = planTakeover(['vm-b.mig-9', 'vm-e.mig-8', 'vm-e.mig-7'], vms, 'n1', migrations);
    expect(plan).toEqual([
      { name: 'vm-b.mig-9', vmId: 'vm-b', action: 'adopt-if-running', migrationId: 'mig-9' },
      // Another node's migration, and one that ended: the VM is not coming here.
      { name: 'vm-e.mig-7', vmId: 'vm-e', action: 'stop', why: 'the VM is placed on n2' },
      { name: 'vm-e.mig-8', vmId: 'vm-e', action: 'stop', why: 'the VM is placed on n2' },
    ]);
  });
});

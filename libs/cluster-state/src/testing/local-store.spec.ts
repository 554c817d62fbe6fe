import { describe, expect, it } from 'vitest';
import { DomainError } from '../errors';
import { createVm, registerNode } from './fixtures';
import { LocalClusterStore } from './local-store';

describe('LocalClusterStore (test double)', () => {
  it('executes commands and reads their effect', async () => {
    const store = new LocalClusterStore();
    await store.execute(registerNode('node-1', 1));
    const vm = await store.execute(createVm('vm-a'));
    expect(vm).toMatchObject({ id: 'vm-a', nodeId: 'node-1', revision: 2 });
    expect(await store.read((s) => s.listVms().length)).toBe(1);
    expect(store.status()).toMatchObject({
      role: 'leader',
      leaderRaftId: 1,
      appliedIndex: 2,
      commitIndex: 2,
    });
  });

  it('rejects with a DomainError carrying the command’s code', async () => {
    const store = new LocalClusterStore();
    const err = await store.execute({ type: 'vm.start', vmId: 'vm-zz' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect(err).toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('removeMember marks another node removed, and refuses to remove its own last voter', async () => {
    const store = new LocalClusterStore();
    await store.execute(registerNode('node-1', 1));
    await store.execute(registerNode('node-2', 2));
    await store.removeMember('node-2');
    expect(await store.read((s) => s.getNode('node-2')?.status, 'local')).toBe('removed');
    await expect(store.removeMember('node-1')).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
    expect(await store.read((s) => s.getNode('node-1')?.status, 'local')).toBe('ready');
  });

  it('simulates an outage: no leader, and calls fail with the given error', async () => {
    const store = new LocalClusterStore();
    store.simulateOutage(new DomainError('ERR_UNAVAILABLE', 'no leader'));
    expect(store.status().leaderRaftId).toBeNull();
    await expect(store.read((s) => s.listVms())).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' });
    await expect(store.execute(registerNode('node-1', 1))).rejects.toMatchObject({ code: 'ERR_UNAVAILABLE' });
    store.simulateOutage(undefined);
    expect(store.status().leaderRaftId).toBe(1);
  });
});

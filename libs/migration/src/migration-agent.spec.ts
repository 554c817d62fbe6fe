/** Who may call the IncomingMigration RPCs of a target node: only the source of the migration. */
import { status } from '@grpc/grpc-js';
import { AT, createVm, LogDriver, registerNode } from '@novacron/cluster-state/testing';
import { describe, expect, it } from 'vitest';
import { IncomingMigrationError } from './incoming-rpc';
import { type HostSnapshot, MigrationAgent, type MigrationAgentDeps } from './migration-agent';

// node-1 moves vm-a to node-2, this node; node-3 is a bystander (node names equal their ids).
const log = new LogDriver();
for (const [id, raftId] of [
  ['node-1', 1],
  ['node-2', 2],
  ['node-3', 3],
] as const)
  log.ok(registerNode(id, raftId));
log.ok(createVm('vm-a', 64, { nodeId: 'node-1' }));
log.ok({ type: 'vm.start', vmId: 'vm-a' });
log.ok({ type: 'migration.create', migrationId: 'mig-a', vmId: 'vm-a', targetNodeId: 'node-2', at: AT });
const snapshot = async (): Promise<HostSnapshot> => ({
  nodes: log.machine.listNodes(),
  vms: log.machine.listVms(),
  migrations: log.machine.listMigrations(),
});
// Refusals come before anything that needs the data path or the store. The host holds the
// destination QEMUs this node took over at a restart; `running` names the ones that run.
const running = new Set<string>();
const host = { runsAs: async (vmId: string, name: string) => running.has(`${vmId}/${name}`) };
const agent = new MigrationAgent({ nodeId: () => 'node-2', host } as unknown as MigrationAgentDeps);
const rpc = agent.handlers(snapshot);

async function refusal(p: Promise<unknown>): Promise<status | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    if (e instanceof IncomingMigrationError) return e.status;
    throw e;
  }
}

describe('IncomingMigration handlers', () => {
  it('refuse a member that is not the source: prepare, await and abort alike', async () => {
    expect(await refusal(rpc.prepare('mig-a', ['node-3']))).toBe(status.PERMISSION_DENIED);
    expect(await refusal(rpc.await('mig-a', ['node-3']))).toBe(status.PERMISSION_DENIED);
    expect(await refusal(rpc.abort('mig-a', 'no', ['node-3']))).toBe(status.PERMISSION_DENIED);
  });

  it('refuse a certificate that names no member', async () => {
    expect(await refusal(rpc.abort('mig-a', 'no', ['mallory']))).toBe(status.PERMISSION_DENIED);
  });

  it('answer NOT_FOUND for a migration the state does not hold, or one never prepared here', async () => {
    expect(await refusal(rpc.await('mig-nope', ['node-1']))).toBe(status.NOT_FOUND);
    expect(await refusal(rpc.abort('mig-nope', 'no', ['node-1']))).toBe(status.NOT_FOUND);
    expect(await refusal(rpc.await('mig-a', ['node-1']))).toBe(status.NOT_FOUND);
  });

  it('let the source abort a migration never prepared here (Abort is idempotent)', async () => {
    expect(await refusal(rpc.abort('mig-a', 'changed my mind', ['node-1']))).toBe('ok');
    expect(await rpc.abort('mig-a', 'changed my mind', ['node-1'])).toBe('aborted');
  });

  it('refuse to abort the destination a restart of this node took over while it runs the guest', async () => {
    running.add('vm-a/vm-a.mig-a');
    try {
      expect(await rpc.abort('mig-a', 'the source node lost the migration', ['node-1'])).toBe(
        'destination-runs',
      );
    } finally {
      running.clear();
    }
  });
});

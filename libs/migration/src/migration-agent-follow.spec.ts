/**
 * The agent follows the state without polling: a pending migration starts when its VM comes up on
 * the host (VmHost's ready event), and fails when its wait for the VM runs out (a timer), with no
 * entry applied in between to wake it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { createVm, LocalClusterStore, registerNode } from '@novacron/cluster-state/testing';
import { ImageCatalog, VmHost } from '@novacron/host';
import { SimulatedDriver } from '@novacron/hypervisor';
import { generateClusterCa, issueNodeCertificate } from '@novacron/native';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MigrationMetrics } from './metrics';
import { MigrationAgent } from './migration-agent';
import { type NativeSinkPath, NativeSourcePath } from './native-data-path';

const quiet = { log: () => undefined, warn: () => undefined };
const ca = generateClusterCa('follow-test');
const cert = issueNodeCertificate(ca, { nodeName: 'node-1' });
const identity = { caPem: ca.certPem, certPem: cert.certPem, keyPem: cert.keyPem };

describe('MigrationAgent following the state', () => {
  let dir: string;
  let store: LocalClusterStore;
  let host: VmHost;
  let agent: MigrationAgent | undefined;
  /** The VM as it was just started, before the migration was asked for. */
  let started: VmRecord[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dwcp-agent-'));
    mkdirSync(join(dir, 'debian-12'));
    writeFileSync(join(dir, 'debian-12', 'vmlinux'), 'the simulated driver boots nothing\n');
    store = new LocalClusterStore();
    // node-2's peer address has nothing listening: a run that starts fails at Prepare.
    for (const [id, raftId] of [
      ['node-1', 1],
      ['node-2', 2],
    ] as const)
      await store.execute(registerNode(id, raftId, undefined, { peerAddr: '127.0.0.1:9' }));
    await store.execute(createVm('vm-a', 64, { nodeId: 'node-1' }));
    await store.execute({ type: 'vm.start', vmId: 'vm-a' });
    started = await store.read((s) => s.listVms(), 'local');
    await store.execute({
      type: 'migration.create',
      migrationId: 'mig-a',
      vmId: 'vm-a',
      targetNodeId: 'node-2',
      at: new Date().toISOString(),
    });
    const logger = pino({ level: 'silent' });
    host = new VmHost(
      new SimulatedDriver({ logger: quiet }),
      new ImageCatalog(dir),
      () => 'node-1',
      logger,
      new Registry(),
    );
  });

  afterEach(async () => {
    await agent?.close();
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = (vmWaitMs: number) => {
    agent = new MigrationAgent({
      store,
      host,
      images: new ImageCatalog(dir),
      nodeId: () => 'node-1',
      identity,
      sinkPath: {} as NativeSinkPath,
      sourcePath: new NativeSourcePath({ identity }),
      metrics: new MigrationMetrics(new Registry()),
      logger: pino({ level: 'silent' }),
      path: { toward: () => ({ observe: () => undefined, estimate: () => ({ samples: 0 }) }) },
      vmWaitMs,
    });
    agent.start();
  };
  const record = () => store.read((s) => s.getMigration('mig-a') as MigrationRecord, 'local');
  const ended = async (ms: number): Promise<MigrationRecord> => {
    const end = Date.now() + ms;
    for (;;) {
      const m = await record();
      if (m.phase === 'failed' || m.phase === 'done' || m.phase === 'cancelled') return m;
      if (Date.now() > end) throw new Error(`still ${m.phase} after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  it('fails a migration whose VM never comes up once its wait runs out, woken by its own timer', async () => {
    const created = Date.parse((await record()).createdAt);
    start(400);
    const m = await ended(5000);
    expect(m.phase).toBe('failed');
    expect(m.reason).toMatch(/VM vm-a is not running on this node/);
    expect(Date.parse(m.updatedAt) - created).toBeGreaterThanOrEqual(400);
  });

  it('starts the run when the VM comes up on the host, not at the next poll', async () => {
    start(60_000);
    await new Promise((r) => setTimeout(r, 300));
    expect((await record()).phase).toBe('pending');
    const upAt = Date.now();
    // The VM was started just before the migration was asked for; the host launches it only now
    // (as its own follower would), and its ready event wakes the agent.
    await host.reconcile({ vms: started });
    const m = await ended(20_000);
    // The run started and failed at the unreachable destination: not the VM wait.
    expect(m.phase).toBe('failed');
    expect(m.reason).not.toMatch(/not running on this node/);
    expect(Date.parse(m.updatedAt)).toBeGreaterThanOrEqual(upAt);
    // Rolled back: the VM is the host's again.
    expect(host.lend('vm-a')).toBeDefined();
  });
});

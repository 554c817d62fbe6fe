/**
 * What VmHost reports of the VMs it hosts, through a real state machine: a launch that fails ends
 * `failed` with its reason, and each change is reported once, however many passes follow.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DomainError, type VmPhase, type VmRecord } from '@novacron/cluster-state';
import { createVm, LocalClusterStore, registerNode } from '@novacron/cluster-state/testing';
import { SimulatedDriver, type VmHandle, type VmSpec } from '@novacron/hypervisor';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageCatalog } from './image-catalog';
import { VmHost, type VmStatusReport } from './vm-host';

/** Launches like the simulated driver, with a pid, or fails while `failWith` is set. */
class RecordingDriver extends SimulatedDriver {
  readonly launched: VmSpec[] = [];
  failWith: string | undefined;
  private pids = 4000;

  constructor() {
    super({ logger: { log: () => undefined, warn: () => undefined } });
  }

  override async launch(spec: VmSpec): Promise<VmHandle> {
    this.launched.push(spec);
    if (this.failWith !== undefined) throw new Error(this.failWith);
    return { ...(await super.launch(spec)), pid: ++this.pids };
  }
}

async function until<T>(what: string, f: () => T | undefined, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('VmHost status reports', () => {
  let dir: string;
  let store: LocalClusterStore;
  let driver: RecordingDriver;
  let host: VmHost;
  let sent: VmStatusReport[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dwcp-host-status-'));
    mkdirSync(join(dir, 'plain'));
    writeFileSync(join(dir, 'plain', 'vmlinux'), 'the recording driver boots nothing\n');
    store = new LocalClusterStore();
    await store.execute(registerNode('node-1', 1));
    await store.execute(registerNode('node-2', 2));
    driver = new RecordingDriver();
    sent = [];
    host = new VmHost(
      driver,
      new ImageCatalog(dir),
      () => 'node-1',
      pino({ level: 'silent' }),
      new Registry(),
      undefined,
      async (report) => {
        sent.push(report);
        await store.execute({ type: 'vm.status', ...report, nodeId: 'node-1', at: new Date().toISOString() });
      },
    );
  });

  afterEach(async () => {
    await host.close({ stopVms: true });
    rmSync(dir, { recursive: true, force: true });
  });

  const vm = () => store.machine.getVm('vm-a') as VmRecord;
  /** One reconcile pass over the current records, with the reports it sent recorded. */
  const pass = async () => {
    await host.reconcile({ vms: store.machine.listVms() });
    await host.reportsSettled();
  };
  const reaches = (phase: VmPhase) =>
    until(`status ${phase}`, () => (vm().status?.phase === phase ? vm().status : undefined));
  const startVm = async (image: string) => {
    await store.execute(createVm('vm-a', 64, { nodeId: 'node-1', image }));
    await store.execute({ type: 'vm.start', vmId: 'vm-a' });
  };

  it('reports a VM whose image is missing as failed, with the reason, once however many passes', async () => {
    await startVm('nope');
    await pass();
    const failed = await reaches('failed');
    expect(failed.reason).toMatch(/^image nope is not on this node/);
    expect(failed.nodeId).toBe('node-1');
    expect(vm().state).toBe('running');
    for (let i = 0; i < 3; i += 1) await pass();
    expect(sent.map((r) => r.phase)).toEqual(['starting', 'failed']);
  });

  it('reports the driver’s launch error, then running with the pid once a retry launches it', async () => {
    driver.failWith = 'qemu-system-x86_64: could not load kernel';
    await startVm('plain');
    await pass();
    expect((await reaches('failed')).reason).toBe('qemu-system-x86_64: could not load kernel');
    await pass();
    expect(driver.launched).toHaveLength(2);
    driver.failWith = undefined;
    await pass();
    const running = await reaches('running');
    expect(running.pid).toBe(host.handle('vm-a')?.pid);
    expect(running.reason).toBeUndefined();
    await pass();
    expect(sent.map((r) => r.phase)).toEqual(['starting', 'failed', 'running']);
  });

  it('reports a process that exits unexpectedly as failed, then the relaunch', async () => {
    await startVm('plain');
    await pass();
    const first = await reaches('running');
    await driver.destroy(host.handle('vm-a') as VmHandle);
    await pass();
    await until('the relaunch', () => (vm().status?.pid !== first.pid ? true : undefined));
    await host.reportsSettled();
    expect(sent.map((r) => [r.phase, r.reason])).toEqual([
      ['starting', undefined],
      ['running', undefined],
      ['failed', 'the VM process exited unexpectedly (code 0)'],
      ['starting', undefined],
      ['running', undefined],
    ]);
    expect(vm().status).toMatchObject({ phase: 'running', pid: host.handle('vm-a')?.pid });
  });

  it('reports stopped when the VM is stopped, a failed one included', async () => {
    await startVm('nope');
    await pass();
    await reaches('failed');
    await store.execute({ type: 'vm.stop', vmId: 'vm-a' });
    await pass();
    expect((await reaches('stopped')).reason).toBeUndefined();

    await store.execute(createVm('vm-b', 64, { nodeId: 'node-1', image: 'plain' }));
    await store.execute({ type: 'vm.start', vmId: 'vm-b' });
    await pass();
    await until('vm-b running', () =>
      store.machine.getVm('vm-b')?.status?.phase === 'running' ? 1 : undefined,
    );
    await store.execute({ type: 'vm.stop', vmId: 'vm-b' });
    await pass();
    expect(store.machine.getVm('vm-b')?.status).toMatchObject({ phase: 'stopped' });
    expect(host.handle('vm-b')).toBeUndefined();
  });

  it('sends a report consensus could not commit again on a later pass', async () => {
    await startVm('nope');
    store.simulateOutage(new DomainError('ERR_UNAVAILABLE', 'no leader'));
    await pass();
    await until('the failed report', () => (sent.some((r) => r.phase === 'failed') ? true : undefined));
    await host.reportsSettled();
    expect(vm().status).toBeUndefined();
    store.simulateOutage(undefined);
    await pass();
    expect((await reaches('failed')).reason).toMatch(/image nope/);
  });

  it('reports nothing of a VM placed on another node', async () => {
    await store.execute(createVm('vm-a', 64, { nodeId: 'node-2', image: 'nope' }));
    await store.execute({ type: 'vm.start', vmId: 'vm-a' });
    await pass();
    expect(sent).toEqual([]);
  });
});

/**
 * A node with its hypervisor driver replaced through HypervisorModule.forDriver, the way an
 * extension plugs one in: nothing in libs/hypervisor or apps/node names this driver, yet the real
 * node (Raft, REST API, VM host) launches, serves the console of, and stops its VMs through it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { VmRecord } from '@novacron/cluster-state';
import { HypervisorModule, SimulatedDriver, type VmHandle, type VmSpec } from '@novacron/hypervisor';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RealNode, startRealNode } from '../../apps/cli/src/testing/real-node';

/** A driver of our own: the simulated one, recording what the node asks of it. */
class RecordingDriver extends SimulatedDriver {
  static readonly instances: RecordingDriver[] = [];
  readonly launched: VmSpec[] = [];
  readonly destroyed: string[] = [];

  constructor() {
    super({ logger: { log: () => undefined, warn: () => undefined } });
    RecordingDriver.instances.push(this);
  }

  override async launch(spec: VmSpec): Promise<VmHandle> {
    this.launched.push(spec);
    return super.launch(spec);
  }

  override async destroy(handle: VmHandle): Promise<void> {
    this.destroyed.push(handle.name);
    return super.destroy(handle);
  }
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('a node whose hypervisor driver comes from HypervisorModule.forDriver', () => {
  let node: RealNode;
  const call = async <T>(method: string, path: string, body?: unknown) => {
    const res = await fetch(`${node.apiUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${node.adminToken}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as T };
  };

  beforeAll(async () => {
    node = await startRealNode('127.0.0.1', {
      hypervisor: HypervisorModule.forDriver({ useClass: RecordingDriver }),
    });
    const image = join(node.dataDir, 'images', 'plain');
    mkdirSync(image, { recursive: true });
    writeFileSync(join(image, 'vmlinux'), 'the recording driver boots nothing\n');
  }, 60_000);

  afterAll(async () => {
    await node?.close();
  });

  it('launches, serves and stops the VM through that driver, and only that one', async () => {
    expect(RecordingDriver.instances).toHaveLength(1);
    const driver = RecordingDriver.instances[0] as RecordingDriver;
    const nodes = await call<{ items: { id: string }[] }>('GET', '/v1/nodes');
    const created = await call<VmRecord>('POST', '/v1/vms', {
      name: 'plugged',
      image: 'plain',
      vcpus: 1,
      memoryMiB: 64,
      nodeId: nodes.body.items[0]?.id,
    });
    expect(created.status).toBe(201);
    expect((await call('POST', `/v1/vms/${created.body.id}/start`)).status).toBe(200);
    // Started by a Raft apply event, not a poll: the driver sees the VM's own spec.
    const spec = await until('the driver to launch the VM', async () => driver.launched[0]);
    expect(spec).toMatchObject({ name: created.body.id, cpus: 1, memoryMiB: 64 });
    expect(spec.kernel).toBe(join(node.dataDir, 'images', 'plain', 'vmlinux'));
    const lines = await until('the console from the driver', async () => {
      const r = await call<{ lines: string[] }>('GET', `/v1/vms/${created.body.id}/console`);
      return r.status === 200 && r.body.lines.length > 0 ? r.body.lines : undefined;
    });
    expect(lines.join('\n')).toMatch(/simulated/i);
    expect((await call('POST', `/v1/vms/${created.body.id}/stop`)).status).toBe(200);
    await until('the driver to destroy the VM', async () =>
      driver.destroyed.includes(created.body.id) ? true : undefined,
    );
    expect(driver.launched).toHaveLength(1);
  }, 60_000);
});

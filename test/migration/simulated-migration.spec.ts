/**
 * MigrationRun between two SimulatedDriver instances through the real native data path: the
 * simulated source writes its memory stream into MigrationSource's socket, AMST carries it, and
 * MigrationSink feeds the simulated destination's listening socket, which checks every page. A
 * second VM of the same image dedups against the first in the destination's ChunkStore. Simulated
 * VMs: this shows DWCP's data path and MigrationRun at work, not QEMU.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationPhase } from '@novacron/cluster-state';
import { SimulatedDriver, type VmHandle, type VmSpec, waitForLine } from '@novacron/hypervisor';
import {
  IncomingMigration,
  MigrationRun,
  type MigrationRunOptions,
  type MigrationRunStats,
  type NativeSinkPath,
  type NativeSourcePath,
} from '@novacron/migration';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDataPaths } from './data-paths';

const MiB = 1024 * 1024;
const image = { memoryMiB: 128, kernel: '/images/sim/vmlinuz', initrd: '/images/sim/initrd.img' };
const vmSpec = (name: string): VmSpec => ({ name, ...image });

describe('MigrationRun between two simulated drivers over the native data path', () => {
  const logs: string[] = [];
  const logger = { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(`WARN ${m}`) };
  const nodeA = new SimulatedDriver({ logger, heartbeatIntervalMs: 50 });
  const nodeB = new SimulatedDriver({ logger, heartbeatIntervalMs: 50 });
  const results: string[] = [];
  let workDir: string;
  let sinkPath: NativeSinkPath;
  let sourcePath: NativeSourcePath;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-sim-run-'));
    ({ sinkPath, sourcePath } = testDataPaths(workDir, 'simulated-migration-test'));
  });

  afterAll(async () => {
    await Promise.all([nodeA.close(), nodeB.close()]);
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
    console.info(results.join('\n'));
  });

  function migration(id: string, vm: VmHandle, options: MigrationRunOptions = {}, signal?: AbortSignal) {
    const reports: { phase: MigrationPhase; stats: MigrationRunStats }[] = [];
    const incoming = new IncomingMigration({
      id,
      spec: vmSpec(vm.name),
      driver: nodeB,
      dataPath: sinkPath,
      logger,
    });
    const run = new MigrationRun({
      id,
      source: { driver: nodeA, vm, dataPath: sourcePath },
      destination: incoming,
      onPhase: async (phase, stats) => {
        reports.push({ phase, stats });
      },
      options: { progressIntervalMs: 100, pollIntervalMs: 20, ...options },
      logger,
      ...(signal ? { signal } : {}),
    });
    return { run, reports, incoming };
  }

  async function beat(lines: AsyncIterator<string>): Promise<number> {
    const match = await waitForLine(lines, /DWCP-HEARTBEAT seq=(\d+)/, {
      timeoutMs: 2000,
      what: 'a heartbeat',
    });
    return Number(match[1]);
  }

  function summary(what: string, s: MigrationRunStats): string {
    return (
      `${what}: ${s.bytesIn} bytes in, ${s.bytesOnWire} on the wire, compression ` +
      `${s.compressionRatio?.toFixed(2)}, dedup ${s.dedupRatio?.toFixed(3)}, pause ${s.downtimeMs} ms, total ${s.totalMs} ms`
    );
  }

  let first: MigrationRunStats | undefined;

  it('carries a simulated VM to done: the destination runs on with its console, the source is gone', async () => {
    const vm = await nodeA.launch(vmSpec('sim-first'));
    const lines = nodeA.serialLines(vm);
    const before = await beat(lines);
    await lines.return?.();
    const { run, reports, incoming } = migration('sim-done', vm);
    const outcome = await run.run();
    expect(outcome.phase, outcome.reason).toBe('done');
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'switching-over', 'done']);
    expect(reports.at(-1)?.phase).toBe('done');
    const destination = incoming.vm as VmHandle;
    expect(destination.simulated).toBe(true);
    expect(await nodeB.status(destination)).toEqual({ state: 'running', running: true });
    const after = nodeB.serialLines(destination);
    expect(await beat(after)).toBeGreaterThan(before);
    await after.return?.();
    await expect(nodeA.status(vm)).rejects.toMatchObject({ code: 'ERR_HV_VM_NOT_FOUND' });
    const s = outcome.stats;
    expect(s.ramBytes).toBe(128 * MiB);
    expect(s.bytesIn).toBeGreaterThan(16 * MiB);
    expect(s.bytesOnWire).toBeLessThan(s.bytesIn ?? 0);
    expect(s.downtimeMs).toBeGreaterThanOrEqual(0);
    first = s;
    results.push(summary('first VM', s));
  }, 60_000);

  it('a second VM of the same image dedups against the first in the destination store', async () => {
    const vm = await nodeA.launch(vmSpec('sim-second'));
    const { run, incoming } = migration('sim-dedup', vm);
    const outcome = await run.run();
    expect(outcome.phase, outcome.reason).toBe('done');
    expect(await nodeB.status(incoming.vm as VmHandle)).toEqual({ state: 'running', running: true });
    const s = outcome.stats;
    // The boot image is two thirds of the stream; the VM's private region and its zero pages are not shared.
    expect(s.dedupRatio).toBeGreaterThan(0.5);
    expect(s.bytesOnWire).toBeLessThan((first?.bytesOnWire ?? 0) * 0.6);
    results.push(summary('second VM, same image', s));
  }, 60_000);

  it('an abort while transferring (1 MiB/s cap) rolls back: the source runs on, the destination is gone', async () => {
    const vm = await nodeA.launch(vmSpec('sim-abort'));
    const abort = new AbortController();
    const { run, incoming } = migration('sim-abort', vm, { maxBandwidthBytesPerSec: MiB }, abort.signal);
    const outcome = run.run();
    const deadline = performance.now() + 10_000;
    while ((await nodeA.queryMigrate(vm)).transferredBytes < 200_000 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    abort.abort('operator cancelled');
    expect(await outcome).toMatchObject({ phase: 'cancelled', reason: 'operator cancelled' });
    expect(await nodeA.status(vm)).toEqual({ state: 'running', running: true });
    expect((await nodeA.queryMigrate(vm)).status).toBe('cancelled');
    expect(incoming.vm).toBeUndefined();
    const lines = nodeA.serialLines(vm);
    const b = await beat(lines);
    expect(await beat(lines)).toBe(b + 1);
    await lines.return?.();
  }, 60_000);
});

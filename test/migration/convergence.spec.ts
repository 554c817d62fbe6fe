/**
 * A guest that dirties memory faster than the migration can carry it (256 MiB, 16 MiB/s over a
 * 16 MiB working set, QEMU capped at 8 MiB/s), with real QEMU and the native data path: without
 * escalation the run fails at its completion timeout with that reason and the guest runs on at
 * its source; with auto-converge QEMU throttles it, and a cancel then leaves it running there.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationPhase } from '@novacron/cluster-state';
import { QemuDriver, type VmHandle, type VmSpec, waitForLine } from '@novacron/hypervisor';
import {
  IncomingMigration,
  MigrationRun,
  type MigrationRunOptions,
  type MigrationRunStats,
  type NativeSinkPath,
  type NativeSourcePath,
} from '@novacron/migration';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GUEST_CMDLINE } from '../../apps/cli/src/demo/environment';
import { ensureGuestBuilt, guestSpec, heartbeatSeq, isAlive, qemuSkipReason, READY } from '../guest/guest';
import { describeUnless } from '../tools';
import { testDataPaths } from './data-paths';

const MiB = 1024 * 1024;
const heavy = (name: string): VmSpec => ({
  ...guestSpec(name),
  memoryMiB: 256,
  cmdline: GUEST_CMDLINE.replace(/dwcp\.fill_mib=\d+/, 'dwcp.fill_mib=64').replace(
    /dwcp\.dirty_kib_per_s=\d+/,
    'dwcp.dirty_kib_per_s=16384',
  ),
});

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('a migration that does not converge (real QEMU)', () => {
  const logs: string[] = [];
  const logger = { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(`WARN ${m}`) };
  const driver = new QemuDriver({ logger });
  let workDir: string;
  let sinkPath: NativeSinkPath;
  let sourcePath: NativeSourcePath;
  let vm: VmHandle;
  const destinations: IncomingMigration[] = [];

  beforeAll(async () => {
    await ensureGuestBuilt();
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-converge-'));
    ({ sinkPath, sourcePath } = testDataPaths(workDir, 'convergence-test'));
    vm = await driver.launch(heavy('converge-origin'));
    const lines = driver.serialLines(vm, { replay: true });
    await waitForLine(lines, READY, { timeoutMs: 90_000, what: 'DWCP-READY' });
    await heartbeatSeq(lines);
    await lines.return?.();
  }, 620_000);

  afterAll(async () => {
    await driver.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
  });

  function migration(
    id: string,
    options: MigrationRunOptions,
    onReport?: (phase: MigrationPhase, stats: MigrationRunStats) => void,
    signal?: AbortSignal,
  ) {
    const incoming = new IncomingMigration({
      id,
      spec: heavy(`converge-${id}`),
      driver,
      dataPath: sinkPath,
      logger,
    });
    destinations.push(incoming);
    return new MigrationRun({
      id,
      source: { driver, vm, dataPath: sourcePath },
      destination: incoming,
      onPhase: async (phase, stats) => onReport?.(phase, stats),
      options: { progressIntervalMs: 250, maxBandwidthBytesPerSec: 8 * MiB, ...options },
      logger,
      ...(signal ? { signal } : {}),
    });
  }

  async function expectRunningAtSource(): Promise<void> {
    expect(await driver.status(vm)).toEqual({ state: 'running', running: true });
    const lines = driver.serialLines(vm);
    const beat = await heartbeatSeq(lines);
    expect(await heartbeatSeq(lines)).toBe(beat + 1);
    await lines.return?.();
    const destination = destinations.at(-1)?.vm;
    expect(isAlive(destination?.pid)).toBe(false);
  }

  it('without escalation it fails at the completion timeout, with that reason; the guest runs on at its source', async () => {
    const started = performance.now();
    // 256 MiB of RAM at 20 s per GiB: 5 s.
    const outcome = await migration('no-escalation', {
      autoConverge: false,
      completionTimeoutPerGiBSec: 20,
    }).run();
    const seconds = (performance.now() - started) / 1000;
    expect(outcome.phase).toBe('failed');
    expect(outcome.reason).toMatch(
      /^ERR_MIGRATION_TIMEOUT: did not complete within 5\.\d s \(completionTimeoutPerGiB 20 s/,
    );
    expect(outcome.stats.cpuThrottlePercent).toBeUndefined();
    expect(seconds).toBeGreaterThanOrEqual(5);
    expect(seconds).toBeLessThan(20);
    await expectRunningAtSource();
    logs.push(`no escalation: ${outcome.reason} after ${seconds.toFixed(1)} s`);
  }, 60_000);

  it('auto-converge throttles the guest; a cancel then rolls back and the guest runs on unthrottled at its source', async () => {
    const abort = new AbortController();
    let throttled: MigrationRunStats | undefined;
    const outcome = await migration(
      'throttled',
      { autoConverge: true, completionTimeoutPerGiBSec: 600 },
      (phase, stats) => {
        if (phase === 'transferring' && (stats.cpuThrottlePercent ?? 0) > 0 && !throttled) {
          throttled = stats;
          abort.abort('cancelled during auto-converge');
        }
      },
      abort.signal,
    ).run();
    expect(throttled?.cpuThrottlePercent, 'auto-converge escalated').toBeGreaterThan(0);
    expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'cancelled during auto-converge' });
    expect(logs.some((l) => l.includes('auto-converge throttles it'))).toBe(true);
    await expectRunningAtSource();
    expect((await driver.queryMigrate(vm)).cpuThrottlePercent).toBe(0);
    logs.push(
      `auto-converge: throttled ${throttled?.cpuThrottlePercent} % after ${throttled?.totalMs} ms, then cancelled`,
    );
  }, 120_000);
});

/**
 * MigrationRun with real QEMU and the native data path: a running test guest goes through every
 * phase to done on a second QEMU, and a migration aborted while transferring, or whose link is cut
 * mid-transfer or during the path probe before QEMU starts, is rolled back with the source still
 * running and no destination left.
 */

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationPath, MigrationPhase } from '@novacron/cluster-state';
import { type MigrationUri, QemuDriver, type VmHandle, type VmSpec, waitForLine } from '@novacron/hypervisor';
import {
  type IncomingHypervisor,
  IncomingMigration,
  MigrationMetrics,
  MigrationRun,
  type MigrationRunOptions,
  type MigrationRunStats,
  type NativeSinkPath,
  type NativeSourcePath,
} from '@novacron/migration';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ensureGuestBuilt,
  guestSpec,
  heartbeatSeq,
  integrityHolds,
  isAlive,
  qemuSkipReason,
  READY,
} from '../guest/guest';
import { describeUnless } from '../tools';
import { testDataPaths } from './data-paths';
import { LoopbackLink } from './link';

const MiB = 1024 * 1024;
/**
 * What the link carries before it is cut during the probe. Until the probe ends QEMU is not told
 * to migrate, and each connection's TLS handshake is a few KiB: this is PROBE frames (16 KiB each),
 * within the probe's first round. It needs four rounds of at least 10 ms to see a plateau; on
 * loopback here it ran 8-11 rounds and 10 MB.
 */
const PROBE_BYTES_AT_CUT = 256 * 1024;
/** Long enough that only the cut ends the probe before its plateau. */
const PROBE_MS = 10_000;

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('MigrationRun with real QEMU', () => {
  const logs: string[] = [];
  const logger = { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(`WARN ${m}`) };
  const driver = new QemuDriver({ logger });
  const registry = new Registry();
  const metrics = new MigrationMetrics(registry);
  const results: string[] = [];
  let workDir: string;
  let sinkPath: NativeSinkPath;
  let sourcePath: NativeSourcePath;
  let vm: VmHandle;
  /** The md5 of the guest's filled memory, as it booted: its integrity checks must keep finding it. */
  let readyMd5: string | undefined;
  /** Every destination the driver was asked to start, to check that none is left behind. */
  const prepared: VmHandle[] = [];
  const destinationDriver: IncomingHypervisor = {
    prepareIncoming: async (spec: VmSpec, uri: MigrationUri) => {
      const handle = await driver.prepareIncoming(spec, uri);
      prepared.push(handle);
      return handle;
    },
    status: (v) => driver.status(v),
    destroy: (v) => driver.destroy(v),
    events: (v) => driver.events(v),
  };

  beforeAll(async () => {
    await ensureGuestBuilt();
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-run-'));
    ({ sinkPath, sourcePath } = testDataPaths(workDir, 'migration-run-test'));
    vm = await driver.launch(guestSpec('run-origin'));
    const lines = driver.serialLines(vm, { replay: true });
    readyMd5 = (await waitForLine(lines, READY, { timeoutMs: 45_000, what: 'DWCP-READY' }))[1];
    await heartbeatSeq(lines);
    await lines.return?.();
  }, 620_000);

  afterAll(async () => {
    await driver.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
    console.info(results.join('\n'));
  });

  function migration(
    id: string,
    options: MigrationRunOptions,
    onReport?: (phase: MigrationPhase, stats: MigrationRunStats) => void,
    signal?: AbortSignal,
    link?: { link: LoopbackLink; port: number },
  ) {
    const reports: {
      phase: MigrationPhase;
      stats: MigrationRunStats;
      reason?: string;
      path?: MigrationPath;
    }[] = [];
    const incoming = new IncomingMigration({
      id,
      spec: guestSpec(`run-${id}`),
      driver: destinationDriver,
      dataPath: sinkPath,
      logger,
    });
    const run = new MigrationRun({
      id,
      source: { driver, vm, dataPath: sourcePath },
      destination: link ? link.link.carrying(incoming, link.port) : incoming,
      onPhase: async (phase, stats, reason, path) => {
        reports.push({
          phase,
          stats,
          ...(reason === undefined ? {} : { reason }),
          ...(path ? { path } : {}),
        });
        onReport?.(phase, stats);
      },
      options: { progressIntervalMs: 250, ...options },
      metrics,
      logger,
      ...(signal ? { signal } : {}),
    });
    return { run, reports, incoming };
  }

  /**
   * After a rollback: the source VM runs and beats on, and the one destination this run started is
   * gone with its runtime directory. Returns the first of the two source heartbeats it read.
   */
  async function expectRolledBack(before: number): Promise<number> {
    expect(await driver.status(vm)).toEqual({ state: 'running', running: true });
    const lines = driver.serialLines(vm);
    const beat = await heartbeatSeq(lines);
    expect(await heartbeatSeq(lines)).toBe(beat + 1);
    await lines.return?.();
    expect(prepared.length).toBe(before + 1);
    const destination = prepared.at(-1) as VmHandle;
    expect(isAlive(destination.pid)).toBe(false);
    expect(destination.runtimeDir && existsSync(destination.runtimeDir)).toBe(false);
    return beat;
  }

  it('carries the running guest to done: destination running, heartbeats continuing, source destroyed', async () => {
    const lines = driver.serialLines(vm);
    const seqBefore = await heartbeatSeq(lines);
    await lines.return?.();
    const source = vm;
    const { run, reports, incoming } = migration('mig-done', {
      measured: { bandwidthBytesPerSec: 1024 * MiB, rttMs: 0.1 },
    });
    const started = performance.now();
    const outcome = await run.run();
    const seconds = (performance.now() - started) / 1000;
    expect(outcome.phase, outcome.reason).toBe('done');
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'switching-over', 'done']);
    expect(reports.map((r) => r.phase).filter((p, i, all) => all[i - 1] !== p)).toEqual(outcome.phases);
    const destination = incoming.vm as VmHandle;
    expect(await driver.status(destination)).toEqual({ state: 'running', running: true });
    const after = driver.serialLines(destination);
    expect(await heartbeatSeq(after)).toBeGreaterThan(seqBefore);
    await after.return?.();
    expect(isAlive(source.pid)).toBe(false);
    expect(source.runtimeDir && existsSync(source.runtimeDir)).toBe(false);
    const s = outcome.stats;
    expect(s.bytesIn).toBeGreaterThan(0);
    expect(s.bytesOnWire).toBeLessThan(s.bytesIn ?? 0);
    const text = await registry.metrics();
    expect(text).toContain('dwcp_migration_migrations_total{result="done"} 1');
    results.push(
      `done in ${seconds.toFixed(2)} s (${reports.length} reports; ${outcome.parameters.basis}): ` +
        `${s.bytesIn} bytes from QEMU, ${s.bytesOnWire} on the wire, compression ${s.compressionRatio?.toFixed(2)}, ` +
        `dedup ${s.dedupRatio?.toFixed(3)}, pause (STOP→RESUME) ${s.downtimeMs} ms, total ${s.totalMs} ms; ` +
        `transferring reports: ${reports
          .filter((r) => r.phase === 'transferring')
          .map(
            (r) =>
              `${r.stats.bytesIn ?? 0}B eta=${r.stats.etaMs ?? '?'}ms dirty=${r.stats.dirtyRateBytesPerSec ?? '?'}`,
          )
          .join(', ')}`,
    );
    vm = destination;
  }, 90_000);

  it('an abort while transferring (1 MiB/s cap) is cancelled: the source keeps running, the destination is gone', async () => {
    const abort = new AbortController();
    const before = prepared.length;
    let abortedAt: MigrationRunStats | undefined;
    const { run, reports } = migration(
      'mig-abort',
      { maxBandwidthBytesPerSec: MiB },
      (phase, stats) => {
        if (
          phase === 'transferring' &&
          (stats.bytesIn ?? 0) > 0 &&
          (stats.totalMs ?? 0) >= 1500 &&
          !abortedAt
        ) {
          abortedAt = stats;
          abort.abort('operator cancelled');
        }
      },
      abort.signal,
    );
    const started = performance.now();
    const outcome = await run.run();
    const seconds = (performance.now() - started) / 1000;
    expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'operator cancelled' });
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'cancelled']);
    expect(reports.at(-1)).toMatchObject({ phase: 'cancelled', reason: 'operator cancelled' });
    const beat = await expectRolledBack(before);
    expect(await registry.metrics()).toContain('dwcp_migration_migrations_total{result="cancelled"} 1');
    results.push(
      `cancelled after ${abortedAt?.totalMs} ms with ${abortedAt?.bytesIn} bytes from QEMU; ` +
        `run returned ${seconds.toFixed(2)} s after it started; heartbeats ${beat}, ${beat + 1} on the source`,
    );
  }, 90_000);

  it('the link cut mid-transfer: failed with the reason, the source keeps running, the destination is gone; a retry succeeds', async () => {
    const link = new LoopbackLink();
    const port = await link.listen();
    const before = prepared.length;
    let cutAt: MigrationRunStats | undefined;
    const { run } = migration(
      'mig-cut',
      { maxBandwidthBytesPerSec: MiB },
      (phase, stats) => {
        if (phase === 'transferring' && (stats.bytesIn ?? 0) > 0 && !cutAt) {
          cutAt = stats;
          link.cut();
        }
      },
      undefined,
      { link, port },
    );
    const started = performance.now();
    const outcome = await run.run();
    const seconds = (performance.now() - started) / 1000;
    await link.close();
    expect(outcome.phase).toBe('failed');
    expect(outcome.reason).toBeTruthy();
    expect(link.connections).toBeGreaterThan(0);
    const beat = await expectRolledBack(before);
    results.push(
      `link cut after ${cutAt?.bytesIn} bytes from QEMU: failed after ${seconds.toFixed(2)} s (${outcome.reason}); source beats on`,
    );

    const healed = new LoopbackLink();
    const healedPort = await healed.listen();
    const retry = migration('mig-retry', {}, undefined, undefined, { link: healed, port: healedPort });
    const again = await retry.run.run();
    await healed.close();
    expect(again.phase, again.reason).toBe('done');
    const arrived = retry.incoming.vm as VmHandle;
    const after = driver.serialLines(arrived);
    expect(await heartbeatSeq(after)).toBeGreaterThan(beat);
    await after.return?.();
    vm = arrived;
    results.push(`retry over a healed link: done, ${again.stats.bytesOnWire} bytes on the wire`);
  }, 120_000);

  it('the link cut during the path probe: failed with the reason, the source keeps running, the destination is gone; a retry over the restored link succeeds', async () => {
    const link = new LoopbackLink();
    const port = await link.listen();
    const before = prepared.length;
    let cutAtMs: number | undefined;
    void link.carried(PROBE_BYTES_AT_CUT).then(() => {
      cutAtMs = performance.now();
      link.cut();
    });
    const { run, reports } = migration('mig-probe-cut', { probeMs: PROBE_MS }, undefined, undefined, {
      link,
      port,
    });
    const started = performance.now();
    const outcome = await run.run();
    const endedAtMs = performance.now();
    expect(cutAtMs, `the link carried ${link.bytes} bytes and was never cut`).toBeDefined();
    const cutAfterMs = (cutAtMs ?? 0) - started;
    const failedAfterMs = endedAtMs - (cutAtMs ?? 0);
    expect(outcome.phase, outcome.reason).toBe('failed');
    expect(outcome.reason).toBeTruthy();
    // The cut landed inside the probe: its outcome in the record is a failure, not a measurement.
    const record = reports.at(-1);
    expect(record).toMatchObject({ phase: 'failed', reason: outcome.reason });
    expect(record?.path?.basis).toContain('probe failed (ERR_AMST_PROBE_FAILED');
    expect(logs.join('\n')).toContain('migration mig-probe-cut: probe failed (ERR_AMST_PROBE_FAILED');
    // Not a hang: the reset is seen at once and new connections are refused; the bound leaves room
    // for the rollback (the destination QEMU destroyed, QEMU out of its migration) on a loaded host.
    expect(failedAfterMs).toBeLessThan(10_000);
    const beat = await expectRolledBack(before);
    results.push(
      `link cut during the probe, ${Math.round(cutAfterMs)} ms into the run with ${PROBE_BYTES_AT_CUT} bytes ` +
        `carried: failed ${Math.round(failedAfterMs)} ms after the cut (phases ${outcome.phases.join(' → ')}; ` +
        `${outcome.reason}); source beats on`,
    );

    link.restore();
    const retry = migration('mig-probe-retry', { probeMs: PROBE_MS }, undefined, undefined, { link, port });
    const again = await retry.run.run();
    await link.close();
    expect(again.phase, again.reason).toBe('done');
    expect(retry.reports.at(-1)?.path?.basis).toMatch(/probe: [\d.]+ Mbit\/s/);
    const arrived = retry.incoming.vm as VmHandle;
    const after = driver.serialLines(arrived);
    expect(await heartbeatSeq(after)).toBeGreaterThan(beat);
    const readings = await integrityHolds(after, readyMd5 ?? '');
    await after.return?.();
    vm = arrived;
    results.push(
      `retry over the restored link: done in ${((again.stats.totalMs ?? 0) / 1000).toFixed(2)} s, ` +
        `${again.stats.bytesOnWire} bytes on the wire, integrity ${readings.join(', ')}`,
    );
  }, 120_000);
});

/**
 * A migration follows a link that changes under it: the data path goes through the WAN emulator's
 * loopback relay with a rate trace that halves the rate 2 s into the transfer, PBA steers the
 * run, and the ETA shown at 50 % progress is measured against the time that was actually left.
 *
 * Issue 12 wants that ETA within 25 %. It is not reliably (see docs/pba.md, "Not done yet"): the
 * test asserts what holds (done, the step before 50 %, a finite ETA, and a record whose path
 * follows the link: PBA's prediction near the new rate, the switchover bandwidth down with it)
 * and prints the ETA's error, with each report's row, so where the error comes from is visible.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { PathEstimator, PathPredictor } from '@novacron/bandwidth';
import { QemuDriver, type VmHandle, type VmSpec, waitForLine } from '@novacron/hypervisor';
import {
  IncomingMigration,
  type IncomingOffer,
  type MigrationDestination,
  MigrationRun,
  type NativeSinkPath,
  type NativeSourcePath,
} from '@novacron/migration';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GUEST_CMDLINE } from '../../apps/cli/src/demo/environment';
import { ensureGuestBuilt, guestSpec, qemuSkipReason, READY } from '../guest/guest';
import { describeUnless, missingTools } from '../tools';
import { testDataPaths } from './data-paths';

const REPO = resolve(__dirname, '..', '..');
const EMULATOR_DIR = join(REPO, 'bench', 'wan', 'emulator');
const EMULATOR = join(EMULATOR_DIR, 'target', 'release', 'dwcp-wanem');
/**
 * 80 Mbit/s for the first 2 s of the transfer, then 40 for good. QEMU's progress races over the
 * guest's zero pages, so 50 % comes 3-4 s in: the step must fall before it.
 */
const TRACE = '0 80\n2 40\n';
const HALVES_AT_MS = 2000;
/** The link's rate after the step: 40 Mbit/s. */
const HALVED_BYTES_PER_SEC = 5_000_000;
/** How long after the step PBA's prediction is given to settle (a few of its 1 s bins). */
const SETTLE_MS = 3000;
/** Issue 12's target for the ETA shown at 50 %, against the time that was actually left. */
const ETA_TARGET = 0.25;
/** Big and busy enough that the transfer takes 10-20 s at these rates (init.sh's knobs). */
const spec = (name: string): VmSpec => ({
  ...guestSpec(name),
  memoryMiB: 256,
  cmdline: GUEST_CMDLINE.replace('dwcp.fill_mib=16', 'dwcp.fill_mib=160'),
});

const describeLink = describeUnless(qemuSkipReason() ?? missingTools('cargo'));

describeLink('a migration over a link whose rate halves mid-transfer', () => {
  const logs: string[] = [];
  const logger = { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(`WARN ${m}`) };
  const driver = new QemuDriver({ logger });
  let workDir: string;
  let sinkPath: NativeSinkPath;
  let sourcePath: NativeSourcePath;
  let vm: VmHandle;
  let emulator: ChildProcess | undefined;
  const emulatorLog: string[] = [];

  beforeAll(async () => {
    execFileSync(
      'cargo',
      ['build', '--release', '--quiet', '--locked', '--manifest-path', join(EMULATOR_DIR, 'Cargo.toml')],
      {
        stdio: 'inherit',
      },
    );
    await ensureGuestBuilt();
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-link-change-'));
    await writeFile(join(workDir, 'rate.trace'), TRACE);
    ({ sinkPath, sourcePath } = testDataPaths(workDir, 'link-change-test'));
    vm = await driver.launch(spec('link-origin'));
    const lines = driver.serialLines(vm, { replay: true });
    await waitForLine(lines, READY, { timeoutMs: 240_000, what: 'DWCP-READY' });
    await lines.return?.();
  }, 620_000);

  afterAll(async () => {
    emulator?.kill('SIGTERM');
    await driver.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
    console.info(emulatorLog.join('\n'));
  });

  /** Starts the relay toward the destination's data port; the trace's time zero is now. */
  async function startRelay(target: number): Promise<{ port: number; startedAt: number }> {
    const child = spawn(
      EMULATOR,
      [
        'relay',
        '--listen',
        '127.0.0.1:0',
        '--connect',
        `127.0.0.1:${target}`,
        // AMST runs several connections: one path, one rate between them all.
        '--shared-bottleneck',
        '--delay-ms',
        '10',
        '--rate-trace',
        join(workDir, 'rate.trace'),
        '--stats-interval',
        '1',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    emulator = child;
    const startedAt = performance.now();
    child.stdout?.on('data', (d: Buffer) => emulatorLog.push(d.toString().trim()));
    const stderr = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    for await (const line of stderr) {
      emulatorLog.push(line);
      const m = /mode: relay .*: 127\.0\.0\.1:(\d+) ->/.exec(line);
      if (m?.[1]) return { port: Number(m[1]), startedAt };
    }
    throw new Error(`dwcp-wanem exited before it listened: ${emulatorLog.join('\n')}`);
  }

  it('completes, and the ETA shown at 50 % is measured against the time that was left', async () => {
    let linkStartedAt = 0;
    const incoming = new IncomingMigration({
      id: 'mig-link-change',
      spec: spec('link-destination'),
      driver,
      dataPath: sinkPath,
      logger,
    });
    const destination: MigrationDestination = {
      prepare: async (): Promise<IncomingOffer> => {
        const offer = await incoming.prepare();
        const relay = await startRelay(offer.port);
        linkStartedAt = relay.startedAt;
        return { ...offer, host: '127.0.0.1', port: relay.port };
      },
      completion: () => incoming.completion(),
      abort: (reason) => incoming.abort(reason),
    };
    const path = new PathEstimator(
      { peerRttMs: () => undefined },
      { newPredictor: () => new PathPredictor() },
    ).toward('node-b');
    const progress: {
      atMs: number;
      fraction: number;
      etaMs: number | undefined;
      remaining: number;
      wire: number | undefined;
      fromQemu: number | undefined;
      encoded: number | undefined;
      predicted: number | undefined;
      measured: number | undefined;
      switchover: number | undefined;
    }[] = [];
    const run = new MigrationRun({
      id: 'mig-link-change',
      source: { driver, vm, dataPath: sourcePath },
      destination,
      path,
      onPhase: async (phase, stats, _reason, reported) => {
        if (phase !== 'transferring' || stats.ramBytes === undefined || stats.remainingBytes === undefined)
          return;
        progress.push({
          atMs: performance.now(),
          fraction: 1 - stats.remainingBytes / stats.ramBytes,
          etaMs: stats.etaMs,
          remaining: stats.remainingBytes,
          wire: stats.bytesOnWire,
          fromQemu: stats.bytesIn,
          // The encoder's input: its ratio is its bytes in over its bytes out.
          encoded:
            stats.bytesOnWire === undefined || stats.compressionRatio === undefined
              ? undefined
              : Math.round(stats.bytesOnWire * stats.compressionRatio),
          predicted: reported?.predictedBytesPerSec,
          measured: reported?.measuredBytesPerSec,
          switchover: reported?.switchoverBandwidthBytesPerSec,
        });
      },
      options: { progressIntervalMs: 250 },
      logger,
    });
    const outcome = await run.run();
    const doneAt = performance.now();
    expect(outcome.phase, outcome.reason).toBe('done');

    const half = progress.find((p) => p.fraction >= 0.5);
    const mbs = (x: number | undefined) => (x === undefined ? '?' : (x / 1e6).toFixed(2));
    const summary = progress
      .map(
        (p) =>
          `${((p.atMs - linkStartedAt) / 1000).toFixed(2)}s ${(p.fraction * 100).toFixed(1)}% ` +
          `eta=${p.etaMs ?? '?'}ms left=${Math.round(((doneAt - p.atMs) / 1000) * 10) / 10}s remaining=${p.remaining} ` +
          `wire=${p.wire ?? '?'} fromQemu=${p.fromQemu ?? '?'} encoded=${p.encoded ?? '?'} MB/s: predicted=${mbs(p.predicted)} measured=${mbs(p.measured)} switchover=${mbs(p.switchover)}`,
      )
      .join('\n');
    console.info(`transfer reports (time from the link's start):\n${summary}`);
    expect(half, `no report at or past 50 %:\n${summary}`).toBeDefined();
    if (half === undefined) return;
    const actualMs = doneAt - half.atMs;
    const etaMs = half.etaMs ?? Number.NaN;
    const error = (etaMs - actualMs) / actualMs;
    console.info(
      `50 % reached ${((half.atMs - linkStartedAt) / 1000).toFixed(2)} s after the link started ` +
        `(rate halved at ${HALVES_AT_MS / 1000} s); ETA shown ${etaMs} ms, actually left ${Math.round(actualMs)} ms ` +
        `(error ${(error * 100).toFixed(1)} %); total ${outcome.stats.totalMs} ms, pause ${outcome.stats.downtimeMs} ms`,
    );
    // The link must have halved before the 50 % point, or this tests nothing about following it.
    expect(half.atMs - linkStartedAt).toBeGreaterThan(HALVES_AT_MS);
    expect(Number.isFinite(etaMs)).toBe(true);
    expect(etaMs).toBeGreaterThan(0);
    console.info(
      `ETA at 50 %: ${Math.abs(error) <= ETA_TARGET ? 'meets' : 'MISSES'} the ${ETA_TARGET * 100} % target ` +
        `(error ${(error * 100).toFixed(1)} %)`,
    );

    // The path the record shows follows the link: PBA's prediction settles near the new rate, and
    // QEMU's switchover bandwidth, the prediction × the recent reduction, falls with it.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
    const settled = progress.filter((p) => p.atMs - linkStartedAt >= HALVES_AT_MS + SETTLE_MS);
    const before = progress.filter((p) => p.atMs - linkStartedAt < HALVES_AT_MS);
    const predictedAfter = median(settled.flatMap((p) => (p.predicted === undefined ? [] : [p.predicted])));
    console.info(
      `after the halving: median predicted ${mbs(predictedAfter)} MB/s (the link: ${mbs(HALVED_BYTES_PER_SEC)})`,
    );
    expect(Math.abs(predictedAfter - HALVED_BYTES_PER_SEC) / HALVED_BYTES_PER_SEC).toBeLessThanOrEqual(0.35);
    const switchoverBefore = median(
      before.flatMap((p) => (p.switchover === undefined ? [] : [p.switchover])),
    );
    const switchoverAfter = median(
      settled.flatMap((p) => (p.switchover === undefined ? [] : [p.switchover])),
    );
    console.info(
      `switchover bandwidth: median ${mbs(switchoverBefore)} MB/s before the halving, ${mbs(switchoverAfter)} after`,
    );
    expect(switchoverAfter).toBeLessThanOrEqual(switchoverBefore * 0.75);
    vm = incoming.vm as VmHandle;
  }, 240_000);
});

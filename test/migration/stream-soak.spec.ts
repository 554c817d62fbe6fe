/**
 * Migrations back and forth between two QEMUs, with a tap at each end of DWCP's data path: every
 * round checks that the destination QEMU was fed exactly the bytes the source QEMU wrote, and that
 * the guest lives on afterwards (two integrity checks, heartbeats, no kernel oops on the console).
 *
 * By default 3 rounds through the native data path at loopback speed. The knobs reproduce the
 * QEMU 7.2 TCG fault docs/migration.md describes (guest writes lost in precopy rounds):
 * - DWCP_SOAK_ROUNDS: rounds (default 3); a broken guest is replaced by a fresh one, and every
 *   failure is reported at the end;
 * - DWCP_SOAK_METHOD: `dwcp` (default) or `qemu` (QEMU to QEMU over a unix socket, same knobs);
 * - DWCP_SOAK_BANDWIDTH: the path rate the run is told, bytes/s (default 1 GiB/s); QEMU's
 *   max-bandwidth is twice it, so a low one makes QEMU iterate;
 * - DWCP_SOAK_LINK (qemu method): QEMU uncapped, its stream carried by a link this slow, bytes/s;
 * - DWCP_SOAK_DOWNTIME_MS: downtime-limit (default the node's choice);
 * - DWCP_SOAK_AUTOCONVERGE=0: auto-converge off (qemu method);
 * - DWCP_SOAK_QEMU: the QEMU binary (a wrapper, e.g. one that adds `thread=single`).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type MigrationUri, QemuDriver, type VmHandle, type VmSpec, waitForLine } from '@novacron/hypervisor';
import { type IncomingHypervisor, IncomingMigration, MigrationRun } from '@novacron/migration';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testDataPaths } from '../../bench/src/data-paths';
import { watchConsole } from '../../bench/src/migrate-guest';
import { StreamTap, tappedSink, tappedSource } from '../../bench/src/stream-tap';
import { ensureGuestBuilt, firstEvent, guestSpec, heartbeatSeq, qemuSkipReason, READY } from '../guest/guest';
import { describeUnless } from '../tools';

const MiB = 1024 * 1024;
const rounds = Number(process.env.DWCP_SOAK_ROUNDS ?? 3);
const bandwidth = Number(process.env.DWCP_SOAK_BANDWIDTH ?? 1024 * MiB);
/** `dwcp` (the native data path) or `qemu` (QEMU to QEMU over a unix socket, the same knobs). */
const method = process.env.DWCP_SOAK_METHOD ?? 'dwcp';
const downtimeLimitMs = process.env.DWCP_SOAK_DOWNTIME_MS
  ? Number(process.env.DWCP_SOAK_DOWNTIME_MS)
  : undefined;

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('migration streams arrive byte for byte, and the guest lives on', () => {
  const logs: string[] = [];
  const logger = { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(`WARN ${m}`) };
  const driver = new QemuDriver({
    logger,
    ...(process.env.DWCP_SOAK_QEMU ? { qemuBinary: process.env.DWCP_SOAK_QEMU } : {}),
  });
  let workDir: string;
  let vm: VmHandle;
  let reference: string;
  const destinationDriver: IncomingHypervisor = {
    prepareIncoming: (spec: VmSpec, uri: MigrationUri) => driver.prepareIncoming(spec, uri),
    status: (v) => driver.status(v),
    destroy: (v) => driver.destroy(v),
    events: (v) => driver.events(v),
    stderrTail: (v) => driver.stderrTail(v),
  };

  beforeAll(async () => {
    await ensureGuestBuilt();
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-soak-'));
    vm = await bootGuest('soak-0');
  }, 120_000);

  /** A freshly booted test guest, once it has filled its memory; `reference` is its checksum. */
  async function bootGuest(name: string): Promise<VmHandle> {
    const booted = await driver.launch(guestSpec(name));
    const lines = driver.serialLines(booted, { replay: true });
    reference = (await waitForLine(lines, READY, { timeoutMs: 45_000, what: 'DWCP-READY' }))[1] as string;
    await heartbeatSeq(lines);
    await lines.return?.();
    return booted;
  }

  afterAll(async () => {
    await driver.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
  });

  let qemuDestination: VmHandle | undefined;
  /** QEMU alone: the same capabilities and parameters, straight into the destination's socket. */
  async function qemuAlone(
    id: string,
  ): Promise<{ phase: string; reason?: string; stats: { downtimeMs?: number } }> {
    const socket = join(workDir, `${id}.sock`);
    const destination = await driver.prepareIncoming(guestSpec(id), `unix:${socket}`);
    const resumed = firstEvent(driver.events(destination), (e) => e.type === 'resume', 120_000);
    const stopped = firstEvent(driver.events(vm), (e) => e.type === 'stop', 120_000);
    await driver.setMigrationCapabilities(vm, { autoConverge: process.env.DWCP_SOAK_AUTOCONVERGE !== '0' });
    // DWCP_SOAK_LINK (bytes/s): QEMU uncapped, its stream carried through a link that slow instead.
    const link = process.env.DWCP_SOAK_LINK ? Number(process.env.DWCP_SOAK_LINK) : undefined;
    await driver.setMigrationParameters(vm, {
      maxBandwidthBytesPerSec: link === undefined ? Math.round(bandwidth * 2) : 2 ** 40,
      downtimeLimitMs: downtimeLimitMs ?? 300,
    });
    const tap = link === undefined ? undefined : new StreamTap(`${socket}.link`, socket, link);
    await tap?.listen();
    await driver.migrate(vm, `unix:${tap?.path ?? socket}`);
    const [stop, resume] = await Promise.all([stopped, resumed]);
    await driver.destroy(vm);
    await tap?.close();
    qemuDestination = destination;
    const pause = stop && resume ? resume.atMs - stop.atMs : undefined;
    return resume
      ? { phase: 'done', stats: { downtimeMs: pause } }
      : { phase: 'failed', reason: 'no resume', stats: {} };
  }

  it(
    `${rounds} rounds: the destination's stream equals the source's, and the guest stays well`,
    async () => {
      const { sinkPath, sourcePath } = testDataPaths(workDir, 'soak-test');
      const results: string[] = [];
      const failures: string[] = [];
      for (let round = 1; round <= rounds; round++) {
        const taps: { source?: StreamTap; sink?: StreamTap } = {};
        const id = `soak-${round}`;
        const incoming = new IncomingMigration({
          id,
          spec: guestSpec(`soak-${round}`),
          driver: destinationDriver,
          dataPath: tappedSink(sinkPath, (t) => {
            taps.sink = t;
          }),
          logger,
        });
        const run = new MigrationRun({
          id,
          source: {
            driver,
            vm,
            dataPath: tappedSource(sourcePath, (t) => {
              taps.source = t;
            }),
          },
          destination: incoming,
          onPhase: async () => {},
          options: {
            measured: { bandwidthBytesPerSec: bandwidth, rttMs: 0.1 },
            ...(downtimeLimitMs === undefined ? {} : { downtimeLimitMs }),
          },
          logger,
        });
        const outcome = method === 'qemu' ? await qemuAlone(id) : await run.run();
        const sent = await taps.source?.reading();
        const fed = await taps.sink?.reading();
        const destination = method === 'qemu' ? qemuDestination : incoming.vm;
        const watch = destination
          ? await watchConsole(driver.serialLines(destination, { replay: true }), reference)
          : { integrityOk: 0, trouble: undefined, seen: [] };
        const { integrityOk: integrity, trouble, seen } = watch;
        results.push(
          `round ${round}: ${outcome.phase}${outcome.reason ? ` (${outcome.reason})` : ''}, pause ${outcome.stats.downtimeMs} ms, ` +
            `source wrote ${sent?.bytes} B ${sent?.sha256.slice(0, 12)}, destination fed ${fed?.bytes} B ${fed?.sha256.slice(0, 12)}, ` +
            `integrity ok ×${integrity}${trouble ? `, TROUBLE: ${trouble}` : ''}`,
        );
        console.info(results.at(-1));
        if (outcome.phase !== 'done') failures.push(`round ${round}: ${outcome.reason}`);
        if (
          method === 'dwcp' &&
          (fed?.connections !== 1 || fed?.bytes !== sent?.bytes || fed?.sha256 !== sent?.sha256)
        ) {
          failures.push(`round ${round}: the destination QEMU was not fed the source's stream`);
        }
        if (trouble !== undefined || integrity < 2) {
          failures.push(
            `round ${round}: the guest ${trouble ?? `passed ${integrity} of 2 integrity checks`}`,
          );
          console.info(seen.slice(-30).join('\n'));
        }
        if (outcome.phase === 'done' && destination && trouble === undefined && integrity === 2) {
          vm = destination;
        } else {
          // A broken guest is not migrated on: a fresh one takes its place.
          if (destination) await driver.destroy(destination).catch(() => undefined);
          if (outcome.phase === 'done') vm = await bootGuest(`soak-${round}-fresh`);
        }
      }
      console.info(results.join('\n'));
      expect(failures).toEqual([]);
    },
    60_000 + rounds * 60_000,
  );
});

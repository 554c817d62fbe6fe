/**
 * SIGKILL of the *source* node daemon mid-migration (issue 13, items 2 and 4), with real QEMU and
 * three real node processes whose VMs outlive them. The guest's console file on the source is the
 * witness that it never stops; the restarted source takes its QEMU over, asks the target whether
 * its copy runs (it cannot: the stream broke off with the daemon), and rolls the migration back.
 */

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { installImage } from '../../apps/cli/src/demo/environment';
import { LocalCluster, type NodeProcess, until } from '../cluster/harness';
import {
  ensureGuestBuilt,
  HEARTBEAT,
  heartbeatSeqs,
  isAlive,
  qemuNodeArgs,
  qemuSkipReason,
  READY,
} from '../guest/guest';
import { describeUnless } from '../tools';

const MiB = 1024 * 1024;

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('SIGKILL of the source node mid-migration (real QEMU, 3 nodes, VMs outlive nodes)', () => {
  const imagesDir = mkdtempSync(join(tmpdir(), 'dwcp-images-'));
  const cluster = new LocalCluster(
    qemuNodeArgs(imagesDir, 'tcg', '--migration-orphan-timeout-ms', '3000'),
    undefined,
    { vmsOutliveNodes: true },
  );
  const report: string[] = [];
  const ids = new Map<NodeProcess, string>();
  const node = (i: number) => cluster.nodes[i] as NodeProcess;
  const idOf = (n: NodeProcess) => ids.get(n) as string;

  beforeAll(async () => {
    await ensureGuestBuilt();
    installImage(imagesDir, 'qemu');
    await cluster.start(3);
    for (const n of cluster.nodes) ids.set(n, (await cluster.statusOf(n))?.nodeId as string);
  }, 660_000);

  afterAll(async () => {
    await cluster.stop();
    rmSync(imagesDir, { recursive: true, force: true });
    console.info(report.join('\n'));
  }, 60_000);

  const api = <T>(n: NodeProcess, method: string, path: string, body?: unknown, expected = 200) =>
    cluster.adminCall<T>(n, method, path, body, expected);

  const migrationOf = (id: string) => api<MigrationRecord>(node(0), 'GET', `/v1/migrations/${id}`);

  /** The console file QEMU writes on `n`, read whether or not a node runs there. */
  const consoleFile = (n: NodeProcess, qemuName: string) =>
    readFileSync(join(n.dataDir, 'vms', qemuName, 'console.log'), 'utf8').split('\n');

  it('the guest beats on at the source throughout, the restarted source adopts it and rolls back; a retry succeeds', async () => {
    const source = node(1);
    const target = node(2);
    const vm = await api<VmRecord>(
      source,
      'POST',
      '/v1/vms',
      { name: 'kept', image: 'test-guest', vcpus: 1, memoryMiB: 128, nodeId: idOf(source) },
      201,
    );
    await api(source, 'POST', `/v1/vms/${vm.id}/start`);
    await until(
      'the guest boots on the source',
      () => {
        const lines = consoleFile(source, vm.id);
        return lines.some((l) => READY.test(l)) && heartbeatSeqs(lines).length > 0 ? true : undefined;
      },
      90_000,
    );
    const [pid] = source.qemuPids();
    const started = performance.now();

    // 1 MiB/s keeps the transfer going for many seconds; the kill waits for bytes really moving.
    const created = await api<MigrationRecord>(
      node(0),
      'POST',
      '/v1/migrations',
      { vmId: vm.id, targetNodeId: idOf(target), maxBandwidthBytesPerSec: MiB },
      201,
    );
    const moving = await until(
      'the stream is under way',
      async () => {
        const m = await migrationOf(created.id);
        if (['done', 'failed', 'cancelled'].includes(m.phase))
          throw new Error(`ended ${m.phase}: ${m.reason}`);
        return m.phase === 'transferring' && (m.stats.bytesIn ?? 0) > 2 * MiB ? m : undefined;
      },
      60_000,
    );
    expect(target.qemuPids()).toHaveLength(1);
    await source.signal('SIGKILL');
    const killedAt = performance.now();
    expect(isAlive(pid), 'the source QEMU after its node was SIGKILLed').toBe(true);
    // The target's sink loses its source: its destination QEMU goes by itself while the source is down.
    await until('the target drops its destination QEMU', () => target.qemuPids().length === 0, 20_000);
    const whileDown = heartbeatSeqs(consoleFile(source, vm.id)).at(-1) as number;

    source.start();
    const m = await until(
      'the migration ends',
      async () => {
        const r = await migrationOf(created.id);
        return ['done', 'failed', 'cancelled'].includes(r.phase) ? r : undefined;
      },
      60_000,
    );
    const settledMs = Math.round(performance.now() - killedAt);
    expect(m.phase).toBe('failed');
    expect(m.reason).toMatch(/the source node lost the migration/);
    expect(await source.metric('dwcp_host_vms_adopted_total')).toBe(1);
    expect(source.qemuPids()).toEqual([pid]);
    expect(target.qemuPids()).toEqual([]);
    const record = await api<VmRecord>(node(0), 'GET', `/v1/vms/${vm.id}`);
    expect(record).toMatchObject({ nodeId: idOf(source), state: 'running' });
    await until(
      'heartbeats after the rollback, in the restarted node API',
      async () => {
        const r = await source.api<{ lines: string[] }>(
          'GET',
          `/v1/vms/${vm.id}/console?tail=50`,
          cluster.adminToken,
        );
        return r.status === 200 && (heartbeatSeqs(r.body.lines).at(-1) ?? 0) > whileDown + 1
          ? true
          : undefined;
      },
      15_000,
    );
    // One boot, and every heartbeat without a gap across the kill, the restart and the rollback.
    const lines = consoleFile(source, vm.id);
    const seqs = heartbeatSeqs(lines);
    expect(lines.filter((l) => READY.test(l))).toHaveLength(1);
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] as number) + i));
    report.push(
      `source SIGKILLed at ${((moving.stats.bytesIn ?? 0) / MiB).toFixed(1)} MiB from QEMU: ${m.phase} ` +
        `(${m.reason}) ${settledMs} ms after the kill; QEMU pid ${pid} throughout, heartbeats ${seqs[0]}..${seqs.at(-1)} without a gap`,
    );

    const retry = await api<MigrationRecord>(
      node(0),
      'POST',
      '/v1/migrations',
      { vmId: vm.id, targetNodeId: idOf(target) },
      201,
    );
    const done = await until(
      'the retry ends',
      async () => {
        const r = await migrationOf(retry.id);
        return ['done', 'failed', 'cancelled'].includes(r.phase) ? r : undefined;
      },
      90_000,
    );
    expect(done.phase, done.reason).toBe('done');
    await until('the source QEMU is gone after the retry', () => !isAlive(pid), 10_000);
    expect(target.qemuPids()).toHaveLength(1);
    expect(consoleFile(target, `${vm.id}.${retry.id}`).some((l) => HEARTBEAT.test(l))).toBe(true);
    report.push(
      `retry done in ${done.stats.totalMs} ms; whole case ${Math.round(performance.now() - started)} ms`,
    );
  }, 240_000);
});

/**
 * Live migration end to end between node processes: three real nodes (Raft, mutual TLS), real QEMU
 * running the test guest, the migration asked for over the REST API and carried out by the nodes
 * themselves (the source node's MigrationRun, the target's IncomingMigration behind the peer RPCs).
 * Then the failures: cancel, SIGKILL of the target node, SIGKILL of the destination QEMU. After each,
 * the VM runs on its source, no destination QEMU is left, the record says why, and a retry succeeds.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { installImage } from '../../apps/cli/src/demo/environment';
import { LocalCluster, type NodeProcess, until } from '../cluster/harness';
import {
  ensureGuestBuilt,
  heartbeatSeqs,
  INTEGRITY,
  qemuNodeArgs,
  qemuSkipReason,
  READY,
} from '../guest/guest';
import { describeUnless } from '../tools';

const MiB = 1024 * 1024;

/**
 * PIDs of QEMU processes whose `-name` starts with `pattern`. A VM's QEMU is named after it (`<vmId>`)
 * where it was launched, and `<vmId>.<migrationId>` where a migration brought it.
 */
function qemuPids(pattern: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', `qemu-system-x86_64 -name ${pattern}`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('live migration between node processes (real QEMU, 3 nodes)', () => {
  const imagesDir = mkdtempSync(join(tmpdir(), 'dwcp-images-'));
  const cluster = new LocalCluster(
    qemuNodeArgs(imagesDir, undefined, '--migration-orphan-timeout-ms', '3000'),
  );
  const report: string[] = [];
  const vmIds: string[] = [];
  let nodeIdOf: Map<NodeProcess, string>;

  beforeAll(async () => {
    await ensureGuestBuilt();
    installImage(imagesDir, 'qemu');
    await cluster.start(3);
    nodeIdOf = new Map();
    for (const n of cluster.nodes) {
      const s = await cluster.statusOf(n);
      if (!s) throw new Error(`no status from ${n.name}`);
      nodeIdOf.set(n, s.nodeId);
    }
  }, 660_000);

  afterAll(async () => {
    // SIGTERM first: a node destroys its VMs when it stops.
    for (const n of cluster.nodes) if (n.running) await n.signal('SIGTERM');
    const left = vmIds.flatMap((id) => qemuPids(id));
    for (const pid of left) process.kill(pid, 'SIGKILL');
    await cluster.stop();
    rmSync(imagesDir, { recursive: true, force: true });
    console.info(report.join('\n'));
    expect(left, 'QEMU processes left after the nodes stopped').toEqual([]);
  }, 60_000);

  const node = (i: number) => cluster.nodes[i] as NodeProcess;
  const idOf = (n: NodeProcess) => nodeIdOf.get(n) as string;

  const api = <T>(n: NodeProcess, method: string, path: string, body?: unknown, expected = 200) =>
    cluster.adminCall<T>(n, method, path, body, expected);

  /** The VM's console as the node that runs it serves it, or undefined while that node has none. */
  async function consoleOf(n: NodeProcess, vmId: string): Promise<string[] | undefined> {
    const r = await n.api<{ lines: string[] }>('GET', `/v1/vms/${vmId}/console?tail=500`, cluster.adminToken);
    return r.status === 200 ? r.body.lines : undefined;
  }

  async function bootVm(name: string, on: NodeProcess): Promise<string> {
    const vm = await api<VmRecord>(
      on,
      'POST',
      '/v1/vms',
      { name, image: 'test-guest', vcpus: 1, memoryMiB: 128, nodeId: idOf(on) },
      201,
    );
    vmIds.push(vm.id);
    await api(on, 'POST', `/v1/vms/${vm.id}/start`);
    await until(
      `${name} boots on ${on.name}`,
      async () => {
        const lines = await consoleOf(on, vm.id);
        return lines?.some((l) => READY.test(l)) && heartbeatSeqs(lines).length > 0 ? true : undefined;
      },
      90_000,
    );
    return vm.id;
  }

  async function migrate(vmId: string, to: NodeProcess, extra: Record<string, unknown> = {}) {
    return api<MigrationRecord>(
      node(0),
      'POST',
      '/v1/migrations',
      { vmId, targetNodeId: idOf(to), ...extra },
      201,
    );
  }

  async function migrationOf(id: string): Promise<MigrationRecord> {
    for (const n of cluster.nodes.filter((x) => x.live)) {
      const r = await n
        .api<MigrationRecord>('GET', `/v1/migrations/${id}`, cluster.adminToken)
        .catch(() => undefined);
      if (r?.status === 200) return r.body;
    }
    throw new Error('no node answers');
  }

  const ended = (id: string, ms = 120_000) =>
    until(
      `migration ${id} ends`,
      async () => {
        const m = await migrationOf(id).catch(() => undefined);
        return m && ['done', 'failed', 'cancelled'].includes(m.phase) ? m : undefined;
      },
      ms,
    );

  const transferring = (id: string) =>
    until(
      `migration ${id} transfers`,
      async () => {
        const m = await migrationOf(id).catch(() => undefined);
        if (m && ['done', 'failed', 'cancelled'].includes(m.phase))
          throw new Error(`ended ${m.phase}: ${m.reason}`);
        return m?.phase === 'transferring' && (m.stats.bytesIn ?? 0) > 0 ? m : undefined;
      },
      60_000,
    );

  /** The VM runs on `on`: its record says so, and its heartbeats there keep counting past `after`. */
  async function expectRunningOn(vmId: string, on: NodeProcess, after = -1): Promise<number> {
    const vm = await api<VmRecord>(on, 'GET', `/v1/vms/${vmId}`);
    expect(vm).toMatchObject({ nodeId: idOf(on), state: 'running' });
    return until(
      `heartbeats of ${vmId} on ${on.name} go past ${after}`,
      async () => {
        const beats = heartbeatSeqs((await consoleOf(on, vmId)) ?? []);
        const last = beats.at(-1);
        return last !== undefined && last > after + 1 ? last : undefined;
      },
      30_000,
    );
  }

  function describeStats(m: MigrationRecord): string {
    const s = m.stats;
    return (
      `${((s.bytesIn ?? 0) / MiB).toFixed(1)} MiB from QEMU → ${((s.bytesOnWire ?? 0) / MiB).toFixed(1)} MiB on the wire, ` +
      `dedup ${(s.dedupRatio ?? 0).toFixed(3)}, compression ${(s.compressionRatio ?? 0).toFixed(2)}, ` +
      `pause ${s.downtimeMs} ms, total ${s.totalMs} ms`
    );
  }

  let first: MigrationRecord;
  let guestA: string;

  it('moves a running guest from n2 to n3: done, heartbeats go on there, integrity holds, nothing left on n2', async () => {
    guestA = await bootVm('guest-a', node(1));
    const beatsBefore = heartbeatSeqs((await consoleOf(node(1), guestA)) ?? []).at(-1) ?? 0;
    const created = await migrate(guestA, node(2));
    expect(created).toMatchObject({
      phase: 'pending',
      sourceNodeId: idOf(node(1)),
      targetNodeId: idOf(node(2)),
    });
    first = await ended(created.id);
    expect(first.phase, first.reason).toBe('done');
    expect(first.stats.bytesIn).toBeGreaterThan(16 * MiB);
    expect(first.stats.bytesOnWire).toBeLessThan(first.stats.bytesIn ?? 0);
    expect(first.stats.downtimeMs).toBeGreaterThanOrEqual(0);
    await expectRunningOn(guestA, node(2), beatsBefore);
    const integrity = await until(
      'an integrity check on the destination after the switch-over',
      async () => {
        const lines = (await consoleOf(node(2), guestA)) ?? [];
        const after = lines.slice(lines.findIndex((l) => l.includes(`seq=${beatsBefore + 1}`)) + 1);
        const checks = after.flatMap((l) => INTEGRITY.exec(l)?.[1] ?? []);
        return checks.length >= 2 ? checks : undefined;
      },
      30_000,
    );
    expect(integrity).not.toContain('FAIL');
    expect((await node(1).api('GET', `/v1/vms/${guestA}/console`, cluster.adminToken)).status).toBe(409);
    expect(qemuPids(`${guestA} `)).toHaveLength(0);
    expect(qemuPids(`${guestA}.${created.id}`)).toHaveLength(1);
    expect(qemuPids(guestA)).toHaveLength(1);
    expect(await node(1).metric('dwcp_migration_migrations_total')).toBe(1);
    // The nodes meter the migration's AMST transfer in their own registries (libs/transport's module).
    const sent = await node(1).metric('dwcp_amst_sent_bytes_total');
    const wire = first.stats.bytesOnWire ?? 0;
    expect(sent, 'AMST bytes the source node metered against the run').toBeGreaterThan(wire * 0.9);
    expect(sent).toBeLessThan(wire * 1.1);
    expect(await node(2).metric('dwcp_amst_received_bytes_total')).toBe(sent);
    expect(await node(1).metric('dwcp_amst_transfers_total')).toBe(1);
    expect(await node(2).metric('dwcp_amst_transfers_total')).toBe(1);
    const exposition = await (await fetch(`${node(2).apiUrl}/metrics`)).text();
    for (const name of ['dwcp_amst_frames_rejected_total', 'dwcp_amst_connections_corrupted_total'])
      expect(exposition, `${name} registered by the target node`).toContain(`# TYPE ${name} counter`);
    expect(await node(2).metric('dwcp_amst_frames_rejected_total')).toBe(0);
    // PBA: the source measured the path to the target during the transfer, and the record says so.
    expect(first.path, 'the path the source measured').toBeDefined();
    const path = first.path as NonNullable<MigrationRecord['path']>;
    expect(path.samples).toBeGreaterThan(0);
    expect(path.measuredBytesPerSec).toBeGreaterThan(0);
    expect(path.streams).toBeGreaterThan(0);
    expect(path.basis).toMatch(/connections/);
    // The codec HDE encoded with at the end: zstd at the chosen level, or cheaper if the encoder was the bottleneck.
    expect(path.codec).toMatch(/^(zstd -?\d+|lz4|none)$/);
    if (path.codec !== `zstd ${path.zstdLevel}`) expect(path.basis).toMatch(/codec now /);
    const seen = await api<{
      samples: number;
      fromNodeId: string;
      measured?: { goodputBytesPerSec: number; appLimited?: boolean; kernel?: { minRttMs?: number } };
    }>(node(1), 'GET', `/v1/nodes/${idOf(node(2))}/path`);
    expect(seen).toMatchObject({ nodeId: idOf(node(2)), fromNodeId: idOf(node(1)), samples: path.samples });
    expect(seen.measured?.goodputBytesPerSec).toBeGreaterThan(0);
    // The kernel's own view of the same connections (TCP_INFO) comes with each sample.
    expect(typeof seen.measured?.kernel?.minRttMs).toBe('number');
    // A sample the path limited teaches PBA its rate. (One that QEMU or the encoder limited does
    // not, unless it beats the prediction: path-estimator.spec. Whether the last sample here was
    // one says nothing of the earlier ones or of the probe, so only this direction is checked.)
    if (seen.measured?.appLimited === false) expect(path.predictedBytesPerSec).toBeGreaterThan(0);
    expect(await node(1).metric('dwcp_pba_samples_total')).toBe(path.samples);
    report.push(
      `first migration (guest-a n2→n3): ${describeStats(first)}; AMST metered ${sent} bytes; path ${JSON.stringify(first.path)}`,
    );
  }, 180_000);

  it('a second VM from the same image, to the same node, sends far fewer bytes (cross-VM dedup)', async () => {
    const guestB = await bootVm('guest-b', node(1));
    const m = await ended((await migrate(guestB, node(2))).id);
    expect(m.phase, m.reason).toBe('done');
    const ratio = (m.stats.bytesOnWire ?? 0) / (first.stats.bytesOnWire ?? 1);
    report.push(
      `second VM (guest-b n2→n3): ${describeStats(m)}; ${(ratio * 100).toFixed(1)} % of the first's wire bytes`,
    );
    expect(m.stats.dedupRatio).toBeGreaterThan(0.3);
    expect(ratio).toBeLessThan(0.6);
    await expectRunningOn(guestB, node(2));
    vmIds.push(guestB);
  }, 180_000);

  it('cancel while transferring: cancelled with the reason, the VM keeps running on its source, then a retry succeeds', async () => {
    const created = await migrate(guestA, node(1), { maxBandwidthBytesPerSec: MiB });
    await transferring(created.id);
    const beat = heartbeatSeqs((await consoleOf(node(2), guestA)) ?? []).at(-1) ?? 0;
    const cancelled = await api<MigrationRecord>(node(0), 'POST', `/v1/migrations/${created.id}/cancel`, {
      reason: 'operator changed their mind',
    });
    expect(cancelled).toMatchObject({ phase: 'cancelled', reason: 'operator changed their mind' });
    await expectRunningOn(guestA, node(2), beat);
    await until(
      'the destination QEMU is gone',
      async () => (qemuPids(`${guestA}.${created.id}`).length === 0 ? true : undefined),
      20_000,
    );
    expect(qemuPids(guestA)).toHaveLength(1);
    const retry = await ended((await migrate(guestA, node(1))).id);
    expect(retry.phase, retry.reason).toBe('done');
    await expectRunningOn(guestA, node(1));
    report.push(`cancel while transferring, then retry: ${describeStats(retry)}`);
  }, 180_000);

  it('SIGKILL of the target node mid-transfer: failed with a reason, the VM keeps running, no orphan; retry after restart', async () => {
    const target = node(2);
    const created = await migrate(guestA, target, { maxBandwidthBytesPerSec: MiB });
    await transferring(created.id);
    expect(qemuPids(`${guestA}.${created.id}`)).toHaveLength(1);
    const beat = heartbeatSeqs((await consoleOf(node(1), guestA)) ?? []).at(-1) ?? 0;
    await target.signal('SIGKILL');
    const m = await ended(created.id, 60_000);
    expect(m.phase).toBe('failed');
    expect(m.reason).toBeTruthy();
    await expectRunningOn(guestA, node(1), beat);
    // Its QEMU processes die with it (parent-death signal): no orphan, and the VM has one QEMU.
    await until(
      'the killed node leaves no destination QEMU',
      async () => (qemuPids(`${guestA}.${created.id}`).length === 0 ? true : undefined),
      20_000,
    );
    expect(qemuPids(guestA)).toHaveLength(1);
    target.start();
    await until(
      'the target is back',
      async () => ((await cluster.statusOf(target)) ? true : undefined),
      60_000,
    );
    const retry = await ended((await migrate(guestA, target)).id);
    expect(retry.phase, retry.reason).toBe('done');
    await expectRunningOn(guestA, target);
    report.push(`target node SIGKILLed mid-transfer: failed (${m.reason}); retry ${describeStats(retry)}`);
  }, 240_000);

  it('SIGKILL of the destination QEMU mid-transfer: failed, the VM keeps running on its source; a retry succeeds', async () => {
    const source = node(2);
    const created = await migrate(guestA, node(1), { maxBandwidthBytesPerSec: MiB });
    await transferring(created.id);
    const [destination] = qemuPids(`${guestA}.${created.id}`);
    if (destination === undefined) throw new Error('no destination QEMU while transferring');
    const beat = heartbeatSeqs((await consoleOf(source, guestA)) ?? []).at(-1) ?? 0;
    process.kill(destination, 'SIGKILL');
    const m = await ended(created.id, 60_000);
    expect(m.phase).toBe('failed');
    expect(m.reason).toBeTruthy();
    await expectRunningOn(guestA, source, beat);
    expect(qemuPids(`${guestA}.${created.id}`)).toHaveLength(0);
    const retry = await ended((await migrate(guestA, node(1))).id);
    expect(retry.phase, retry.reason).toBe('done');
    await expectRunningOn(guestA, node(1));
    report.push(
      `destination QEMU SIGKILLed mid-transfer: failed (${m.reason}); retry ${describeStats(retry)}`,
    );
  }, 240_000);
});

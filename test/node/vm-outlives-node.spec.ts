/**
 * VMs outlive their node daemon (issue 13, item 4), with real QEMU and a real node process: the node
 * is SIGKILLed again and again while its guest runs, and each restart takes the same QEMU over. The
 * guest's console file is the witness: its heartbeats go on, one a second, with no gap and no
 * reboot. Then a stop through the API ends it, SIGTERM leaves a VM running, `dwcp node stop
 * --stop-vms` ends it, and a QEMU that died while no node watched is reported and booted again.
 */

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { VmRecord } from '@novacron/cluster-state';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { installImage } from '../../apps/cli/src/demo/environment';
import { LocalCluster, type NodeProcess, until } from '../cluster/harness';
import {
  ensureGuestBuilt,
  heartbeatSeqs,
  isAlive,
  qemuNodeArgs,
  qemuSkipReason,
  READY,
} from '../guest/guest';
import { describeUnless } from '../tools';

const REPETITIONS = 10;
const CLI = resolve(__dirname, '..', '..', 'apps', 'cli', 'dist', 'main.js');

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('VMs outlive their node daemon (real QEMU, node process SIGKILLed and restarted)', () => {
  const imagesDir = mkdtempSync(join(tmpdir(), 'dwcp-images-'));
  const cluster = new LocalCluster(qemuNodeArgs(imagesDir, 'tcg'), undefined, { vmsOutliveNodes: true });
  const report: string[] = [];
  let n: NodeProcess;
  let nodeId: string;

  beforeAll(async () => {
    await ensureGuestBuilt();
    installImage(imagesDir, 'qemu');
    await cluster.start(1);
    n = cluster.nodes[0] as NodeProcess;
    nodeId = (await cluster.statusOf(n))?.nodeId as string;
  }, 660_000);

  afterAll(async () => {
    const left = n ? n.qemuPids() : [];
    await cluster.stop();
    rmSync(imagesDir, { recursive: true, force: true });
    console.info(report.join('\n'));
    expect(left, 'QEMU processes left at the end').toEqual([]);
  }, 60_000);

  const api = <T>(method: string, path: string, body?: unknown, expected = 200) =>
    cluster.adminCall<T>(n, method, path, body, expected);

  const consoleFile = (vmId: string) => join(n.dataDir, 'vms', vmId, 'console.log');

  async function bootVm(name: string): Promise<string> {
    const vm = await api<VmRecord>(
      'POST',
      '/v1/vms',
      { name, image: 'test-guest', vcpus: 1, memoryMiB: 128, nodeId },
      201,
    );
    await api('POST', `/v1/vms/${vm.id}/start`);
    await until(
      `${name} boots`,
      async () => {
        const r = await n.api<{ lines: string[] }>(
          'GET',
          `/v1/vms/${vm.id}/console?tail=500`,
          cluster.adminToken,
        );
        return (
          r.status === 200 &&
          r.body.lines.some((l) => READY.test(l)) &&
          heartbeatSeqs(r.body.lines).length > 0
        );
      },
      90_000,
    );
    return vm.id;
  }

  /** Restarts the node and waits until it serves and has taken over what it found. */
  async function restart(): Promise<void> {
    n.start();
    await until('the node serves again', async () => (await cluster.statusOf(n))?.role === 'leader', 30_000);
  }

  it(`SIGKILL of the node ${REPETITIONS} times: the same QEMU is taken over each time, and its heartbeats never stop`, async () => {
    const vmId = await bootVm('survivor');
    const [pid] = n.qemuPids();
    expect(pid).toBeDefined();
    const started = performance.now();
    const firstSeq = heartbeatSeqs(readFileSync(consoleFile(vmId), 'utf8').split('\n')).at(-1) as number;
    for (let i = 1; i <= REPETITIONS; i++) {
      const killedAt = performance.now();
      await n.signal('SIGKILL');
      expect(isAlive(pid), `QEMU after node kill ${i}`).toBe(true);
      await restart();
      await until(
        `kill ${i}: the VM taken over`,
        async () => (await n.metric('dwcp_host_vms_adopted_total')) === 1,
        15_000,
      );
      expect(await n.metric('dwcp_host_vms_adopt_failed_total')).toBe(0);
      expect(n.qemuPids()).toEqual([pid]);
      const vm = await api<VmRecord>('GET', `/v1/vms/${vmId}`);
      expect(vm.state).toBe('running');
      // The restarted node's console shows the guest going on, with heartbeats from while it was down.
      const before = heartbeatSeqs(readFileSync(consoleFile(vmId), 'utf8').split('\n')).at(-1) as number;
      await until(
        `kill ${i}: a new heartbeat in the API's console`,
        async () => {
          const r = await n.api<{ lines: string[] }>(
            'GET',
            `/v1/vms/${vmId}/console?tail=50`,
            cluster.adminToken,
          );
          return r.status === 200 && (heartbeatSeqs(r.body.lines).at(-1) ?? 0) > before;
        },
        10_000,
      );
      report.push(`kill ${i}: node back and VM taken over in ${Math.round(performance.now() - killedAt)} ms`);
    }
    const elapsedS = (performance.now() - started) / 1000;
    const lines = readFileSync(consoleFile(vmId), 'utf8').split('\n');
    const seqs = heartbeatSeqs(lines);
    // One boot, and every heartbeat from the first to the last: no reboot, no stall.
    expect(lines.filter((l) => READY.test(l))).toHaveLength(1);
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] as number) + i));
    // A heartbeat a second all along (TCG on a busy host runs the guest's clock a little slow).
    expect((seqs.at(-1) as number) - firstSeq).toBeGreaterThan(elapsedS * 0.7);
    report.push(
      `${REPETITIONS} SIGKILLs in ${elapsedS.toFixed(1)} s: QEMU pid ${pid} throughout, heartbeats ${seqs[0]}..${seqs.at(-1)} without a gap`,
    );

    await api('POST', `/v1/vms/${vmId}/stop`);
    await until('the VM stops', () => !isAlive(pid), 15_000);
    await until('its runtime dir goes', () => n.qemuPids().length === 0, 5_000);
    await api('DELETE', `/v1/vms/${vmId}`);
  }, 110_000);

  it('SIGTERM leaves the VM running; dwcp node stop --stop-vms ends it; a QEMU that died meanwhile is reported and booted again', async () => {
    const vmId = await bootVm('stopper');
    const [pid] = n.qemuPids();
    await n.signal('SIGTERM');
    expect(isAlive(pid)).toBe(true);

    // While no node runs, the QEMU dies: the restarted node reports it and boots the VM again.
    process.kill(pid as number, 'SIGKILL');
    await until('QEMU gone', () => !isAlive(pid), 5_000);
    await restart();
    await until(
      'the failed take-over counted',
      async () => (await n.metric('dwcp_host_vms_adopt_failed_total')) === 1,
      15_000,
    );
    expect(n.log).toMatch(/could not take over a VM left running/);
    const [relaunched] = await until('the VM launched again', () => {
      const pids = n.qemuPids();
      return pids.length === 1 && pids[0] !== pid ? pids : undefined;
    });

    await promisify(execFile)(
      process.execPath,
      [CLI, 'node', 'stop', '--data-dir', n.dataDir, '--stop-vms'],
      {
        timeout: 60_000,
      },
    );
    expect(n.running).toBe(false);
    await until('--stop-vms ended the VM', () => !isAlive(relaunched), 10_000);
    expect(n.qemuPids()).toEqual([]);
    report.push(
      `SIGTERM kept pid ${pid}; relaunched as ${relaunched} after it died; node stop --stop-vms ended it (${vmId})`,
    );
  }, 120_000);
});

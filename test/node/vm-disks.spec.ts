/**
 * VM disks (issue 13, item 1), with real QEMU and a real node process: a VM declared with a disk gets
 * a qcow2 file under the node's data dir, and the test guest's disk workload (O_DIRECT writes and
 * checks of /dev/vda) finds its data again after the VM is stopped and started. A second VM whose disk
 * overlays a base image sees the base's data through its overlay and writes only to the overlay. A
 * deleted VM's disks go; the base stays.
 */

import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { VmRecord } from '@novacron/cluster-state';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { GUEST_CMDLINE } from '../../apps/cli/src/demo/environment';
import { LocalCluster, type NodeProcess, until } from '../cluster/harness';
import {
  DISK_CHECK,
  DISK_READY,
  ensureGuestBuilt,
  guestOut,
  qemuNodeArgs,
  qemuSkipReason,
} from '../guest/guest';
import { describeUnless, missingTools } from '../tools';

const IMAGE = 'disk-guest';
const BASE = 'disk-base';
const MiB = 2 ** 20;

const describeQemu = describeUnless(qemuSkipReason() ?? missingTools('qemu-img'));

describeQemu('VMs with disks (real QEMU, real node)', () => {
  const imagesDir = mkdtempSync(join(tmpdir(), 'dwcp-images-'));
  const cluster = new LocalCluster(qemuNodeArgs(imagesDir, 'tcg'));
  const report: string[] = [];
  let n: NodeProcess;
  let nodeId: string;

  beforeAll(async () => {
    await ensureGuestBuilt();
    const dir = join(imagesDir, IMAGE);
    mkdirSync(dir, { recursive: true });
    for (const f of ['vmlinux', 'initramfs.cpio.gz']) symlinkSync(join(guestOut, f), join(dir, f));
    writeFileSync(join(dir, 'cmdline'), `${GUEST_CMDLINE} dwcp.disk_mib=8\n`);
    await cluster.start(1);
    n = cluster.nodes[0] as NodeProcess;
    nodeId = (await cluster.statusOf(n))?.nodeId as string;
  }, 660_000);

  afterAll(async () => {
    await cluster.stop();
    rmSync(imagesDir, { recursive: true, force: true });
    console.info(report.join('\n'));
  }, 60_000);

  const api = <T>(method: string, path: string, body?: unknown, expected = 200) =>
    cluster.adminCall<T>(n, method, path, body, expected);

  /** The disk workload's ready line of the VM's current boot, once a check after it has passed. */
  async function diskReady(vmId: string): Promise<RegExpExecArray> {
    let ready: RegExpExecArray | undefined;
    await until(
      `${vmId}: the disk workload is up and a check passed`,
      async () => {
        const r = await n.api<{ lines: string[] }>(
          'GET',
          `/v1/vms/${vmId}/console?tail=200`,
          cluster.adminToken,
        );
        if (r.status !== 200) return false;
        const at = r.body.lines.findLastIndex((l) => DISK_READY.test(l));
        if (at < 0) return false;
        const checks = r.body.lines.slice(at + 1).flatMap((l) => DISK_CHECK.exec(l) ?? []);
        const failed = r.body.lines.slice(at + 1).find((l) => / FAIL /.test(l));
        if (failed) throw new Error(`${vmId}: ${failed}`);
        ready = DISK_READY.exec(r.body.lines[at] as string) ?? undefined;
        return checks.length > 0;
      },
      120_000,
    );
    return ready as RegExpExecArray;
  }

  async function stopped(vmId: string): Promise<void> {
    await api('POST', `/v1/vms/${vmId}/stop`);
    await until(`${vmId} stops`, async () => n.qemuPids().length === 0, 30_000);
  }

  const diskFile = (vmId: string) => join(n.dataDir, 'disks', vmId, 'vda.qcow2');
  const qemuImgInfo = async (file: string) =>
    JSON.parse((await promisify(execFile)('qemu-img', ['info', '--output', 'json', '-U', file])).stdout) as {
      'virtual-size': number;
      'backing-filename'?: string;
    };

  it('a blank disk is made on first start, and the guest finds what it wrote after a stop and a start', async () => {
    const vm = await api<VmRecord>(
      'POST',
      '/v1/vms',
      {
        name: 'db',
        image: IMAGE,
        vcpus: 1,
        memoryMiB: 128,
        nodeId,
        disks: [{ sizeBytes: 64 * MiB }],
      },
      201,
    );
    expect(vm.disks).toEqual([{ id: 'vda', sizeBytes: 64 * MiB, format: 'qcow2', bus: 'virtio' }]);
    await api('POST', `/v1/vms/${vm.id}/start`);
    const first = await diskReady(vm.id);
    expect(first[1]).toBe('new');
    expect((await qemuImgInfo(diskFile(vm.id)))['virtual-size']).toBe(64 * MiB);
    await stopped(vm.id);
    expect(existsSync(diskFile(vm.id)), 'a stopped VM keeps its disk').toBe(true);

    await api('POST', `/v1/vms/${vm.id}/start`);
    const again = await diskReady(vm.id);
    expect(again[1]).toBe('existing');
    expect(again[2]).toBe(first[2]);
    expect(Number(again[3])).toBeGreaterThan(0);
    report.push(`disk kept across stop/start: md5 ${again[2]}, the log went on from ${again[3]}`);
    await stopped(vm.id);

    // That disk becomes a base image; a VM on it overlays it.
    mkdirSync(join(imagesDir, BASE));
    copyFileSync(diskFile(vm.id), join(imagesDir, BASE, 'disk.qcow2'));
    const clone = await api<VmRecord>(
      'POST',
      '/v1/vms',
      {
        name: 'db-clone',
        image: IMAGE,
        vcpus: 1,
        memoryMiB: 128,
        nodeId,
        disks: [{ sizeBytes: 64 * MiB, image: BASE }],
      },
      201,
    );
    await api('POST', `/v1/vms/${clone.id}/start`);
    const seen = await diskReady(clone.id);
    expect(seen[1]).toBe('existing');
    expect(seen[2], 'the clone sees the base’s data').toBe(first[2]);
    const info = await qemuImgInfo(diskFile(clone.id));
    expect(info['backing-filename']).toBe(join(imagesDir, BASE, 'disk.qcow2'));
    await stopped(clone.id);

    for (const id of [vm.id, clone.id]) await api('DELETE', `/v1/vms/${id}`);
    await until(
      'the deleted VMs’ disks are removed',
      async () =>
        !existsSync(join(n.dataDir, 'disks', vm.id)) && !existsSync(join(n.dataDir, 'disks', clone.id)),
      15_000,
    );
    expect(existsSync(join(imagesDir, BASE, 'disk.qcow2')), 'the base stays').toBe(true);
  }, 360_000);
});

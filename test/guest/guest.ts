/** The test guest as QEMU tests use it: its VmSpec, its console lines, and the checks on what it left behind. */

import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type VmEvent, type VmSpec, waitForLine } from '@novacron/hypervisor';
import { GUEST_CMDLINE } from '../../apps/cli/src/demo/environment';
import { missingTools } from '../tools';

const guestSrc = resolve(__dirname);
export const guestOut = join(guestSrc, 'out');
/** Seconds between the guest's integrity checks (`dwcp.check_s` in GUEST_CMDLINE). */
export const CHECK_S = 2;

export const HEARTBEAT = /DWCP-HEARTBEAT seq=(\d+)/;

/** The heartbeat sequence numbers in console lines, in order. */
export const heartbeatSeqs = (lines: readonly string[]): number[] =>
  lines.flatMap((l) => {
    const m = HEARTBEAT.exec(l);
    return m ? [Number(m[1])] : [];
  });

/**
 * Node arguments for a cluster whose nodes run QEMU VMs from images in `imagesDir`, with 20 ms Raft
 * ticks; `accelerator` skips the KVM probe. Extra arguments go after.
 */
export const qemuNodeArgs = (
  imagesDir: string,
  accelerator?: 'tcg' | 'kvm',
  ...extra: string[]
): string[] => [
  '--raft-min-tick-ms',
  '20',
  '--hypervisor-driver',
  'qemu',
  ...(accelerator ? ['--hypervisor-accelerator', accelerator] : []),
  '--hypervisor-images-dir',
  imagesDir,
  ...extra,
];
export const READY = /DWCP-READY fill_mib=\d+ md5=([0-9a-f]{32})/;
export const INTEGRITY = /DWCP-INTEGRITY (ok|FAIL) md5=([0-9a-f]{32})/;
/** With `dwcp.disk_mib`: the disk workload found (`existing`) or wrote (`new`) its fixed region. */
export const DISK_READY = /DWCP-DISK-READY (new|existing\S*) fixed_mib=\d+ md5=([0-9a-f]{32}) log_seq=(\d+)/;
export const DISK_CHECK = /DWCP-DISK (ok|FAIL) md5=([0-9a-f]{32}) log_seq=(\d+)/;

/** 128 MiB, 16 MiB of it filled with known data and 1 MiB/s of it dirtied. */
export const guestSpec = (name: string): VmSpec => ({
  name,
  memoryMiB: 128,
  kernel: join(guestOut, 'vmlinux'),
  initrd: join(guestOut, 'initramfs.cpio.gz'),
  cmdline: GUEST_CMDLINE,
});

/** Builds the guest with `build.sh` when it is missing or older than its `init.sh` (a first build downloads the kernel). */
export async function ensureGuestBuilt(): Promise<void> {
  const initramfs = join(guestOut, 'initramfs.cpio.gz');
  const built = existsSync(join(guestOut, 'vmlinux')) && existsSync(initramfs);
  const stale = built && statSync(join(guestSrc, 'init.sh')).mtimeMs > statSync(initramfs).mtimeMs;
  if (!built || stale) {
    await promisify(execFile)(join(guestSrc, 'build.sh'), [guestOut], { timeout: 600_000 });
  }
}

/**
 * Why the real-QEMU tests cannot run here, or null. As root nothing skips: the global setup builds
 * the guest (build.sh installs what it needs) and any failure there is a failure.
 */
export function qemuSkipReason(): string | null {
  const missing = missingTools('qemu-system-x86_64');
  if (missing !== null) return missing;
  const built = existsSync(join(guestOut, 'vmlinux')) && existsSync(join(guestOut, 'initramfs.cpio.gz'));
  if (process.getuid?.() !== 0 && !built) {
    return 'the test guest is not built, and test/guest/build.sh needs root (run it, or npm test, once as root)';
  }
  return null;
}

export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export async function heartbeatSeq(lines: AsyncIterator<string>, timeoutMs = 10_000): Promise<number> {
  return Number((await waitForLine(lines, HEARTBEAT, { timeoutMs, what: 'a heartbeat' }))[1]);
}

/**
 * Reads `DWCP-INTEGRITY` lines until two in a row say ok with `md5`; throws on an ok with another
 * checksum, or when three readings have not given that. One reading that straddles a switch-over is
 * not trusted (see qemu-driver.spec.ts), so a first FAIL is allowed. Returns the readings.
 */
export async function integrityHolds(lines: AsyncIterator<string>, md5: string): Promise<string[]> {
  const readings: string[] = [];
  while (readings.slice(-2).join() !== 'ok,ok') {
    if (readings.length === 3) throw new Error(`integrity readings: ${readings.join(', ')}`);
    const m = await waitForLine(lines, INTEGRITY, { timeoutMs: CHECK_S * 1000 + 8000 });
    readings.push(m[1] ?? '');
    if (m[1] === 'ok' && m[2] !== md5) throw new Error(`integrity ok with md5 ${m[2]}, expected ${md5}`);
  }
  return readings;
}

/** The first event `match` accepts, or undefined once the time runs out. */
export async function firstEvent(
  events: AsyncIterator<VmEvent>,
  match: (e: VmEvent) => boolean,
  timeoutMs = 10_000,
): Promise<VmEvent | undefined> {
  const deadline = sleep(timeoutMs).then(() => 'timeout' as const);
  for (;;) {
    const next = await Promise.race([events.next(), deadline]);
    if (next === 'timeout' || next.done) return undefined;
    if (match(next.value)) return next.value;
  }
}

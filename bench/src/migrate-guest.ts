/**
 * The test guest (test/guest) as the benches boot and check it. test/guest/guest.ts says the
 * same for the vitest suites, but it lies outside this project's rootDir (bench/src), so tsc cannot
 * compile it into bench/dist; the spec and console lines below must follow it and test/guest/init.sh.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type VmSpec, waitForLine } from '@novacron/hypervisor';
import { REPO } from './wan-path';

const GUEST = join(REPO, 'test', 'guest');
export const GUEST_OUT = join(GUEST, 'out');
/** Seconds between the guest's integrity checks (`dwcp.check_s` below). */
const CHECK_S = 2;
const FILL_MIB = 16;

/** How big and how busy a guest the benches migrate (test/guest/init.sh's knobs). */
export interface GuestProfile {
  id: string;
  memoryMiB: number;
  /** Memory the workload holds: a quarter text, a quarter random, a quarter zeros, a quarter rewritten. */
  fillMib: number;
  /** How fast the rewritten quarter changes, KiB/s of fresh random data. */
  dirtyKibPerS: number;
}

export const DEFAULT_GUEST: GuestProfile = {
  id: 'default',
  memoryMiB: 128,
  fillMib: FILL_MIB,
  dirtyKibPerS: 1024,
};
/**
 * Issue 12's dirty-heavy guest: 16 MiB/s of fresh random data over a 24 MiB working set, more
 * than the `internet` path's 100 Mbit/s carries.
 */
export const DIRTY_HEAVY_GUEST: GuestProfile = {
  id: 'dirty-heavy',
  memoryMiB: 256,
  fillMib: 96,
  dirtyKibPerS: 16384,
};

export function cmdlineFor(g: GuestProfile): string {
  return `console=ttyS0 quiet panic=-1 dwcp.fill_mib=${g.fillMib} dwcp.dirty_kib_per_s=${g.dirtyKibPerS} dwcp.check_s=${CHECK_S}`;
}

/** As the test suites boot it: 16 MiB of known data, 1 MiB/s of it dirtied. */
export const CMDLINE = cmdlineFor(DEFAULT_GUEST);
/**
 * Guest memory no other VM holds: init.sh fills a quarter of the fill with /dev/urandom and
 * rewrites another quarter with it, fresh on every boot, so no store can dedup it.
 */
export const uniquePerBootBytes = (g: GuestProfile): number => (g.fillMib / 2) * 2 ** 20;
export const UNIQUE_PER_BOOT_BYTES = uniquePerBootBytes(DEFAULT_GUEST);
export const guestAbout = (g: GuestProfile): string =>
  `test/guest (Debian kernel + busybox initramfs), ${g.memoryMiB} MiB, \`${cmdlineFor(g)}\``;
export const GUEST_ABOUT = `test/guest (Debian kernel + busybox initramfs), \`${CMDLINE}\``;

export const HEARTBEAT = /DWCP-HEARTBEAT seq=(\d+)/;
export const READY = /DWCP-READY fill_mib=\d+ md5=([0-9a-f]{32})/;
export const INTEGRITY = /DWCP-INTEGRITY (ok|FAIL) md5=([0-9a-f]{32})/;
/** What a guest kernel (or its init) prints when it is in trouble. */
export const TROUBLE = /Oops|BUG:|Kernel panic|general protection|Call Trace|segfault|DWCP-INTEGRITY FAIL/;

export function guestSpec(name: string, memoryMiB: number, cmdline = CMDLINE): VmSpec {
  return {
    name,
    memoryMiB,
    kernel: join(GUEST_OUT, 'vmlinux'),
    initrd: join(GUEST_OUT, 'initramfs.cpio.gz'),
    cmdline,
  };
}

/** Builds the guest with test/guest/build.sh when it is missing (root; a first build downloads the kernel). */
export function ensureGuestBuilt(): void {
  if (existsSync(join(GUEST_OUT, 'vmlinux')) && existsSync(join(GUEST_OUT, 'initramfs.cpio.gz'))) return;
  execFileSync(join(GUEST, 'build.sh'), [GUEST_OUT], { stdio: ['ignore', 'inherit', 'inherit'] });
}

export interface IntactReport {
  /** The first heartbeat the destination printed (it must continue the source's count). */
  firstSeq: number | undefined;
  /** INTEGRITY results in order, `ok`, `FAIL` or `ok-wrong-md5`. */
  readings: string[];
  /** Two ok readings in a row with the source's checksum. */
  integrityOk: boolean;
  note?: string;
}

/**
 * After the switchover: the heartbeat goes on, and two INTEGRITY readings in a row pass with the
 * checksum the guest printed when it was ready. One reading is not trusted: a check that straddles
 * the switchover was once misreported, so up to three are read.
 */
export async function checkIntact(lines: AsyncIterator<string>, md5: string): Promise<IntactReport> {
  const report: IntactReport = { firstSeq: undefined, readings: [], integrityOk: false };
  try {
    report.firstSeq = Number((await waitForLine(lines, HEARTBEAT, { timeoutMs: 15_000 }))[1]);
    while (report.readings.length < 3) {
      const m = await waitForLine(lines, INTEGRITY, { timeoutMs: CHECK_S * 1000 + 8000 });
      report.readings.push(m[1] === 'ok' && m[2] !== md5 ? 'ok-wrong-md5' : (m[1] ?? '?'));
      if (report.readings.slice(-2).join(',') === 'ok,ok') {
        report.integrityOk = true;
        break;
      }
    }
  } catch (error) {
    report.note = (error as Error).message;
  }
  return report;
}

export interface ConsoleWatch {
  /** INTEGRITY ok lines that carried the checksum the guest printed when it was ready. */
  integrityOk: number;
  /** The first line that matched TROUBLE. */
  trouble?: string;
  /** Every line read, for the log when something is wrong. */
  seen: string[];
}

/**
 * Reads a destination's console until two integrity checks passed with `md5`, trouble shows, or
 * `windowMs` (two checks and some slack) runs out; every line up to then is searched for trouble.
 */
export async function watchConsole(
  lines: AsyncIterator<string>,
  md5: string,
  windowMs = (CHECK_S * 2 + 6) * 1000,
): Promise<ConsoleWatch> {
  const watch: ConsoleWatch = { integrityOk: 0, seen: [] };
  const timer = new AbortController();
  const late = sleep(windowMs, 'late' as const, { signal: timer.signal }).catch(() => 'late' as const);
  try {
    while (watch.integrityOk < 2 && watch.trouble === undefined) {
      const next = await Promise.race([lines.next(), late]);
      if (next === 'late' || next.done) break;
      watch.seen.push(next.value);
      if (TROUBLE.test(next.value)) watch.trouble = next.value;
      const m = INTEGRITY.exec(next.value);
      if (m?.[1] === 'ok' && m[2] === md5) watch.integrityOk++;
    }
  } finally {
    timer.abort();
    await lines.return?.();
  }
  return watch;
}

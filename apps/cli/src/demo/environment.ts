/**
 * What this machine lets the demo do: real QEMU with the test guest, or the simulated hypervisor;
 * an emulated internet link between network namespaces, or plain loopback. Each choice comes with
 * the reason, which the demo prints.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const REPO = resolve(__dirname, '..', '..', '..', '..');
const GUEST = join(REPO, 'test', 'guest');
const GUEST_OUT = join(GUEST, 'out');
/** The test guest's command line: 16 MiB of known data, 1 MiB/s dirtied, an integrity check every 2 s. */
export const GUEST_CMDLINE =
  'console=ttyS0 quiet panic=-1 dwcp.fill_mib=16 dwcp.dirty_kib_per_s=1024 dwcp.check_s=2';
export const IMAGE = 'test-guest';

export interface Choice<T> {
  value: T;
  why: string;
}

const runs = (cmd: string, args: string[]): boolean => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
};

const isRoot = () => process.getuid?.() === 0;

/** Real QEMU when it runs and the test guest is built (or, as root, can be built: test/guest/build.sh installs what it needs). */
export function chooseHypervisor(
  wanted: 'auto' | 'qemu' | 'simulated',
  log: (line: string) => void,
): Choice<'qemu' | 'simulated'> {
  if (wanted === 'simulated') return { value: 'simulated', why: 'asked for with --hypervisor simulated' };
  const built = () =>
    existsSync(join(GUEST_OUT, 'vmlinux')) && existsSync(join(GUEST_OUT, 'initramfs.cpio.gz'));
  if (!built() && isRoot()) {
    log(
      'building the test guest (test/guest/build.sh: a Debian kernel and a busybox initramfs; installs QEMU if missing)...',
    );
    if (!runs('bash', [join(GUEST, 'build.sh'), GUEST_OUT])) log('  the build failed');
  }
  const qemu = runs('qemu-system-x86_64', ['--version']);
  if (qemu && built())
    return { value: 'qemu', why: 'qemu-system-x86_64 runs here and the test guest is built' };
  const missing = [
    !qemu && 'qemu-system-x86_64 does not run here',
    !built() && 'the test guest is not built (run test/guest/build.sh as root)',
  ]
    .filter(Boolean)
    .join(', and ');
  if (wanted === 'qemu') throw new Error(`--hypervisor qemu: ${missing}`);
  return { value: 'simulated', why: missing };
}

/** The emulated internet (100 ms RTT, 1 % loss, 100 Mbit/s) needs root, `ip netns` and cargo to build the emulator. */
export function chooseLink(wanted: 'auto' | 'internet' | 'loopback'): Choice<'internet' | 'loopback'> {
  if (wanted === 'loopback') return { value: 'loopback', why: 'asked for with --link loopback' };
  const problems = [
    !isRoot() && 'not root (network namespaces and TUN devices need it)',
    isRoot() && !runs('ip', ['netns', 'list']) && '`ip netns` does not work here',
    !runs('cargo', ['--version']) && 'cargo is missing (it builds the WAN emulator)',
  ].filter((p): p is string => typeof p === 'string');
  if (problems.length === 0)
    return {
      value: 'internet',
      why: 'root, with network namespaces: bench/wan emulates the link in user space',
    };
  if (wanted === 'internet') throw new Error(`--link internet: ${problems.join('; ')}`);
  return { value: 'loopback', why: problems.join('; ') };
}

/**
 * Makes `imagesDir/test-guest`, the image every node boots: links to the built guest, or for the
 * simulated hypervisor a placeholder kernel file (a simulated VM reads nothing from it).
 */
export function installImage(imagesDir: string, hypervisor: 'qemu' | 'simulated'): void {
  const dir = join(imagesDir, IMAGE);
  mkdirSync(dir, { recursive: true });
  if (hypervisor === 'qemu') {
    for (const [from, to] of [
      ['vmlinux', 'vmlinux'],
      ['initramfs.cpio.gz', 'initramfs.cpio.gz'],
    ] as const) {
      if (!existsSync(join(dir, to))) symlinkSync(join(GUEST_OUT, from), join(dir, to));
    }
    writeFileSync(join(dir, 'cmdline'), `${GUEST_CMDLINE}\n`);
  } else {
    writeFileSync(join(dir, 'vmlinux'), 'a placeholder: the simulated hypervisor boots nothing\n');
  }
}

/** The spec of the demo image for a VM QEMU runs directly (the plain-QEMU comparison). */
export function imageSpec(imagesDir: string, name: string, memoryMiB: number) {
  const dir = join(imagesDir, IMAGE);
  return {
    name,
    memoryMiB,
    kernel: join(dir, 'vmlinux'),
    initrd: join(dir, 'initramfs.cpio.gz'),
    cmdline: GUEST_CMDLINE,
  };
}

/** The kernel release of the built guest, for the report. */
export function guestKernel(): string | undefined {
  const file = join(GUEST_OUT, 'kernel-version');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
}

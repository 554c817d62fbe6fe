/**
 * Chooses KVM or TCG. /dev/kvm can exist and still hang every guest once its kernel leaves real
 * mode (seen under nested virtualization), so the probe boots the guest's own kernel under KVM and
 * waits for its first console line. The answer is kept for the life of the process.
 */

import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Accelerator, HypervisorLogger } from './driver';
import { QemuProcess } from './qemu-process';

export interface AcceleratorChoice {
  accelerator: Accelerator;
  /** Why, for the log. */
  reason: string;
}

export interface ProbeOptions {
  qemuBinary: string;
  /** A kernel that prints `Linux version` early (any Linux bzImage or PVH ELF). */
  kernel: string;
  timeoutMs: number;
  kvmDevice?: string;
}

const choices = new Map<string, Promise<AcceleratorChoice>>();

/** The accelerator for `qemuBinary`, probed on the first call in this process. */
export function chooseAccelerator(
  options: ProbeOptions,
  logger: HypervisorLogger,
): Promise<AcceleratorChoice> {
  let choice = choices.get(options.qemuBinary);
  if (choice === undefined) {
    choice = probeAccelerator(options).then(
      (c) => {
        logger.log(`hypervisor: using ${c.accelerator.toUpperCase()} (${c.reason})`);
        return c;
      },
      (error: unknown) => {
        // QEMU could not even start; that is no answer about KVM, so the next launch asks again.
        choices.delete(options.qemuBinary);
        throw error;
      },
    );
    choices.set(options.qemuBinary, choice);
  }
  return choice;
}

/** Boots `kernel` under KVM once and reports whether it got as far as printing its banner. */
export async function probeAccelerator(options: ProbeOptions): Promise<AcceleratorChoice> {
  const device = options.kvmDevice ?? '/dev/kvm';
  try {
    await access(device, constants.R_OK | constants.W_OK);
  } catch {
    return { accelerator: 'tcg', reason: `${device} is missing or not usable` };
  }
  let printed!: () => void;
  const banner = new Promise<'banner'>((resolve) => {
    printed = () => resolve('banner');
  });
  const args = ['-accel', 'kvm', '-m', '128', '-nodefaults', '-display', 'none', '-no-reboot'];
  args.push('-kernel', options.kernel, '-append', 'earlyprintk=ttyS0 panic=-1', '-serial', 'stdio');
  const started = Date.now();
  const qemu = await QemuProcess.spawn(options.qemuBinary, args, {
    onLine: (line) => {
      if (line.includes('Linux version')) printed();
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), options.timeoutMs);
  });
  const outcome = await Promise.race([banner, qemu.exited.then(() => 'exited' as const), timeout]);
  clearTimeout(timer);
  await qemu.terminate(0);
  switch (outcome) {
    case 'banner':
      return { accelerator: 'kvm', reason: `a kernel booted under KVM in ${Date.now() - started} ms` };
    case 'exited':
      return {
        accelerator: 'tcg',
        reason: `QEMU refused -accel kvm: ${qemu.stderrTail || 'no reason given'}`,
      };
    case 'timeout':
      return {
        accelerator: 'tcg',
        reason: `${device} is there but a kernel printed nothing within ${options.timeoutMs} ms under KVM`,
      };
  }
}

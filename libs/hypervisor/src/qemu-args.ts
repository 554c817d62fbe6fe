/** The `qemu-system-x86_64` command line for a VM spec: pure, so it is unit-tested as is. */

import type { Accelerator, VmSpec } from './driver';
import { HypervisorError } from './errors';

export interface QemuLaunchOptions {
  accelerator: Accelerator;
  /** Where QEMU listens for QMP (a unix socket it creates). */
  qmpSocket: string;
  /** The file the guest's first serial port is written to (the driver tails it). */
  consoleFile: string;
  /** Where QEMU writes its pid (what a restarted node reads to take the VM over). */
  pidFile: string;
  /** Start as a migration destination that waits for `migrate-incoming`. */
  incoming: boolean;
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** Refuses a spec QEMU could not run, naming the field. */
export function checkVmSpec(spec: VmSpec): void {
  if (!NAME.test(spec.name)) {
    throw HypervisorError.invalidArgument('name', `1 to 64 of A-Z a-z 0-9 . _ -, got '${spec.name}'`);
  }
  if (!Number.isSafeInteger(spec.memoryMiB) || spec.memoryMiB < 16) {
    throw HypervisorError.invalidArgument('memoryMiB', `a whole number of MiB >= 16, got ${spec.memoryMiB}`);
  }
  const cpus = spec.cpus ?? 1;
  if (!Number.isSafeInteger(cpus) || cpus < 1 || cpus > 255) {
    throw HypervisorError.invalidArgument('cpus', `1 to 255, got ${cpus}`);
  }
  const disks = spec.disks ?? [];
  const ids = new Set<string>();
  for (const disk of disks) {
    if (!DISK_ID.test(disk.id) || ids.has(disk.id)) {
      throw HypervisorError.invalidArgument(
        'disks',
        `disk ids are distinct, 1-16 letters or digits; got ${disk.id}`,
      );
    }
    ids.add(disk.id);
    if (disk.format !== 'raw' && disk.format !== 'qcow2') {
      throw HypervisorError.invalidArgument(
        'disks',
        `disk ${disk.id}: format raw or qcow2, got ${disk.format}`,
      );
    }
  }
  if (spec.kernel === undefined && disks.length === 0) {
    throw HypervisorError.invalidArgument('kernel', 'a VM needs a kernel or a disk to boot from');
  }
  if (spec.kernel === undefined && (spec.initrd !== undefined || spec.cmdline !== undefined)) {
    throw HypervisorError.invalidArgument('initrd', 'initrd and cmdline need a kernel');
  }
}

/**
 * The arguments after the binary. The guest's first serial port is written to a file, so nothing the
 * guest prints depends on a reader being there (the node daemon may restart); QMP is a unix socket
 * QEMU serves without waiting for a client. No default devices, no display, and no reboot (a guest
 * that reboots or panics makes QEMU exit, which the driver sees).
 */
const DISK_ID = /^[A-Za-z0-9]{1,16}$/;

export function buildQemuArgs(spec: VmSpec, options: QemuLaunchOptions): string[] {
  checkVmSpec(spec);
  const args = [
    '-name',
    spec.name,
    '-accel',
    options.accelerator,
    '-m',
    String(spec.memoryMiB),
    '-smp',
    String(spec.cpus ?? 1),
    '-nodefaults',
    '-display',
    'none',
    '-no-reboot',
    '-qmp',
    `unix:${escapeOptionValue(options.qmpSocket)},server=on,wait=off`,
    '-chardev',
    `file,id=console0,path=${escapeOptionValue(options.consoleFile)}`,
    '-serial',
    'chardev:console0',
    '-pidfile',
    options.pidFile,
  ];
  if (spec.kernel !== undefined) args.push('-kernel', spec.kernel);
  if (spec.initrd !== undefined) args.push('-initrd', spec.initrd);
  if (spec.cmdline !== undefined) args.push('-append', spec.cmdline);
  for (const disk of spec.disks ?? []) {
    // -blockdev in JSON: no comma escaping, and a named block node that storage migration can mirror.
    args.push(
      '-blockdev',
      JSON.stringify({
        driver: disk.format,
        'node-name': `disk-${disk.id}`,
        file: { driver: 'file', filename: disk.path },
      }),
      '-device',
      `virtio-blk-pci,drive=disk-${disk.id},id=dev-${disk.id},serial=${disk.id}`,
    );
  }
  if (options.incoming) args.push('-incoming', 'defer');
  return args;
}

/** QEMU splits option strings at commas; a comma inside a value is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

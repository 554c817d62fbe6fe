/**
 * The hypervisor driver contract: what DWCP needs from the hypervisor on one host to run a VM and
 * live-migrate it. `QemuDriver` is the real one; `SimulatedDriver` stands in where QEMU is missing.
 */

import type { VmEvent } from './events';
import type {
  MigrationCapabilities,
  MigrationParameters,
  MigrationParameterValues,
  MigrationProgress,
  MigrationUri,
} from './migration';

/** How the VM is built. A migration destination must get the same spec as its source. */
export interface VmSpec {
  /** A label for logs and the runtime directory: letters, digits, `.`, `_`, `-`. */
  name: string;
  memoryMiB: number;
  /** vCPUs; 1 by default. */
  cpus?: number;
  /** Direct kernel boot: the kernel image (bzImage, or an ELF with a PVH entry). */
  kernel?: string;
  initrd?: string;
  /** The kernel command line. */
  cmdline?: string;
  /** Disk images, attached as virtio-blk in this order (the guest's vda, vdb, ...); the first is booted when there is no kernel. */
  disks?: VmDisk[];
}

/** A disk image file a VM runs on. */
export interface VmDisk {
  /** The disk's name in the VM (`vda`): QEMU's block node is `disk-<id>` and the guest sees it as the device's serial. */
  id: string;
  path: string;
  format: 'raw' | 'qcow2';
}

/** QEMU's `RunState`, plus `exited` once the hypervisor process is gone. */
export type VmRunState =
  | 'debug'
  | 'inmigrate'
  | 'internal-error'
  | 'io-error'
  | 'paused'
  | 'postmigrate'
  | 'prelaunch'
  | 'finish-migrate'
  | 'restore-vm'
  | 'running'
  | 'save-vm'
  | 'shutdown'
  | 'suspended'
  | 'watchdog'
  | 'guest-panicked'
  | 'colo'
  | 'exited';

export interface VmStatus {
  state: VmRunState;
  /** vCPUs are executing. */
  running: boolean;
}

export type Accelerator = 'kvm' | 'tcg';

/** A VM as its driver knows it. Plain data: pass it back to the driver that made it. */
export interface VmHandle {
  /** Unique among the driver's VMs. */
  readonly id: string;
  readonly name: string;
  /** True when no hypervisor runs behind this handle (SimulatedDriver). Never true for QemuDriver. */
  readonly simulated: boolean;
  /** The hypervisor process; absent when simulated. */
  readonly pid: number | undefined;
  readonly accelerator: Accelerator | 'simulated';
  /** Holds the QMP socket and anything else the VM needs on disk; removed by `destroy`. */
  readonly runtimeDir: string | undefined;
  /** Started with `-incoming defer` (a migration destination). */
  readonly incoming: boolean;
}

export interface SerialLinesOptions {
  /** Begin with the console lines kept so far (the last few thousand) instead of only new ones. */
  replay?: boolean;
}

/** Where a driver says what it decided (accelerator, simulation). Nest's `Logger` fits. */
export interface HypervisorLogger {
  log(message: string): void;
  warn(message: string): void;
}

export interface HypervisorDriver {
  /** Starts a VM and returns once it runs and answers on QMP. */
  launch(spec: VmSpec): Promise<VmHandle>;
  /**
   * Starts a migration destination (`-incoming defer`) and makes it listen on `uri`
   * (`migrate-incoming`). `unix:` sockets are listening when this resolves.
   */
  prepareIncoming(
    spec: VmSpec,
    uri: MigrationUri,
    options?: { capabilities?: MigrationCapabilities },
  ): Promise<VmHandle>;
  status(vm: VmHandle): Promise<VmStatus>;
  /** Pauses the vCPUs. */
  stop(vm: VmHandle): Promise<void>;
  /** Resumes the vCPUs. */
  cont(vm: VmHandle): Promise<void>;
  /**
   * Ends the VM: asks the process to terminate, kills it if it lingers, waits for it to be gone and
   * removes its runtime directory. Safe on a VM whose process already exited.
   */
  destroy(vm: VmHandle): Promise<void>;
  setMigrationParameters(vm: VmHandle, params: MigrationParameters): Promise<void>;
  migrationParameters(vm: VmHandle): Promise<MigrationParameterValues>;
  setMigrationCapabilities(vm: VmHandle, capabilities: MigrationCapabilities): Promise<void>;
  /** Starts an outgoing migration; it runs in the background, watched with `queryMigrate`. */
  migrate(vm: VmHandle, uri: MigrationUri): Promise<void>;
  queryMigrate(vm: VmHandle): Promise<MigrationProgress>;
  /** Cancels an outgoing migration; the source keeps running. */
  cancelMigration(vm: VmHandle): Promise<void>;
  /** The guest's serial console, line by line, from now on; ends when the VM is gone. */
  serialLines(vm: VmHandle, options?: SerialLinesOptions): AsyncIterableIterator<string>;
  /** The VM's events from now on; ends after the `exit` event, which is all a VM that is gone yields. */
  events(vm: VmHandle): AsyncIterableIterator<VmEvent>;
  /** Destroys every VM this driver still runs. */
  close(): Promise<void>;
  /**
   * Optional: gets ready for fast launches with `kernel` (QEMU probes KVM once, so the first
   * incoming migration does not pay for it). Failures are the caller's to log.
   */
  warmUp?(kernel: string): Promise<unknown>;
  /** The last of what the hypervisor process wrote to stderr, for an error's reason (optional). */
  stderrTail?(vm: VmHandle): string;
  /**
   * Optional, for a driver whose VMs outlive it (a node daemon's restart): the VMs an earlier driver
   * left on this host, by `VmSpec.name`; `adopt` takes one over (ERR_HV_ADOPT_FAILED with a
   * `reason` when it cannot), `discard` ends what is left of one it could not, and `release` lets go
   * of every VM without stopping it. A driver without them stops its VMs when it closes.
   */
  leftovers?(): Promise<string[]>;
  adopt?(name: string): Promise<VmHandle>;
  discard?(name: string): Promise<void>;
  release?(): Promise<void>;
}

/**
 * The QEMU driver: one `qemu-system-x86_64` process per VM, driven over QMP. Each VM gets a private
 * runtime directory (its QMP socket); its serial console is QEMU's stdout.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chooseAccelerator } from './accelerator';
import type {
  Accelerator,
  HypervisorDriver,
  HypervisorLogger,
  SerialLinesOptions,
  VmHandle,
  VmRunState,
  VmSpec,
  VmStatus,
} from './driver';
import { HypervisorError } from './errors';
import { fromQmpEvent, type VmEvent } from './events';
import { Feed } from './feed';
import {
  checkMigrationUri,
  fromQmpMigrationInfo,
  fromQmpParameters,
  type MigrationCapabilities,
  type MigrationParameters,
  type MigrationParameterValues,
  type MigrationProgress,
  type MigrationUri,
  toQmpCapabilities,
  toQmpParameters,
} from './migration';
import { buildQemuArgs, checkVmSpec } from './qemu-args';
import { QemuProcess } from './qemu-process';
import { QmpClient, type QmpVersion } from './qmp-client';

/** The first QEMU measured not to lose guest writes in live migration under TCG (10.0.2; 7.2 does). */
export const TCG_SAFE_QEMU_MAJOR = 10;

/**
 * The warning for a QEMU that loses guest writes in live migration under TCG (measured on 7.2:
 * docs/migration.md, bench:tcg), or undefined when this one is not known to.
 */
export function tcgWriteLossWarning(accelerator: Accelerator, version: QmpVersion): string | undefined {
  if (accelerator !== 'tcg' || version.major >= TCG_SAFE_QEMU_MAJOR) return undefined;
  return (
    `hypervisor: QEMU ${version.major}.${version.minor}.${version.micro} under TCG loses guest writes in live ` +
    `migration (docs/migration.md): a migrated guest may run damaged. Use QEMU ${TCG_SAFE_QEMU_MAJOR} or later ` +
    '(Debian 12: bookworm-backports), or KVM.'
  );
}

export interface QemuDriverOptions {
  /** Default `qemu-system-x86_64` from PATH. */
  qemuBinary?: string;
  /** `auto` (the default) probes KVM once per process and falls back to TCG. */
  accelerator?: Accelerator | 'auto';
  /** The kernel the KVM probe boots when a VM has none of its own (disk boot). */
  probeKernel?: string;
  /** How long the KVM probe waits for the kernel's banner. Default 5 s. */
  kvmProbeTimeoutMs?: number;
  /** Parent of every VM's runtime directory. Default the OS temp dir (unix socket paths must stay short). */
  runtimeRoot?: string;
  /** How long QEMU may take to serve QMP after it starts. Default 15 s. */
  startTimeoutMs?: number;
  /** Default 30 s. */
  qmpTimeoutMs?: number;
  /**
   * QEMU is killed when this process dies (`setpriv --pdeathsig KILL`, util-linux). A node daemon
   * sets it: it cannot take over a running QEMU after a restart yet, so a VM left behind would run
   * unmanaged beside the one the restarted node boots. Default false.
   */
  dieWithParent?: boolean;
  /** Between SIGTERM and SIGKILL on destroy. Default 3 s. */
  stopGraceMs?: number;
  logger?: HypervisorLogger;
}

interface RunningVm {
  handle: VmHandle;
  process: QemuProcess;
  qmp: QmpClient;
  serial: Feed<string>;
  events: Feed<VmEvent>;
}

export class QemuDriver implements HypervisorDriver {
  private readonly vms = new Map<string, RunningVm>();
  private readonly qemuBinary: string;
  private readonly logger: HypervisorLogger;
  private nextId = 1;
  private warnedTcgWrites = false;

  constructor(private readonly options: QemuDriverOptions = {}) {
    this.qemuBinary = options.qemuBinary ?? 'qemu-system-x86_64';
    this.logger = options.logger ?? consoleLogger;
  }

  launch(spec: VmSpec): Promise<VmHandle> {
    return this.start(spec, undefined, {});
  }

  prepareIncoming(
    spec: VmSpec,
    uri: MigrationUri,
    options: { capabilities?: MigrationCapabilities } = {},
  ): Promise<VmHandle> {
    return this.start(spec, checkMigrationUri(uri), options.capabilities ?? {});
  }

  async status(vm: VmHandle): Promise<VmStatus> {
    const running = this.get(vm);
    if (running.process.exitStatus) return { state: 'exited', running: false };
    const reply = await running.qmp.execute<{ status: VmRunState; running: boolean }>('query-status');
    return { state: reply.status, running: reply.running };
  }

  async stop(vm: VmHandle): Promise<void> {
    await this.get(vm).qmp.execute('stop');
  }

  async cont(vm: VmHandle): Promise<void> {
    await this.get(vm).qmp.execute('cont');
  }

  async destroy(vm: VmHandle): Promise<void> {
    const running = this.vms.get(vm.id);
    if (running === undefined) return;
    running.qmp.close();
    await running.process.terminate(this.options.stopGraceMs ?? 3_000);
    this.vms.delete(vm.id);
    if (running.handle.runtimeDir) await rm(running.handle.runtimeDir, { recursive: true, force: true });
  }

  async setMigrationParameters(vm: VmHandle, params: MigrationParameters): Promise<void> {
    const args = toQmpParameters(params);
    if (Object.keys(args).length > 0) await this.get(vm).qmp.execute('migrate-set-parameters', args);
  }

  async migrationParameters(vm: VmHandle): Promise<MigrationParameterValues> {
    return fromQmpParameters(await this.get(vm).qmp.execute('query-migrate-parameters'));
  }

  async setMigrationCapabilities(vm: VmHandle, capabilities: MigrationCapabilities): Promise<void> {
    const list = toQmpCapabilities(capabilities);
    if (list.length > 0) await this.get(vm).qmp.execute('migrate-set-capabilities', { capabilities: list });
  }

  async migrate(vm: VmHandle, uri: MigrationUri): Promise<void> {
    await this.get(vm).qmp.execute('migrate', { uri: checkMigrationUri(uri) });
  }

  async queryMigrate(vm: VmHandle): Promise<MigrationProgress> {
    return fromQmpMigrationInfo(await this.get(vm).qmp.execute('query-migrate'));
  }

  async cancelMigration(vm: VmHandle): Promise<void> {
    await this.get(vm).qmp.execute('migrate_cancel');
  }

  serialLines(vm: VmHandle, options: SerialLinesOptions = {}): AsyncIterableIterator<string> {
    return this.get(vm).serial.subscribe(options);
  }

  events(vm: VmHandle): AsyncIterableIterator<VmEvent> {
    return this.get(vm).events.subscribe();
  }

  /**
   * The VM's QMP connection, for QEMU commands the driver contract does not cover. What is sent
   * here bypasses the driver, so it should not change state the driver tracks (like quitting).
   */
  qmp(vm: VmHandle): QmpClient {
    return this.get(vm).qmp;
  }

  /** The last few KiB QEMU wrote to stderr, for error reports. */
  stderrTail(vm: VmHandle): string {
    return this.get(vm).process.stderrTail;
  }

  async close(): Promise<void> {
    await Promise.all([...this.vms.values()].map((running) => this.destroy(running.handle)));
  }

  private get(vm: VmHandle): RunningVm {
    const running = this.vms.get(vm.id);
    if (running === undefined) {
      throw new HypervisorError('ERR_HV_VM_NOT_FOUND', `no VM ${vm.id} (${vm.name}) runs under this driver`);
    }
    return running;
  }

  private async start(
    spec: VmSpec,
    incomingUri: MigrationUri | undefined,
    capabilities: MigrationCapabilities,
  ): Promise<VmHandle> {
    checkVmSpec(spec);
    const accelerator = await this.accelerator(spec);
    const runtimeDir = await mkdtemp(join(this.options.runtimeRoot ?? tmpdir(), `dwcp-vm-${spec.name}-`));
    const qmpSocket = join(runtimeDir, 'qmp.sock');
    const args = buildQemuArgs(spec, { accelerator, qmpSocket, incoming: incomingUri !== undefined });
    const serial = new Feed<string>();
    const events = new Feed<VmEvent>();
    let qemu: QemuProcess | undefined;
    let qmp: QmpClient | undefined;
    try {
      qemu = await QemuProcess.spawn(this.qemuBinary, args, (line) => serial.push(line), {
        dieWithParent: this.options.dieWithParent ?? false,
      });
      const proc = qemu;
      void proc.exited.then((exit) => {
        events.end({ atMs: Date.now(), type: 'exit', code: exit.code, signal: exit.signal });
        serial.end();
      });
      qmp = await this.connectQmp(qmpSocket, proc);
      qmp.onEvent((raw) => events.push(fromQmpEvent(raw)));
      // MIGRATION events are only sent with this capability on; the event stream promises them.
      await qmp.execute('migrate-set-capabilities', {
        capabilities: toQmpCapabilities({ ...capabilities, events: true }),
      });
      if (incomingUri !== undefined) await qmp.execute('migrate-incoming', { uri: incomingUri });
    } catch (error) {
      qmp?.close();
      await qemu?.terminate(0);
      await rm(runtimeDir, { recursive: true, force: true });
      throw error;
    }
    const handle: VmHandle = {
      id: `${spec.name}#${this.nextId++}`,
      name: spec.name,
      simulated: false,
      pid: qemu.pid,
      accelerator,
      runtimeDir,
      incoming: incomingUri !== undefined,
    };
    this.vms.set(handle.id, { handle, process: qemu, qmp, serial, events });
    this.warnIfTcgLosesWrites(accelerator, qmp.version);
    const role = incomingUri === undefined ? 'launched' : `waiting for a migration on ${incomingUri}`;
    this.logger.log(`hypervisor: ${handle.id} ${role} (pid ${qemu.pid}, ${accelerator.toUpperCase()})`);
    return handle;
  }

  /** Said once per driver: every migration of such a VM is at risk. */
  private warnIfTcgLosesWrites(accelerator: Accelerator, version: QmpVersion): void {
    const warning = tcgWriteLossWarning(accelerator, version);
    if (warning === undefined || this.warnedTcgWrites) return;
    this.warnedTcgWrites = true;
    this.logger.warn(warning);
  }

  /**
   * Settles the accelerator now (the KVM probe boots `kernel` once, up to kvmProbeTimeoutMs), so the
   * first launch or incoming migration does not pay for it.
   */
  warmUp(kernel: string): Promise<Accelerator> {
    return this.accelerator({ name: 'warm-up', memoryMiB: 64, kernel });
  }

  private async accelerator(spec: VmSpec): Promise<Accelerator> {
    const wanted = this.options.accelerator ?? 'auto';
    if (wanted !== 'auto') return wanted;
    const kernel = spec.kernel ?? this.options.probeKernel;
    if (kernel === undefined) {
      this.logger.warn('hypervisor: no kernel to probe KVM with (set probeKernel); using TCG');
      return 'tcg';
    }
    const timeoutMs = this.options.kvmProbeTimeoutMs ?? 5_000;
    const choice = await chooseAccelerator({ qemuBinary: this.qemuBinary, kernel, timeoutMs }, this.logger);
    return choice.accelerator;
  }

  /** QEMU creates the socket a moment after it starts; retry until it serves QMP or gives up. */
  private async connectQmp(path: string, qemu: QemuProcess): Promise<QmpClient> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    const commandTimeoutMs = this.options.qmpTimeoutMs ?? 30_000;
    for (;;) {
      if (qemu.exitStatus) {
        const { code, signal } = qemu.exitStatus;
        throw new HypervisorError(
          'ERR_HV_LAUNCH_FAILED',
          `QEMU exited (${signal ?? `code ${code}`}) before serving QMP: ${qemu.stderrTail || 'no message'}`,
        );
      }
      try {
        return await QmpClient.connect(path, { commandTimeoutMs });
      } catch (error) {
        if (Date.now() > deadline) {
          throw new HypervisorError('ERR_HV_LAUNCH_FAILED', `QEMU did not serve QMP at ${path} in time`, {
            cause: error,
          });
        }
      }
      await sleep(50);
    }
  }
}

const consoleLogger: HypervisorLogger = {
  log: (message) => console.info(message),
  warn: (message) => console.warn(message),
};

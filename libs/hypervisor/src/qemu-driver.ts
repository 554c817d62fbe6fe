/**
 * The QEMU driver: one `qemu-system-x86_64` process per VM, driven over QMP. Each VM gets a runtime
 * directory (QMP socket, pidfile, serial console file, QEMU's log). A detached driver's VMs outlive
 * it, and a later driver over the same runtime root takes them over (`adopt`).
 */

import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { chooseAccelerator } from './accelerator';
import { AdoptedProcess } from './adopted-process';
import { ConsoleFile } from './console-file';
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
import { type AdoptFailureReason, HypervisorError } from './errors';
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
import { QemuProcess, type VmProcess } from './qemu-process';
import { identifyQemu, QemuRuntimeDir, readCmdline } from './qemu-runtime';
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
  /**
   * Parent of every VM's runtime directory. Default the OS temp dir (unix socket paths must stay
   * short). A detached driver's VM `name` has `<runtimeRoot>/<name>`, where a later driver finds it.
   */
  runtimeRoot?: string;
  /**
   * VMs outlive this process (a node daemon's restart or upgrade): each QEMU runs in its own session
   * and process group and is not killed when this process exits; `adopt` takes one over again.
   * Default false: every QEMU is killed when this process exits.
   */
  detached?: boolean;
  /** How long QEMU may take to serve QMP after it starts. Default 15 s. */
  startTimeoutMs?: number;
  /** Default 30 s. */
  qmpTimeoutMs?: number;
  /** QEMU is killed when this process dies, even by SIGKILL (`setpriv --pdeathsig KILL`). Not with `detached`. */
  dieWithParent?: boolean;
  /** Between SIGTERM and SIGKILL on destroy. Default 3 s. */
  stopGraceMs?: number;
  logger?: HypervisorLogger;
}

interface RunningVm {
  handle: VmHandle;
  process: VmProcess;
  runtime: QemuRuntimeDir;
  qmp: QmpClient;
  console: ConsoleFile;
  serial: Feed<string>;
  events: Feed<VmEvent>;
}

/** QEMU run states in which a VM taken over cannot go on. */
const UNUSABLE_STATES: ReadonlySet<VmRunState> = new Set(['shutdown', 'guest-panicked', 'internal-error']);

/** How much of a taken-over VM's console is read back: the recent past the node missed. */
const ADOPT_CONSOLE_BYTES = 64 * 1024;

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
    await running.console.close({ flush: true });
    this.vms.delete(vm.id);
    await running.runtime.remove();
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
    return this.get(vm).runtime.logTail();
  }

  async close(): Promise<void> {
    await Promise.all([...this.vms.values()].map((running) => this.destroy(running.handle)));
  }

  /** Lets go of every VM, leaving it running for a later driver to adopt; for a detached driver. */
  async release(): Promise<void> {
    if (!this.options.detached) return this.close();
    const all = [...this.vms.values()];
    this.vms.clear();
    for (const running of all) {
      running.qmp.close();
      await running.console.close();
      running.serial.end();
      running.events.end();
    }
  }

  /** The VMs left on this host by an earlier driver: the names of the runtime directories there. */
  async leftovers(): Promise<string[]> {
    if (!this.options.detached) return [];
    const ours = new Set([...this.vms.values()].map((r) => r.handle.name));
    return (await QemuRuntimeDir.namesUnder(this.runtimeRoot)).filter((name) => !ours.has(name));
  }

  /**
   * Takes over the QEMU an earlier driver left for VM `name`: its pidfile names a live process that
   * is that QEMU, its QMP answers with that name, and its state is one the VM can go on in. Throws
   * ERR_HV_ADOPT_FAILED with a `reason` (AdoptFailureReason) otherwise, and leaves things as found.
   */
  async adopt(name: string): Promise<VmHandle> {
    const runtime = new QemuRuntimeDir(`${this.runtimeRoot}/${name}`);
    if (!this.options.detached || !runtime.exists) throw adoptFailed(name, 'no-runtime-dir');
    const pid = runtime.readPid();
    const identity = identifyQemu(
      pid,
      pid === undefined ? undefined : await readCmdline(pid),
      name,
      runtime.path,
    );
    if (identity !== 'ours' || pid === undefined)
      throw adoptFailed(name, identity === 'ours' ? 'no-pidfile' : identity);
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(runtime.qmpSocket, {
        commandTimeoutMs: this.options.qmpTimeoutMs ?? 30_000,
      });
    } catch (error) {
      throw adoptFailed(name, 'qmp-unreachable', error);
    }
    try {
      const named = await qmp.execute<{ name?: string }>('query-name');
      if (named.name !== name) throw adoptFailed(name, 'identity-mismatch', `QMP says it is '${named.name}'`);
      const status = await qmp.execute<{ status: VmRunState }>('query-status');
      if (UNUSABLE_STATES.has(status.status)) throw adoptFailed(name, 'unusable-state', status.status);
      const cmdline = (await readCmdline(pid)) ?? [];
      const accel = cmdline[cmdline.indexOf('-accel') + 1] === 'kvm' ? 'kvm' : 'tcg';
      const process = new AdoptedProcess(pid);
      const handle = await this.track(name, runtime, process, qmp, accel, status.status === 'inmigrate', {
        tailBytes: ADOPT_CONSOLE_BYTES,
      });
      this.logger.log(`hypervisor: ${handle.id} taken over (pid ${pid}, ${status.status})`);
      return handle;
    } catch (error) {
      qmp.close();
      if (error instanceof HypervisorError && error.code === 'ERR_HV_ADOPT_FAILED') throw error;
      throw adoptFailed(name, 'qmp-unreachable', error);
    }
  }

  /**
   * Ends whatever is left of VM `name` that could not be adopted: kills its QEMU if the pidfile still
   * names it (never a process that merely reuses the pid) and removes its runtime directory.
   */
  async discard(name: string): Promise<void> {
    if (!this.options.detached) return;
    const runtime = new QemuRuntimeDir(`${this.runtimeRoot}/${name}`);
    const pid = runtime.readPid();
    if (pid !== undefined && identifyQemu(pid, await readCmdline(pid), name, runtime.path) === 'ours') {
      await new AdoptedProcess(pid).terminate(0);
    }
    await runtime.remove();
  }

  private get runtimeRoot(): string {
    return this.options.runtimeRoot ?? tmpdir();
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
    const runtime = await this.freshRuntimeDir(spec.name);
    const args = buildQemuArgs(spec, {
      accelerator,
      qmpSocket: runtime.qmpSocket,
      consoleFile: runtime.consoleFile,
      pidFile: runtime.pidFile,
      incoming: incomingUri !== undefined,
    });
    let qemu: QemuProcess | undefined;
    let qmp: QmpClient | undefined;
    let handle: VmHandle;
    try {
      qemu = await QemuProcess.spawn(
        this.qemuBinary,
        args,
        { logFile: runtime.logFile },
        { dieWithParent: this.options.dieWithParent ?? false, detached: this.options.detached ?? false },
      );
      qmp = await this.connectQmp(runtime, qemu);
      // MIGRATION events are only sent with this capability on; the event stream promises them.
      await qmp.execute('migrate-set-capabilities', {
        capabilities: toQmpCapabilities({ ...capabilities, events: true }),
      });
      if (incomingUri !== undefined) await qmp.execute('migrate-incoming', { uri: incomingUri });
      handle = await this.track(spec.name, runtime, qemu, qmp, accelerator, incomingUri !== undefined);
    } catch (error) {
      qmp?.close();
      await qemu?.terminate(0);
      await runtime.remove();
      throw error;
    }
    this.warnIfTcgLosesWrites(accelerator, qmp.version);
    const role = incomingUri === undefined ? 'launched' : `waiting for a migration on ${incomingUri}`;
    this.logger.log(`hypervisor: ${handle.id} ${role} (pid ${qemu.pid}, ${accelerator.toUpperCase()})`);
    return handle;
  }

  /**
   * A detached VM's directory is where a later driver looks for it, so one left by a QEMU that is
   * gone is cleared first; one whose QEMU still runs is not this launch's to take.
   */
  private async freshRuntimeDir(name: string): Promise<QemuRuntimeDir> {
    if (!this.options.detached) return QemuRuntimeDir.unique(this.runtimeRoot, name);
    const left = new QemuRuntimeDir(`${this.runtimeRoot}/${name}`);
    const pid = left.readPid();
    if (pid !== undefined && identifyQemu(pid, await readCmdline(pid), name, left.path) === 'ours') {
      throw new HypervisorError(
        'ERR_HV_LAUNCH_FAILED',
        `a QEMU for ${name} already runs (pid ${pid}) in ${left.path}`,
      );
    }
    await left.remove();
    return QemuRuntimeDir.at(this.runtimeRoot, name);
  }

  /** Starts following a VM's console, events and exit, and hands out its handle. */
  private async track(
    name: string,
    runtime: QemuRuntimeDir,
    process: VmProcess,
    qmp: QmpClient,
    accelerator: Accelerator,
    incoming: boolean,
    consoleFrom: { tailBytes?: number } = {},
  ): Promise<VmHandle> {
    const serial = new Feed<string>();
    const events = new Feed<VmEvent>();
    const console = await ConsoleFile.follow(runtime.consoleFile, (line) => serial.push(line), consoleFrom);
    qmp.onEvent((raw) => events.push(fromQmpEvent(raw)));
    const handle: VmHandle = {
      id: `${name}#${this.nextId++}`,
      name,
      simulated: false,
      pid: process.pid,
      accelerator,
      runtimeDir: runtime.path,
      incoming,
    };
    // A QEMU this driver did not start is seen to exit by its QMP socket closing.
    if (process instanceof AdoptedProcess) {
      qmp.onClose(() => {
        if (this.vms.get(handle.id)?.process === process) void process.noticeEnding();
      });
    }
    void process.exited.then(async (exit) => {
      await console.close({ flush: true });
      events.end({ atMs: Date.now(), type: 'exit', code: exit.code, signal: exit.signal });
      serial.end();
    });
    this.vms.set(handle.id, { handle, process, runtime, qmp, console, serial, events });
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
  private async connectQmp(runtime: QemuRuntimeDir, qemu: QemuProcess): Promise<QmpClient> {
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    const commandTimeoutMs = this.options.qmpTimeoutMs ?? 30_000;
    for (;;) {
      if (qemu.exitStatus) {
        const { code, signal } = qemu.exitStatus;
        throw new HypervisorError(
          'ERR_HV_LAUNCH_FAILED',
          `QEMU exited (${signal ?? `code ${code}`}) before serving QMP: ${runtime.logTail() || 'no message'}`,
        );
      }
      try {
        return await QmpClient.connect(runtime.qmpSocket, { commandTimeoutMs });
      } catch (error) {
        if (Date.now() > deadline) {
          throw new HypervisorError(
            'ERR_HV_LAUNCH_FAILED',
            `QEMU did not serve QMP at ${runtime.qmpSocket} in time`,
            { cause: error },
          );
        }
      }
      await sleep(50);
    }
  }
}

function adoptFailed(name: string, reason: AdoptFailureReason, detail?: unknown): HypervisorError {
  const why = detail === undefined ? '' : `: ${detail instanceof Error ? detail.message : String(detail)}`;
  return new HypervisorError('ERR_HV_ADOPT_FAILED', `cannot take over VM ${name} (${reason})${why}`, {
    reason,
    ...(detail instanceof Error ? { cause: detail } : {}),
  });
}

const consoleLogger: HypervisorLogger = {
  log: (message) => console.info(message),
  warn: (message) => console.warn(message),
};

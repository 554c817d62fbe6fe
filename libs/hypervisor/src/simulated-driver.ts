/**
 * A stand-in for machines without QEMU: VMs that exist only in memory, a console that prints
 * heartbeats, and migrations whose progress is computed from the clock at `max-bandwidth`. It says
 * so at construction and on every handle (`simulated: true`); nothing it reports is evidence
 * about a real hypervisor.
 */

import type {
  HypervisorDriver,
  HypervisorLogger,
  SerialLinesOptions,
  VmHandle,
  VmRunState,
  VmSpec,
  VmStatus,
} from './driver';
import { HypervisorError } from './errors';
import type { VmEvent } from './events';
import { Feed } from './feed';
import {
  checkMigrationUri,
  type MigrationCapabilities,
  type MigrationParameters,
  type MigrationProgress,
  type MigrationUri,
  toQmpParameters,
} from './migration';
import { checkVmSpec } from './qemu-args';

interface SimulatedMigration {
  uri: MigrationUri;
  startedAtMs: number;
  status: 'active' | 'completed' | 'cancelled';
  endedAtMs?: number;
}

interface SimulatedVm {
  handle: VmHandle;
  spec: VmSpec;
  state: VmRunState;
  incomingUri: MigrationUri | undefined;
  params: Required<MigrationParameters>;
  migration: SimulatedMigration | undefined;
  heartbeatSeq: number;
  heartbeat: NodeJS.Timeout | undefined;
  serial: Feed<string>;
  events: Feed<VmEvent>;
}

export interface SimulatedDriverOptions {
  logger?: HypervisorLogger;
  /** Milliseconds since the epoch; the migration model reads it. */
  now?: () => number;
  /** Between simulated heartbeats; 0 prints none. Default 1 s, like the test guest. */
  heartbeatIntervalMs?: number;
}

// QEMU 7.2's defaults, so a simulated migration paces like an untuned real one.
const DEFAULT_PARAMS: Required<MigrationParameters> = {
  maxBandwidthBytesPerSec: 128 * 1024 * 1024,
  downtimeLimitMs: 300,
};

export class SimulatedDriver implements HypervisorDriver {
  private readonly vms = new Map<string, SimulatedVm>();
  private readonly now: () => number;
  private nextId = 1;

  constructor(private readonly options: SimulatedDriverOptions = {}) {
    this.now = options.now ?? Date.now;
    (options.logger?.warn ?? console.warn)(
      'hypervisor: SIMULATED DRIVER: no hypervisor runs behind these VMs; use it only where QEMU is missing',
    );
  }

  async launch(spec: VmSpec): Promise<VmHandle> {
    return this.create(spec, undefined, 'running');
  }

  async prepareIncoming(
    spec: VmSpec,
    uri: MigrationUri,
    _options?: { capabilities?: MigrationCapabilities },
  ) {
    return this.create(spec, checkMigrationUri(uri), 'inmigrate');
  }

  async status(vm: VmHandle): Promise<VmStatus> {
    const sim = this.settle(this.get(vm));
    return { state: sim.state, running: sim.state === 'running' };
  }

  async stop(vm: VmHandle): Promise<void> {
    this.setState(this.settle(this.get(vm)), 'paused', 'stop');
  }

  async cont(vm: VmHandle): Promise<void> {
    this.setState(this.settle(this.get(vm)), 'running', 'resume');
  }

  async destroy(vm: VmHandle): Promise<void> {
    const sim = this.vms.get(vm.id);
    if (sim === undefined) return;
    clearInterval(sim.heartbeat);
    this.vms.delete(vm.id);
    sim.events.end({ atMs: this.now(), type: 'exit', code: 0, signal: null });
    sim.serial.end();
  }

  async setMigrationParameters(vm: VmHandle, params: MigrationParameters): Promise<void> {
    toQmpParameters(params);
    Object.assign(this.get(vm).params, params);
  }

  async migrationParameters(vm: VmHandle): Promise<Required<MigrationParameters>> {
    return { ...this.get(vm).params };
  }

  async setMigrationCapabilities(vm: VmHandle, _capabilities: MigrationCapabilities): Promise<void> {
    this.get(vm);
  }

  async migrate(vm: VmHandle, uri: MigrationUri): Promise<void> {
    const sim = this.settle(this.get(vm));
    sim.migration = { uri: checkMigrationUri(uri), startedAtMs: this.now(), status: 'active' };
    sim.events.push({ atMs: this.now(), type: 'migration', status: 'active' });
  }

  async queryMigrate(vm: VmHandle): Promise<MigrationProgress> {
    const sim = this.settle(this.get(vm));
    const migration = sim.migration;
    const totalBytes = sim.spec.memoryMiB * 1024 * 1024;
    if (migration === undefined) return progress('none', 0, 0, undefined);
    const elapsedMs = (migration.endedAtMs ?? this.now()) - migration.startedAtMs;
    const sent = Math.min(totalBytes, Math.round((elapsedMs / 1000) * sim.params.maxBandwidthBytesPerSec));
    return progress(migration.status, sent, totalBytes, elapsedMs);
  }

  async cancelMigration(vm: VmHandle): Promise<void> {
    const sim = this.settle(this.get(vm));
    if (sim.migration?.status !== 'active') return;
    sim.migration.status = 'cancelled';
    sim.migration.endedAtMs = this.now();
    sim.events.push({ atMs: this.now(), type: 'migration', status: 'cancelled' });
  }

  serialLines(vm: VmHandle, options: SerialLinesOptions = {}): AsyncIterableIterator<string> {
    return this.get(vm).serial.subscribe(options);
  }

  events(vm: VmHandle): AsyncIterableIterator<VmEvent> {
    return this.get(vm).events.subscribe();
  }

  async close(): Promise<void> {
    await Promise.all([...this.vms.values()].map((sim) => this.destroy(sim.handle)));
  }

  private create(spec: VmSpec, incomingUri: MigrationUri | undefined, state: VmRunState): VmHandle {
    checkVmSpec(spec);
    const handle: VmHandle = {
      id: `${spec.name}#${this.nextId++}`,
      name: spec.name,
      simulated: true,
      pid: undefined,
      accelerator: 'simulated',
      runtimeDir: undefined,
      incoming: incomingUri !== undefined,
    };
    const sim: SimulatedVm = {
      handle,
      spec,
      state,
      incomingUri,
      params: { ...DEFAULT_PARAMS },
      migration: undefined,
      heartbeatSeq: 0,
      heartbeat: undefined,
      serial: new Feed(),
      events: new Feed(),
    };
    this.vms.set(handle.id, sim);
    sim.serial.push('DWCP-SIMULATED no hypervisor runs behind this console');
    const intervalMs = this.options.heartbeatIntervalMs ?? 1000;
    if (intervalMs > 0) {
      sim.heartbeat = setInterval(() => {
        if (this.settle(sim).state !== 'running') return;
        sim.serial.push(`DWCP-HEARTBEAT seq=${sim.heartbeatSeq++} simulated`);
      }, intervalMs);
      sim.heartbeat.unref();
    }
    return handle;
  }

  /** Brings a migration that the clock says has finished to its end, on both sides. */
  private settle(sim: SimulatedVm): SimulatedVm {
    const migration = sim.migration;
    if (migration?.status !== 'active') return sim;
    const totalBytes = sim.spec.memoryMiB * 1024 * 1024;
    const doneAtMs = migration.startedAtMs + (totalBytes / sim.params.maxBandwidthBytesPerSec) * 1000;
    if (this.now() < doneAtMs) return sim;
    migration.status = 'completed';
    migration.endedAtMs = doneAtMs;
    sim.events.push({ atMs: doneAtMs, type: 'migration', status: 'completed' });
    this.setState(sim, 'postmigrate', 'stop');
    const destination = [...this.vms.values()].find(
      (d) => d.state === 'inmigrate' && d.incomingUri === migration.uri,
    );
    if (destination) {
      destination.heartbeatSeq = sim.heartbeatSeq;
      this.setState(destination, 'running', 'resume');
    }
    return sim;
  }

  private setState(sim: SimulatedVm, state: VmRunState, event: 'stop' | 'resume'): void {
    if (sim.state === state) return;
    sim.state = state;
    sim.events.push({ atMs: this.now(), type: event });
  }

  private get(vm: VmHandle): SimulatedVm {
    const sim = this.vms.get(vm.id);
    if (sim === undefined) {
      throw new HypervisorError('ERR_HV_VM_NOT_FOUND', `no VM ${vm.id} (${vm.name}) runs under this driver`);
    }
    return sim;
  }
}

function progress(
  status: MigrationProgress['status'],
  sent: number,
  totalBytes: number,
  elapsedMs: number | undefined,
): MigrationProgress {
  return {
    status,
    transferredBytes: sent,
    remainingBytes: totalBytes - sent,
    totalBytes,
    dirtyRateBytesPerSec: 0,
    dirtySyncCount: 0,
    throughputBitsPerSec: 0,
    expectedDowntimeMs: undefined,
    downtimeMs: status === 'completed' ? 0 : undefined,
    setupTimeMs: undefined,
    totalTimeMs: elapsedMs,
    errorDesc: undefined,
  };
}

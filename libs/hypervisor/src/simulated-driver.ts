/**
 * A stand-in for machines without QEMU: VMs that exist only in memory, a console that prints
 * heartbeats, and live migrations that behave like QEMU's at the socket level: a stream of
 * simulated guest memory (simulated-stream.ts) written to `unix:`/`tcp:` URIs and read from them.
 * It says so at construction and on every handle (`simulated: true`); nothing it reports is
 * evidence about a real hypervisor.
 */

import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  HypervisorDriver,
  HypervisorLogger,
  SerialLinesOptions,
  VmHandle,
  VmRunState,
  VmSpec,
  VmStatus,
} from './driver';
import { HypervisorError, QmpError } from './errors';
import type { VmEvent } from './events';
import { Feed } from './feed';
import {
  checkMigrationUri,
  FINAL_MIGRATION_STATUSES,
  type MigrationCapabilities,
  type MigrationParameters,
  type MigrationProgress,
  type MigrationStatus,
  type MigrationUri,
  toQmpParameters,
} from './migration';
import { checkVmSpec } from './qemu-args';
import { GuestMemory, PAGE_SIZE, StreamEncoder, StreamReader } from './simulated-stream';

/** One outgoing migration, as `query-migrate` reports it. Times are `performance.now()`. */
interface OutgoingMigration {
  status: MigrationStatus;
  readonly abort: AbortController;
  readonly startedAt: number;
  endedAt?: number;
  setupTimeMs?: number;
  transferredBytes: number;
  /** Pages still to send: unsent ones in the first pass, dirty ones after. */
  remainingPages: number;
  dirtyRateBytesPerSec: number;
  dirtySyncCount: number;
  throughputBytesPerSec: number;
  expectedDowntimeMs?: number;
  downtimeMs?: number;
  errorDesc?: string;
  /** The sender; settles (never rejects) once the migration is completed, failed or cancelled. */
  done: Promise<void>;
}

interface SimulatedVm {
  handle: VmHandle;
  spec: VmSpec;
  state: VmRunState;
  /** Absent on a destination until its stream has loaded. */
  memory: GuestMemory | undefined;
  params: Required<MigrationParameters>;
  migration: OutgoingMigration | undefined;
  /** A destination's listener, then the source's connection to it. */
  incoming: { server: Server; connection?: Socket } | undefined;
  heartbeatSeq: number;
  heartbeat: NodeJS.Timeout | undefined;
  serial: Feed<string>;
  events: Feed<VmEvent>;
}

type SocketAddress = { path: string } | { host: string; port: number };

export interface SimulatedDriverOptions {
  logger?: HypervisorLogger;
  /** Milliseconds since the epoch, for event timestamps (QMP's clock). */
  now?: () => number;
  /** Between simulated heartbeats; 0 prints none. Default 1 s, like the test guest. */
  heartbeatIntervalMs?: number;
  /** How fast a running guest rewrites its working set (a 64th of RAM) while it migrates. Default 4 MiB/s. */
  dirtyRateBytesPerSec?: number;
}

// QEMU's defaults (7.2 and 10 agree on these), so a simulated migration paces like an untuned real one.
const DEFAULT_PARAMS: Required<MigrationParameters> = {
  maxBandwidthBytesPerSec: 128 * 1024 * 1024,
  downtimeLimitMs: 300,
  availSwitchoverBandwidthBytesPerSec: 0,
};
const DEFAULT_DIRTY_RATE = 4 * 1024 * 1024;
/** QEMU's rate-limit window and the span its bandwidth estimate needs (BUFFER_DELAY). */
const WINDOW_MS = 100;
const BATCH_BYTES = 64 * 1024;

export class SimulatedDriver implements HypervisorDriver {
  private readonly vms = new Map<string, SimulatedVm>();
  private readonly now: () => number;
  private readonly warn: (message: string) => void;
  private nextId = 1;

  constructor(private readonly options: SimulatedDriverOptions = {}) {
    this.now = options.now ?? Date.now;
    this.warn = options.logger?.warn.bind(options.logger) ?? console.warn;
    this.warn(
      'hypervisor: SIMULATED DRIVER: no hypervisor runs behind these VMs; use it only where QEMU is missing',
    );
  }

  async launch(spec: VmSpec): Promise<VmHandle> {
    const sim = this.create(spec, 'running');
    sim.memory = new GuestMemory(spec, randomBytes(8).toString('hex'));
    return sim.handle;
  }

  /** Listens on `uri` before it resolves, takes one connection and runs once a whole stream loaded. */
  async prepareIncoming(
    spec: VmSpec,
    uri: MigrationUri,
    _options?: { capabilities?: MigrationCapabilities },
  ): Promise<VmHandle> {
    const address = socketAddress(checkMigrationUri(uri));
    checkVmSpec(spec);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      const failed = (e: Error): void =>
        reject(new QmpError('migrate-incoming', 'GenericError', `Failed to bind socket: ${e.message}`));
      server.once('error', failed);
      server.listen(address, () => {
        server.off('error', failed);
        resolve();
      });
    });
    const sim = this.create(spec, 'inmigrate');
    server.on('error', (e) => this.warn(`hypervisor: simulated VM ${sim.handle.id}: listener: ${e.message}`));
    sim.incoming = { server };
    server.once('connection', (connection) => {
      server.close();
      if (sim.incoming) sim.incoming.connection = connection;
      this.load(sim, connection);
    });
    return sim.handle;
  }

  async status(vm: VmHandle): Promise<VmStatus> {
    const sim = this.get(vm);
    return { state: sim.state, running: sim.state === 'running' };
  }

  async stop(vm: VmHandle): Promise<void> {
    this.setState(this.live(vm), 'paused', 'stop');
  }

  async cont(vm: VmHandle): Promise<void> {
    this.setState(this.live(vm), 'running', 'resume');
  }

  async destroy(vm: VmHandle): Promise<void> {
    const sim = this.vms.get(vm.id);
    if (sim === undefined) return;
    this.vms.delete(vm.id);
    this.exit(sim, 0);
    sim.incoming?.server.close();
    sim.incoming?.connection?.destroy();
    sim.migration?.abort.abort();
    await sim.migration?.done;
  }

  async setMigrationParameters(vm: VmHandle, params: MigrationParameters): Promise<void> {
    toQmpParameters(params);
    const sim = this.get(vm);
    if (params.maxBandwidthBytesPerSec !== undefined) {
      sim.params.maxBandwidthBytesPerSec = params.maxBandwidthBytesPerSec;
    }
    if (params.downtimeLimitMs !== undefined) sim.params.downtimeLimitMs = params.downtimeLimitMs;
    if (params.availSwitchoverBandwidthBytesPerSec !== undefined) {
      sim.params.availSwitchoverBandwidthBytesPerSec = params.availSwitchoverBandwidthBytesPerSec;
    }
  }

  async migrationParameters(vm: VmHandle): Promise<Required<MigrationParameters>> {
    return { ...this.get(vm).params };
  }

  /** Accepted and ignored: the simulation neither throttles (auto-converge) nor caches pages (xbzrle). */
  async setMigrationCapabilities(vm: VmHandle, _capabilities: MigrationCapabilities): Promise<void> {
    this.get(vm);
  }

  async migrate(vm: VmHandle, uri: MigrationUri): Promise<void> {
    const sim = this.live(vm);
    const address = socketAddress(checkMigrationUri(uri));
    if (sim.migration !== undefined && !FINAL_MIGRATION_STATUSES.has(sim.migration.status)) {
      throw new QmpError('migrate', 'GenericError', "There's a migration process in progress");
    }
    const memory = sim.memory;
    if (memory === undefined) {
      throw new QmpError('migrate', 'GenericError', 'Guest is waiting for an incoming migration');
    }
    const migration: OutgoingMigration = {
      status: 'setup',
      abort: new AbortController(),
      startedAt: performance.now(),
      transferredBytes: 0,
      remainingPages: memory.pages,
      dirtyRateBytesPerSec: 0,
      dirtySyncCount: 0,
      throughputBytesPerSec: 0,
      done: Promise.resolve(),
    };
    sim.migration = migration;
    this.migrationEvent(sim, 'setup');
    migration.done = this.send(sim, memory, migration, address);
  }

  async queryMigrate(vm: VmHandle): Promise<MigrationProgress> {
    const sim = this.get(vm);
    const m = sim.migration;
    if (m === undefined) return NO_MIGRATION;
    return {
      status: m.status,
      transferredBytes: m.transferredBytes,
      remainingBytes: m.status === 'completed' ? 0 : m.remainingPages * PAGE_SIZE,
      totalBytes: sim.spec.memoryMiB * 1024 * 1024,
      dirtyRateBytesPerSec: m.dirtyRateBytesPerSec,
      dirtySyncCount: m.dirtySyncCount,
      throughputBitsPerSec: Math.round(m.throughputBytesPerSec * 8),
      expectedDowntimeMs: m.status === 'active' ? m.expectedDowntimeMs : undefined,
      downtimeMs: m.status === 'completed' ? m.downtimeMs : undefined,
      setupTimeMs: m.setupTimeMs,
      totalTimeMs: Math.round((m.endedAt ?? performance.now()) - m.startedAt),
      errorDesc: m.errorDesc,
      cpuThrottlePercent: 0,
    };
  }

  /** Stops writing and closes the socket; resolves once the migration is `cancelled`. */
  async cancelMigration(vm: VmHandle): Promise<void> {
    const m = this.get(vm).migration;
    if (m === undefined || FINAL_MIGRATION_STATUSES.has(m.status)) return;
    if (m.status !== 'cancelling') {
      m.status = 'cancelling';
      this.migrationEvent(this.get(vm), 'cancelling');
    }
    m.abort.abort();
    await m.done;
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

  private create(spec: VmSpec, state: 'running' | 'inmigrate'): SimulatedVm {
    checkVmSpec(spec);
    const handle: VmHandle = {
      id: `${spec.name}#${this.nextId++}`,
      name: spec.name,
      simulated: true,
      pid: undefined,
      accelerator: 'simulated',
      runtimeDir: undefined,
      incoming: state === 'inmigrate',
    };
    const sim: SimulatedVm = {
      handle,
      spec,
      state,
      memory: undefined,
      params: { ...DEFAULT_PARAMS },
      migration: undefined,
      incoming: undefined,
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
        if (sim.state === 'running') sim.serial.push(`DWCP-HEARTBEAT seq=${sim.heartbeatSeq++} simulated`);
      }, intervalMs);
      sim.heartbeat.unref();
    }
    return sim;
  }

  /**
   * The source's side, as QEMU's precopy: the whole RAM once (zero pages as 9-byte records), then
   * the pages the guest dirtied meanwhile, round after round, paced to `max-bandwidth`, until the
   * dirty set fits in `downtime-limit` at the measured rate; then the VM stops and the rest, the
   * device state and the trailer go out at full speed. Any socket error fails the migration; the
   * VM keeps (or goes back to) running, as QEMU's does.
   */
  private async send(
    sim: SimulatedVm,
    memory: GuestMemory,
    m: OutgoingMigration,
    address: SocketAddress,
  ): Promise<void> {
    let resumeAs: VmRunState | undefined;
    let socket: Socket | undefined;
    try {
      socket = await connect(address, m.abort.signal);
      m.abort.signal.throwIfAborted();
      m.setupTimeMs = Math.round(performance.now() - m.startedAt);
      m.status = 'active';
      this.migrationEvent(sim, 'active');
      const out = new PacedWriter(
        socket,
        () => sim.params.maxBandwidthBytesPerSec,
        m.abort.signal,
        (bytes, rate) => {
          m.transferredBytes += bytes;
          m.throughputBytesPerSec = rate;
        },
      );
      const stream = new StreamEncoder(memory);
      const dirtying = { lastAt: m.startedAt, carry: 0 };
      out.add(stream.header());
      for (let page = 0; page < memory.pages; page++) {
        if (out.add(stream.page(page))) await out.flush();
        m.remainingPages--;
      }
      let dirty = new Set<number>();
      for (;;) {
        await out.flush();
        this.dirtySync(sim, memory, m, dirty, dirtying);
        // As QEMU 8.2: the switchover bandwidth, when set, stands in for the measured rate.
        const rate =
          sim.params.availSwitchoverBandwidthBytesPerSec ||
          out.bytesPerSec ||
          sim.params.maxBandwidthBytesPerSec ||
          Number.POSITIVE_INFINITY;
        m.expectedDowntimeMs = Math.round(((dirty.size * PAGE_SIZE) / rate) * 1000);
        if (m.expectedDowntimeMs <= sim.params.downtimeLimitMs) break;
        const pass = dirty;
        dirty = new Set();
        for (const page of pass) {
          if (out.add(stream.page(page))) await out.flush();
          m.remainingPages--;
        }
      }
      const stoppedAt = performance.now();
      this.dirtySync(sim, memory, m, dirty, dirtying);
      resumeAs = sim.state;
      this.setState(sim, 'finish-migrate', resumeAs === 'running' ? 'stop' : undefined);
      for (const page of dirty) out.add(stream.page(page));
      out.add(stream.device({ heartbeatSeq: sim.heartbeatSeq, memory: memory.state() }));
      out.add(stream.end());
      await out.end();
      m.downtimeMs = Math.round(performance.now() - stoppedAt);
      m.remainingPages = 0;
      this.finishMigration(sim, m, 'completed');
      this.setState(sim, 'postmigrate');
    } catch (e) {
      const cancelled = m.abort.signal.aborted;
      if (!cancelled) m.errorDesc = e instanceof Error ? e.message : String(e);
      this.finishMigration(sim, m, cancelled ? 'cancelled' : 'failed');
      if (resumeAs !== undefined && sim.state === 'finish-migrate') {
        this.setState(sim, resumeAs, resumeAs === 'running' ? 'resume' : undefined);
      }
    } finally {
      socket?.destroy();
    }
  }

  /** The guest's writes since the last sync join the dirty set (only while it runs). */
  private dirtySync(
    sim: SimulatedVm,
    memory: GuestMemory,
    m: OutgoingMigration,
    dirty: Set<number>,
    dirtying: { lastAt: number; carry: number },
  ): void {
    const now = performance.now();
    const seconds = (now - dirtying.lastAt) / 1000;
    dirtying.lastAt = now;
    if (sim.state === 'running' && seconds > 0) {
      const rate = this.options.dirtyRateBytesPerSec ?? DEFAULT_DIRTY_RATE;
      const wanted = (rate * seconds) / PAGE_SIZE + dirtying.carry;
      const writes = Math.floor(wanted);
      dirtying.carry = wanted - writes;
      for (const page of memory.dirty(writes)) dirty.add(page);
      m.dirtyRateBytesPerSec = Math.round((writes * PAGE_SIZE) / seconds);
    } else {
      m.dirtyRateBytesPerSec = 0;
    }
    m.remainingPages = dirty.size;
    m.dirtySyncCount++;
    sim.events.push({ atMs: this.now(), type: 'migration-pass', pass: m.dirtySyncCount });
  }

  private finishMigration(sim: SimulatedVm, m: OutgoingMigration, status: MigrationStatus): void {
    m.status = status;
    m.endedAt = performance.now();
    this.migrationEvent(sim, status);
  }

  /**
   * The destination's side: reads the stream to EOF, then runs with the source's memory and
   * console where it stopped. A stream that is broken, cut short or not for this VM makes the VM
   * exit, as QEMU does when its load fails.
   */
  private load(sim: SimulatedVm, connection: Socket): void {
    const reader = new StreamReader(sim.spec);
    let settled = false;
    const fail = (reason: string): void => {
      if (settled) return;
      settled = true;
      connection.destroy();
      if (this.vms.get(sim.handle.id) !== sim) return;
      this.warn(
        `hypervisor: simulated VM ${sim.handle.id}: load of migration failed after ${reader.bytesRead} bytes: ${reason}; it exits as QEMU would`,
      );
      this.exit(sim, 1);
    };
    connection.on('data', (chunk: Buffer) => {
      if (settled) return;
      try {
        reader.push(chunk);
      } catch (e) {
        fail((e as Error).message);
      }
    });
    connection.once('end', () => {
      if (settled) return;
      try {
        const device = reader.end();
        settled = true;
        sim.incoming = undefined;
        sim.memory = new GuestMemory(sim.spec, device.memory.seed, device.memory.versions);
        sim.heartbeatSeq = device.heartbeatSeq;
        if (this.vms.get(sim.handle.id) === sim) this.setState(sim, 'running', 'resume');
      } catch (e) {
        fail((e as Error).message);
      }
    });
    connection.on('error', (e) => fail(e.message));
    connection.once('close', () => fail('the stream broke off'));
  }

  /** The "process" is gone: the last event, and the console ends. */
  private exit(sim: SimulatedVm, code: number): void {
    sim.state = 'exited';
    clearInterval(sim.heartbeat);
    sim.events.end({ atMs: this.now(), type: 'exit', code, signal: null });
    sim.serial.end();
  }

  private migrationEvent(sim: SimulatedVm, status: MigrationStatus): void {
    sim.events.push({ atMs: this.now(), type: 'migration', status });
  }

  private setState(sim: SimulatedVm, state: VmRunState, event?: 'stop' | 'resume'): void {
    if (sim.state === state) return;
    sim.state = state;
    if (event) sim.events.push({ atMs: this.now(), type: event });
  }

  private get(vm: VmHandle): SimulatedVm {
    const sim = this.vms.get(vm.id);
    if (sim === undefined) {
      throw new HypervisorError('ERR_HV_VM_NOT_FOUND', `no VM ${vm.id} (${vm.name}) runs under this driver`);
    }
    return sim;
  }

  private live(vm: VmHandle): SimulatedVm {
    const sim = this.get(vm);
    if (sim.state === 'exited') {
      throw new HypervisorError(
        'ERR_HV_VM_EXITED',
        `simulated VM ${vm.id} exited (its incoming migration failed)`,
      );
    }
    return sim;
  }
}

/**
 * Writes a stream to its socket in batches, paced to `maxBandwidth()` bytes a second (0: no cap, as
 * in QEMU) and waiting for the socket to drain, so a slow reader slows the writer down. Measures
 * the rate the socket takes bytes at, over spans of at least WINDOW_MS.
 */
class PacedWriter {
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private nextAt = performance.now();
  private failure: Error | undefined;
  private sample = { at: performance.now(), bytes: 0 };
  private written = 0;
  bytesPerSec = 0;

  constructor(
    private readonly socket: Socket,
    private readonly maxBandwidth: () => number,
    private readonly signal: AbortSignal,
    /** Bytes the socket took, and the rate it takes them at. */
    private readonly onWritten: (bytes: number, bytesPerSec: number) => void,
  ) {
    socket.on('error', (e) => {
      this.failure ??= e;
    });
    socket.on('close', () => {
      this.failure ??= new Error('the migration socket closed');
    });
    signal.addEventListener('abort', () => socket.destroy(), { once: true });
  }

  /** Queues a record; true when the batch is full and should be flushed. */
  add(record: Buffer): boolean {
    this.batch.push(record);
    this.batchBytes += record.length;
    const limit = this.maxBandwidth();
    const batchBytes = limit > 0 ? Math.max(PAGE_SIZE, Math.min(BATCH_BYTES, limit / 40)) : BATCH_BYTES;
    return this.batchBytes >= batchBytes;
  }

  async flush(paced = true): Promise<void> {
    if (this.batchBytes === 0) return;
    const bytes = Buffer.concat(this.batch, this.batchBytes);
    this.batch = [];
    this.batchBytes = 0;
    if (paced) await this.pace(bytes.length);
    this.check();
    const drained = this.socket.write(bytes);
    this.count(bytes.length);
    if (!drained) await this.until('drain');
  }

  /** Writes what is queued unpaced, then ends the stream; resolves once the socket took it all. */
  async end(): Promise<void> {
    await this.flush(false);
    this.check();
    this.socket.end();
    await this.until('finish');
  }

  private async pace(bytes: number): Promise<void> {
    const limit = this.maxBandwidth();
    if (limit <= 0) return;
    const now = performance.now();
    // Idle time earns no more than one window of credit, as QEMU's windows carry none over.
    this.nextAt = Math.max(this.nextAt, now - WINDOW_MS);
    if (this.nextAt > now) await sleep(this.nextAt - now, undefined, { signal: this.signal });
    this.nextAt += (bytes * 1000) / limit;
  }

  private count(bytes: number): void {
    this.written += bytes;
    const now = performance.now();
    if (now - this.sample.at >= WINDOW_MS) {
      this.bytesPerSec = ((this.written - this.sample.bytes) * 1000) / (now - this.sample.at);
      this.sample = { at: now, bytes: this.written };
    }
    this.onWritten(bytes, this.bytesPerSec);
  }

  private check(): void {
    this.signal.throwIfAborted();
    if (this.failure) throw this.failure;
  }

  private until(event: 'drain' | 'finish'): Promise<void> {
    return new Promise((resolve, reject) => {
      const settle = (error?: Error): void => {
        this.socket.off(event, done);
        this.socket.off('close', closed);
        if (error) reject(error);
        else resolve();
      };
      const done = (): void => settle();
      const closed = (): void => settle(this.failure ?? new Error('the migration socket closed'));
      this.socket.once(event, done);
      this.socket.once('close', closed);
    });
  }
}

const NO_MIGRATION: MigrationProgress = {
  status: 'none',
  transferredBytes: 0,
  remainingBytes: 0,
  totalBytes: 0,
  dirtyRateBytesPerSec: 0,
  dirtySyncCount: 0,
  throughputBitsPerSec: 0,
  expectedDowntimeMs: undefined,
  downtimeMs: undefined,
  setupTimeMs: undefined,
  totalTimeMs: undefined,
  errorDesc: undefined,
  cpuThrottlePercent: 0,
};

/** `unix:PATH` or `tcp:HOST:PORT`; the simulation has no process to `exec:` and no fds to pass. */
function socketAddress(uri: MigrationUri): SocketAddress {
  if (uri.startsWith('unix:')) return { path: uri.slice('unix:'.length) };
  const tcp = /^tcp:(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(uri);
  if (tcp) return { host: tcp[1] ?? tcp[2] ?? '', port: Number(tcp[3]) };
  throw HypervisorError.invalidArgument(
    'uri',
    `the simulated driver migrates over unix:PATH and tcp:HOST:PORT only, got '${uri}'`,
  );
}

function connect(address: SocketAddress, signal: AbortSignal): Promise<Socket> {
  const where = 'path' in address ? address.path : `${address.host}:${address.port}`;
  return new Promise((resolve, reject) => {
    const socket = createConnection(address);
    const aborted = (): void => {
      socket.destroy();
      reject(new Error('cancelled before it connected'));
    };
    signal.addEventListener('abort', aborted, { once: true });
    socket.once('connect', () => {
      signal.removeEventListener('abort', aborted);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e) => {
      signal.removeEventListener('abort', aborted);
      reject(new Error(`Failed to connect to '${where}': ${e.message}`));
    });
  });
}

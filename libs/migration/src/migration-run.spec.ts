import type { PathSample } from '@novacron/bandwidth';
import type { MigrationPath, MigrationPhase } from '@novacron/cluster-state';
import type {
  MigrationParameters,
  MigrationParameterValues,
  MigrationProgress,
  MigrationStatus,
  VmEvent,
  VmHandle,
  VmSpec,
  VmStatus,
} from '@novacron/hypervisor';
import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IncomingMigration } from './incoming-migration';
import { MigrationMetrics } from './metrics';
import { MigrationRun, type MigrationRunInput } from './migration-run';
import { MAX_MAX_BANDWIDTH } from './path-steering';
import type {
  DataPathEnd,
  DataPathSink,
  IncomingHypervisor,
  IncomingOffer,
  MigrationHypervisor,
  MigrationRunStats,
  ProbeResult,
  SinkCounters,
  SinkDataPath,
  SourceCounters,
  SourceDataPath,
} from './ports';

const handle = (id: string, incoming = false): VmHandle => ({
  id,
  name: id,
  simulated: false,
  pid: undefined,
  accelerator: 'kvm',
  runtimeDir: undefined,
  incoming,
});

const progress = (status: MigrationStatus, extra: Partial<MigrationProgress> = {}): MigrationProgress => ({
  status,
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
  ...extra,
});

/** Both hypervisors in one: every call lands in `calls`, `query-migrate` answers from a script. */
class FakeHypervisor implements MigrationHypervisor, IncomingHypervisor {
  readonly calls: string[] = [];
  readonly statuses = new Map<string, VmStatus>();
  script: MigrationProgress[] = [
    progress('active', {
      remainingBytes: 8_000_000,
      throughputBitsPerSec: 64_000_000,
      dirtyRateBytesPerSec: 4096,
    }),
    progress('active', { remainingBytes: 4_000_000, throughputBitsPerSec: 64_000_000 }),
    progress('completed', { downtimeMs: 42, totalTimeMs: 900 }),
  ];
  prepareError: Error | undefined;
  /** The destination runs once its stream ended (its sink finished) and it was asked about this many times. */
  destinationRunsAfter = 1;
  private destinationPolls = 0;

  async prepareIncoming(spec: VmSpec, uri: string): Promise<VmHandle> {
    this.calls.push(`prepareIncoming ${uri}`);
    if (this.prepareError) throw this.prepareError;
    const vm = handle(`${spec.name}-dst`, true);
    this.statuses.set(vm.id, { state: 'inmigrate', running: false });
    return vm;
  }
  async status(vm: VmHandle): Promise<VmStatus> {
    const streamEnded = this.calls.includes('sink finished');
    if (vm.incoming && streamEnded && ++this.destinationPolls >= this.destinationRunsAfter) {
      this.statuses.set(vm.id, { state: 'running', running: true });
    }
    return this.statuses.get(vm.id) ?? { state: 'exited', running: false };
  }
  async cont(vm: VmHandle): Promise<void> {
    this.calls.push(`cont ${vm.id}`);
    this.statuses.set(vm.id, { state: 'running', running: true });
  }
  async destroy(vm: VmHandle): Promise<void> {
    this.calls.push(`destroy ${vm.id}`);
    this.statuses.set(vm.id, { state: 'exited', running: false });
  }
  /** Whether this QEMU takes a switchover bandwidth (8.2 and later). */
  switchoverSupported = false;
  readonly parameters: MigrationParameters[] = [];
  async setMigrationParameters(vm: VmHandle, params: MigrationParameters): Promise<void> {
    this.calls.push(`setMigrationParameters ${vm.id}`);
    this.parameters.push(params);
  }
  async migrationParameters(): Promise<MigrationParameterValues> {
    const values = { maxBandwidthBytesPerSec: 128 << 20, downtimeLimitMs: 300 };
    return this.switchoverSupported ? { ...values, availSwitchoverBandwidthBytesPerSec: 0 } : values;
  }
  async setMigrationCapabilities(vm: VmHandle, caps: { autoConverge?: boolean }): Promise<void> {
    this.calls.push(`setMigrationCapabilities ${vm.id} autoConverge=${caps.autoConverge}`);
  }
  async migrate(vm: VmHandle, uri: string): Promise<void> {
    this.calls.push(`migrate ${vm.id} ${uri}`);
  }
  async queryMigrate(vm: VmHandle): Promise<MigrationProgress> {
    const next = this.script.length > 1 ? this.script.shift() : this.script[0];
    const p = next ?? progress('none');
    if (p.status === 'completed') this.statuses.set(vm.id, { state: 'postmigrate', running: false });
    return p;
  }
  async cancelMigration(vm: VmHandle): Promise<void> {
    this.calls.push(`cancelMigration ${vm.id}`);
    this.script = [progress('cancelled')];
  }
  events(): AsyncIterableIterator<VmEvent> {
    const it: AsyncIterableIterator<VmEvent> = {
      next: async () => ({ done: true, value: undefined }),
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}

/** A data path end whose `finished` settles when the test says so (or fails on cancel). */
class FakeEnd<S> implements DataPathEnd<S> {
  cancelled = false;
  private settle: { resolve: (s: { stats: S }) => void; reject: (e: Error) => void } | undefined;
  private readonly done = new Promise<{ stats: S }>((resolve, reject) => {
    this.settle = { resolve, reject };
  });
  constructor(
    private readonly counters: S,
    private readonly calls: string[],
    private readonly name: string,
  ) {}
  stats(): S {
    return this.counters;
  }
  finished(): Promise<{ stats: S }> {
    return this.done;
  }
  cancel(): void {
    this.cancelled = true;
    this.calls.push(`cancel ${this.name}`);
    this.fail(Object.assign(new Error('cancelled'), { code: 'ERR_MIGRATION_CANCELLED' }));
  }
  succeed(): void {
    this.calls.push(`${this.name} finished`);
    this.settle?.resolve({ stats: this.counters });
  }
  fail(e: Error): void {
    this.settle?.reject(e);
  }
}

class FakeSink extends FakeEnd<SinkCounters> implements DataPathSink {
  readonly port = 4242;
}

const SOURCE_COUNTERS: SourceCounters = {
  bytesFromQemu: 1000,
  wireBytes: 400,
  compressionRatio: 2.5,
  inventoryDedupBytes: 200,
  streamDedupBytes: 50,
};

/** A source end that can probe: with `result`, or failing with `failure`. */
class ProbingEnd extends FakeEnd<SourceCounters> {
  constructor(
    calls: string[],
    private readonly outcome: ProbeResult | Error,
    private readonly log: string[],
  ) {
    super(SOURCE_COUNTERS, calls, 'source');
  }
  async probe(maxMs: number): Promise<ProbeResult> {
    this.log.push(`probe ${maxMs}`);
    if (this.outcome instanceof Error) throw this.outcome;
    return this.outcome;
  }
}

/**
 * A source end whose path goes during its probe: the transfer fails at once (no connection can be
 * replaced), the probe only some time after the end is cancelled, as the native one notices.
 */
class LostDuringProbeEnd extends FakeEnd<SourceCounters> {
  private cancelledProbe: (() => void) | undefined;
  constructor(calls: string[]) {
    super(SOURCE_COUNTERS, calls, 'source');
  }
  async probe(maxMs: number): Promise<ProbeResult> {
    this.fail(Object.assign(new Error('TLS handshake failed: connection reset'), { code: 'ERR_AMST_TLS' }));
    await new Promise<void>((resolve) => {
      this.cancelledProbe = resolve;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    throw Object.assign(new Error(`connection 0 was lost 5 ms into a ${maxMs} ms probe`), {
      code: 'ERR_AMST_PROBE_FAILED',
    });
  }
  override cancel(): void {
    super.cancel();
    this.cancelledProbe?.();
  }
}

/** Both ends of the data path; socket paths name their role. */
class FakeDataPath implements SinkDataPath, SourceDataPath {
  /** Set: the source end probes, with this result or failure. */
  probe: ProbeResult | Error | undefined;
  source: FakeEnd<SourceCounters> | undefined;
  sink: FakeSink | undefined;
  released: string[] = [];
  constructor(private readonly calls: string[]) {}
  async socket(id: string) {
    const path = `/run/${id}/${this.source === undefined && this.sink === undefined ? 'sink' : 'source'}.sock`;
    return {
      path,
      release: async () => {
        this.released.push(path);
      },
    };
  }
  async openSink(socketPath: string): Promise<DataPathSink> {
    this.calls.push(`openSink ${socketPath}`);
    this.sink = new FakeSink({ bytesToQemu: 1000, wireBytes: 400 }, this.calls, 'sink');
    return this.sink;
  }
  offer(port: number): IncomingOffer {
    return { host: '127.0.0.1', port, serverName: 'node-b' };
  }
  startSource(o: { socketPath: string; offer: IncomingOffer; streams: number; zstdLevel: number }) {
    this.calls.push(`startSource ${o.socketPath} → ${o.offer.port} streams=${o.streams} zstd=${o.zstdLevel}`);
    this.source =
      this.probe === undefined
        ? new FakeEnd(SOURCE_COUNTERS, this.calls, 'source')
        : new ProbingEnd(this.calls, this.probe, this.calls);
    return this.source;
  }
}

interface Harness {
  hv: FakeHypervisor;
  incoming: IncomingMigration;
  data: FakeDataPath;
  calls: string[];
  reports: { phase: MigrationPhase; stats: MigrationRunStats; reason: string | undefined }[];
  registry: Registry;
  run: MigrationRun;
}

function harness(
  setup: (h: Omit<Harness, 'run' | 'incoming'>) => Partial<MigrationRunInput> = () => ({}),
  startTimeoutMs?: number,
): Harness {
  const hv = new FakeHypervisor();
  const calls = hv.calls;
  const data = new FakeDataPath(calls);
  const reports: Harness['reports'] = [];
  const registry = new Registry();
  const h = { hv, data, calls, reports, registry };
  const extra = setup(h);
  const incoming = new IncomingMigration({
    id: 'mig-1',
    spec: { name: 'vm', memoryMiB: 128 },
    driver: hv,
    dataPath: data,
    ...(startTimeoutMs === undefined ? {} : { startTimeoutMs }),
  });
  const run = new MigrationRun({
    id: 'mig-1',
    source: { driver: hv, vm: handle('vm-src'), dataPath: data },
    destination: incoming,
    onPhase: async (phase, stats, reason) => {
      reports.push({ phase, stats, reason });
      // QEMU finished writing: the data path drains after the run saw `completed`.
      if (phase === 'switching-over') {
        setTimeout(() => {
          data.source?.succeed();
          data.sink?.succeed();
        }, 5);
      }
    },
    options: {
      pollIntervalMs: 1,
      progressIntervalMs: 0,
      measured: { bandwidthBytesPerSec: 12_500_000, rttMs: 80 },
    },
    metrics: new MigrationMetrics(registry),
    ...extra,
  });
  hv.statuses.set('vm-src', { state: 'running', running: true });
  return { ...h, incoming, run };
}

const folded = (reports: Harness['reports']) =>
  reports.map((r) => r.phase).filter((p, i, all) => i === 0 || all[i - 1] !== p);

describe('MigrationRun with fake adapters', () => {
  const exporter = new InMemorySpanExporter();
  beforeAll(() => {
    trace.setGlobalTracerProvider(
      new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    );
  });
  afterAll(() => trace.disable());

  it('goes preparing → transferring → switching-over → done, and destroys the source only after the destination runs', async () => {
    exporter.reset();
    const h = harness(({ hv }) => {
      hv.destinationRunsAfter = 3;
      return {};
    });
    const outcome = await h.run.run();
    expect(outcome.phase).toBe('done');
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'switching-over', 'done']);
    expect(folded(h.reports)).toEqual(outcome.phases);
    expect(h.reports.filter((r) => r.phase === 'transferring').length).toBeGreaterThan(1);
    expect(h.calls).toEqual([
      'openSink /run/mig-1/sink.sock',
      'prepareIncoming unix:/run/mig-1/sink.sock',
      'startSource /run/mig-1/source.sock → 4242 streams=2 zstd=3',
      'setMigrationCapabilities vm-src autoConverge=true',
      'setMigrationParameters vm-src',
      'migrate vm-src unix:/run/mig-1/source.sock',
      'source finished',
      'sink finished',
      'destroy vm-src',
    ]);
    expect(h.incoming.vm?.id).toBe('vm-dst');
    expect(h.data.released.sort()).toEqual(['/run/mig-1/sink.sock', '/run/mig-1/source.sock']);
    const progressReport = h.reports.find((r) => r.phase === 'transferring' && r.stats.etaMs !== undefined);
    // 8 MB left at 64 Mbit/s.
    expect(progressReport?.stats).toMatchObject({
      remainingBytes: 8_000_000,
      etaMs: 1000,
      dirtyRateBytesPerSec: 4096,
    });
    expect(outcome.stats).toMatchObject({
      bytesIn: 1000,
      bytesOnWire: 400,
      compressionRatio: 2.5,
      dedupRatio: 0.25,
      downtimeMs: 42,
      remainingBytes: 0,
    });
    expect(outcome.parameters).toMatchObject({
      streams: 2,
      zstdLevel: 3,
      maxBandwidthBytesPerSec: 25_000_000,
    });

    const spans = exporter.getFinishedSpans().map((s) => s.name);
    expect(spans).toEqual([
      'migration.preparing',
      'migration.transferring',
      'migration.switching-over',
      'migration.done',
      'migration',
    ]);
    const text = await h.registry.metrics();
    expect(text).toContain('dwcp_migration_migrations_total{result="done"} 1');
    expect(text).toContain('dwcp_migration_wire_bytes_total 400');
    expect(text).toContain('dwcp_migration_downtime_seconds_count 1');
    expect(text).toContain('dwcp_migration_dedup_ratio_sum 0.25');
  });

  it("QEMU's migration failing rolls back: both ends cancelled, migrate_cancel, destination destroyed, source kept", async () => {
    const h = harness(({ hv }) => {
      hv.script = [progress('active'), progress('failed', { errorDesc: 'Unable to write to socket' })];
      return {};
    });
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({
      phase: 'failed',
      reason: "QEMU's migration failed: Unable to write to socket",
    });
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'failed']);
    expect(h.reports.at(-1)?.reason).toBe(outcome.reason);
    expect(h.calls.slice(6)).toEqual([
      'cancel source',
      'cancel sink',
      'destroy vm-dst',
      'cancelMigration vm-src',
    ]);
    expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'running', running: true });
    expect(h.data.released.sort()).toEqual(['/run/mig-1/sink.sock', '/run/mig-1/source.sock']);
    expect(await h.registry.metrics()).toContain('dwcp_migration_migrations_total{result="failed"} 1');
  });

  it('past its completion timeout it fails with that reason and rolls back; the throttle it reached is recorded', async () => {
    const h = harness(({ hv }) => {
      // 64 MiB of RAM at 0.05 s per GiB: 1 s at least (the floor), and QEMU never completes.
      hv.script = [
        progress('active', {
          totalBytes: 64 * 1024 * 1024,
          remainingBytes: 9_000_000,
          cpuThrottlePercent: 20,
        }),
        progress('active', {
          totalBytes: 64 * 1024 * 1024,
          remainingBytes: 9_000_000,
          cpuThrottlePercent: 30,
        }),
      ];
      return {
        options: {
          pollIntervalMs: 20,
          progressIntervalMs: 0,
          autoConverge: false,
          completionTimeoutPerGiBSec: 1,
          measured: { bandwidthBytesPerSec: 12_500_000, rttMs: 80 },
        },
      };
    });
    const started = performance.now();
    const outcome = await h.run.run();
    expect(performance.now() - started).toBeGreaterThanOrEqual(1000);
    expect(outcome.phase).toBe('failed');
    expect(outcome.reason).toMatch(/^ERR_MIGRATION_TIMEOUT: did not complete within 1\.0 s/);
    expect(outcome.reason).toContain('even throttled 30 %');
    expect(outcome.reason).toContain('the VM runs on at its source');
    expect(outcome.stats.cpuThrottlePercent).toBe(30);
    expect(h.calls).toContain('setMigrationCapabilities vm-src autoConverge=false');
    expect(h.calls).toContain('cancelMigration vm-src');
    expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'running', running: true });
  });

  it('an abort during transferring is cancelled with its reason, and leaves the source running', async () => {
    const abort = new AbortController();
    const h = harness(({ hv }) => {
      hv.script = [progress('active')];
      return {
        signal: abort.signal,
        onPhase: async (phase, stats, reason) => {
          h.reports.push({ phase, stats, reason });
          if (phase === 'transferring') abort.abort('operator asked');
        },
      };
    });
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'operator asked' });
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'cancelled']);
    expect(h.calls).toContain('cancelMigration vm-src');
    expect(h.calls).toContain('destroy vm-dst');
    expect(h.calls).not.toContain('destroy vm-src');
    expect(h.data.source?.cancelled && h.data.sink?.cancelled).toBe(true);
  });

  it('a sink failure after QEMU completed: the paused source is resumed with cont, the destination destroyed', async () => {
    const h = harness(({ data }) => ({
      onPhase: async (phase) => {
        if (phase === 'switching-over')
          setTimeout(() => data.sink?.fail(new Error('END digest mismatch')), 5);
      },
    }));
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({ phase: 'failed', reason: 'END digest mismatch' });
    expect(outcome.phases).toEqual(['preparing', 'transferring', 'switching-over', 'failed']);
    expect(h.calls).toContain('cont vm-src');
    expect(h.calls).toContain('destroy vm-dst');
    expect(h.calls).not.toContain('destroy vm-src');
    expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'running', running: true });
  });

  it('a failure once the destination runs the guest rolls forward: its abort is refused, the source destroyed, done', async () => {
    const h = harness(({ data }) => ({
      onPhase: async (phase, _stats, reason) => {
        h.reports.push({ phase, stats: {}, reason });
        if (phase !== 'switching-over') return;
        // The whole stream reached the destination; the source end then loses the final ack.
        setTimeout(() => {
          data.sink?.succeed();
          data.source?.fail(Object.assign(new Error('connection reset'), { code: 'ERR_AMST_IO' }));
        }, 5);
      },
    }));
    const outcome = await h.run.run();
    expect(outcome.phase).toBe('done');
    expect(outcome.reason).toMatch(/^rolled forward: ERR_AMST_IO: connection reset/);
    expect(h.reports.at(-1)).toMatchObject({ phase: 'done', reason: outcome.reason });
    expect(h.calls).toContain('destroy vm-src');
    expect(h.calls).not.toContain('destroy vm-dst');
    expect(h.calls).not.toContain('cont vm-src');
    expect(h.hv.statuses.get('vm-dst')).toEqual({ state: 'running', running: true });
  });

  it('a target that cannot be told to abort after QEMU completed holds the source paused, recording nothing', async () => {
    const h = harness(({ data }) => ({
      onPhase: async (phase, _stats, reason) => {
        h.reports.push({ phase, stats: {}, reason });
        if (phase === 'switching-over')
          setTimeout(() => data.source?.fail(new Error('the target went away')), 5);
      },
      destination: {
        prepare: () => h.incoming.prepare(),
        completion: () => h.incoming.completion(),
        abort: async () => {
          throw new Error('aborting the destination on node-b: UNAVAILABLE');
        },
      },
    }));
    const outcome = await h.run.run();
    expect(outcome.phase).toBe('held');
    expect(outcome.reason).toMatch(
      /the target went away; the source holds the VM paused until .*UNAVAILABLE/,
    );
    expect(h.reports.map((r) => r.phase)).not.toContain('failed');
    expect(h.calls).not.toContain('cont vm-src');
    expect(h.calls).not.toContain('destroy vm-src');
    expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'postmigrate', running: false });
  });

  it('leaves QEMU uncapped where it takes a switchover bandwidth, and caps it at the link × the reduction where not', async () => {
    const modern = harness(({ hv }) => {
      hv.switchoverSupported = true;
      return {};
    });
    const done = await modern.run.run();
    expect(done.phase).toBe('done');
    expect(modern.hv.parameters[0]).toMatchObject({ maxBandwidthBytesPerSec: MAX_MAX_BANDWIDTH });
    expect(done.parameters.maxBandwidthBytesPerSec).toBe(MAX_MAX_BANDWIDTH);
    const older = harness();
    const capped = await older.run.run();
    expect(capped.phase).toBe('done');
    // 12.5 MB/s measured × the 2× compression assumed before any reduction is seen.
    expect(older.hv.parameters[0]).toMatchObject({ maxBandwidthBytesPerSec: 25_000_000 });
    expect(capped.parameters.maxBandwidthBytesPerSec).toBe(25_000_000);
  });

  it('probes the path before QEMU is told to migrate, and PBA starts from what the probe measured', async () => {
    const observed: PathSample[] = [];
    const path = {
      observe: (s: PathSample) => observed.push(s),
      estimate: () => ({ samples: observed.length, rttMs: 12, minRttMs: 8 }),
    };
    const h = harness(({ data }) => {
      data.probe = {
        durationMs: 812,
        bytes: 6_000_000,
        goodputBytesPerSec: 11_000_000,
        rttMs: 104,
        minRttMs: 101,
        connections: 2,
        perConnection: [],
        endedBy: 'plateau',
        rounds: 7,
      };
      return { path };
    });
    const outcome = await h.run.run();
    expect(outcome.phase).toBe('done');
    // 15 × the 8 ms min RTT; before `migrate`.
    const probeAt = h.calls.indexOf('probe 120');
    expect(probeAt).toBeGreaterThan(-1);
    expect(probeAt).toBeLessThan(h.calls.indexOf('migrate vm-src unix:/run/mig-1/source.sock'));
    expect(observed[0]).toMatchObject({
      goodputBytesPerSec: 11_000_000,
      rttMs: 104,
      minRttMs: 101,
      connections: 2,
    });
  });

  it('does not probe a path PBA measured lately, nor a long one, unless told to', async () => {
    const measured = { atMs: 1, goodputBytesPerSec: 9_000_000, connections: 2, rttMs: 100 };
    const path = {
      observe: () => undefined,
      estimate: () => ({ samples: 3, rttMs: 100, minRttMs: 90, measured, bandwidthBytesPerSec: 9_000_000 }),
    };
    const probeResult: ProbeResult = {
      durationMs: 100,
      bytes: 1,
      goodputBytesPerSec: 1,
      connections: 2,
      perConnection: [],
      endedBy: 'plateau',
      rounds: 3,
    };
    const h = harness(({ data }) => {
      data.probe = probeResult;
      return { path };
    });
    expect((await h.run.run()).phase).toBe('done');
    expect(h.calls.some((c) => c.startsWith('probe'))).toBe(false);
    const told = harness(({ data }) => {
      data.probe = probeResult;
      return { path, options: { pollIntervalMs: 1, progressIntervalMs: 0, probeMs: 250 } };
    });
    expect((await told.run.run()).phase).toBe('done');
    expect(told.calls).toContain('probe 250');
    // A 100 ms path never measured: no probe either (it would end long before its plateau).
    const long = harness(({ data }) => {
      data.probe = probeResult;
      return {
        path: { observe: () => undefined, estimate: () => ({ samples: 0, rttMs: 100, minRttMs: 100 }) },
      };
    });
    expect((await long.run.run()).phase).toBe('done');
    expect(long.calls.some((c) => c.startsWith('probe'))).toBe(false);
  });

  it('a probe that fails is logged in the basis and the migration goes on', async () => {
    const logs: string[] = [];
    const h = harness(({ data }) => {
      data.probe = Object.assign(new Error('connection 1 reset'), {
        code: 'ERR_AMST_PROBE_FAILED',
      });
      return {
        options: { pollIntervalMs: 1, progressIntervalMs: 0, probeMs: 300 },
        logger: { log: (m: string) => logs.push(m), warn: (m: string) => logs.push(m) },
      };
    });
    expect((await h.run.run()).phase).toBe('done');
    expect(h.calls).toContain('probe 300');
    expect(logs.join('\n')).toContain('probe failed (ERR_AMST_PROBE_FAILED: connection 1 reset)');
  });

  it('a path lost during the probe fails the run in preparing, and its record names the failed probe', async () => {
    const records: { phase: MigrationPhase; reason: string | undefined; path: MigrationPath | undefined }[] =
      [];
    const h = harness(({ hv, data, calls }) => ({
      source: {
        driver: hv,
        vm: handle('vm-src'),
        dataPath: { socket: (id) => data.socket(id), startSource: () => new LostDuringProbeEnd(calls) },
      },
      onPhase: async (phase, _stats, reason, path) => {
        records.push({ phase, reason, path });
      },
      options: { probeMs: 5000 },
    }));
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({
      phase: 'failed',
      reason: 'ERR_AMST_TLS: TLS handshake failed: connection reset',
    });
    expect(outcome.phases).toEqual(['preparing', 'failed']);
    expect(h.calls.some((c) => c.startsWith('migrate'))).toBe(false);
    expect(h.calls).toContain('destroy vm-dst');
    expect(records.at(-1)?.path?.basis).toContain(
      'probe failed (ERR_AMST_PROBE_FAILED: connection 0 was lost 5 ms into a 5000 ms probe)',
    );
  });

  it('a destination that cannot start fails in preparing; QEMU is never told to migrate', async () => {
    const h = harness(({ hv }) => {
      hv.prepareError = Object.assign(new Error('qemu exited'), { code: 'ERR_HV_LAUNCH_FAILED' });
      return {};
    });
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({ phase: 'failed', reason: 'ERR_HV_LAUNCH_FAILED: qemu exited' });
    expect(outcome.phases).toEqual(['preparing', 'failed']);
    expect(h.calls).toEqual([
      'openSink /run/mig-1/sink.sock',
      'prepareIncoming unix:/run/mig-1/sink.sock',
      'cancel sink',
    ]);
  });

  it('a destination that never runs fails switching-over and is destroyed', async () => {
    const h = harness(({ hv }) => {
      hv.destinationRunsAfter = Number.POSITIVE_INFINITY;
      return {};
    }, 30);
    const outcome = await h.run.run();
    expect(outcome.phase).toBe('failed');
    expect(outcome.reason).toMatch(/did not run within the timeout \(state inmigrate\)/);
    expect(h.calls).toContain('cont vm-src');
    expect(h.calls).toContain('destroy vm-dst');
  });

  it('a phase sink that cannot record preparing fails the run before anything starts', async () => {
    const h = harness(() => ({
      onPhase: async (phase) => {
        if (phase === 'preparing') throw new Error('not the leader');
      },
    }));
    const outcome = await h.run.run();
    expect(outcome).toMatchObject({ phase: 'failed', reason: 'not the leader' });
    expect(h.calls).toEqual([]);
  });

  describe('an abort (cancel) in each phase rolls back to the source running and no destination', () => {
    it('pending: nothing starts', async () => {
      const abort = new AbortController();
      abort.abort('cancelled while pending');
      const h = harness(() => ({ signal: abort.signal }));
      const outcome = await h.run.run();
      expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'cancelled while pending' });
      expect(outcome.phases).toEqual(['cancelled']);
      expect(h.calls).toEqual([]);
    });

    it('preparing: the destination is aborted before QEMU is told to migrate', async () => {
      const abort = new AbortController();
      const h = harness(({ data }) => {
        const open = data.openSink.bind(data);
        data.openSink = async (path) => {
          const sink = await open(path);
          abort.abort('cancelled while preparing');
          return sink;
        };
        return { signal: abort.signal };
      });
      const outcome = await h.run.run();
      expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'cancelled while preparing' });
      expect(outcome.phases).toEqual(['preparing', 'cancelled']);
      expect(h.calls.some((c) => c.startsWith('migrate '))).toBe(false);
      expect(h.calls).toContain('cancel sink');
      expect(h.calls.filter((c) => c.startsWith('prepareIncoming')).length).toBe(
        h.calls.filter((c) => c === 'destroy vm-dst').length,
      );
      expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'running', running: true });
    });

    it('switching-over: QEMU already completed, so the paused source is resumed with cont', async () => {
      const abort = new AbortController();
      const h = harness(() => ({
        signal: abort.signal,
        onPhase: async (phase) => {
          if (phase === 'switching-over') setTimeout(() => abort.abort('cancelled while switching over'), 5);
        },
      }));
      const outcome = await h.run.run();
      expect(outcome).toMatchObject({ phase: 'cancelled', reason: 'cancelled while switching over' });
      expect(outcome.phases).toEqual(['preparing', 'transferring', 'switching-over', 'cancelled']);
      expect(h.calls).toContain('destroy vm-dst');
      expect(h.calls).toContain('cont vm-src');
      expect(h.calls).not.toContain('destroy vm-src');
      // The destination goes before the source resumes: never two running copies.
      expect(h.calls.indexOf('destroy vm-dst')).toBeLessThan(h.calls.indexOf('cont vm-src'));
      expect(h.hv.statuses.get('vm-src')).toEqual({ state: 'running', running: true });
    });
  });
});

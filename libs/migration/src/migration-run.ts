/**
 * Carries one live migration of a running VM through its phases, and back out of them when
 * anything fails or the caller aborts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationPhase } from '@novacron/cluster-state';
import type { MigrationProgress, VmEvent, VmHandle, VmSpec } from '@novacron/hypervisor';
import { type Context, context, SpanStatusCode, trace } from '@opentelemetry/api';
import type { MigrationMetrics } from './metrics';
import { chooseParameters, type MigrationParameterChoice, type PathMeasurement } from './parameters';
import type {
  DataPathEnd,
  DataPathSink,
  MigrationDataPath,
  MigrationHypervisor,
  MigrationLogger,
  MigrationRunStats,
  MigrationSockets,
  PhaseSink,
  SinkCounters,
  SourceCounters,
} from './ports';

const tracer = trace.getTracer('dwcp-migration');

export interface MigrationRunOptions {
  /** The path to the destination as measured; `chooseParameters` turns it into the knobs below. */
  measured?: PathMeasurement;
  /** Each of these overrides the chosen value. */
  streams?: number;
  zstdLevel?: number;
  maxBandwidthBytesPerSec?: number;
  downtimeLimitMs?: number;
  /** `query-migrate` polling (default 200 ms). */
  pollIntervalMs?: number;
  /** How often a transferring migration reports its stats (default 1000 ms). */
  progressIntervalMs?: number;
  /** How long the destination may take to run once its stream ended (default 10 s). */
  destinationStartTimeoutMs?: number;
  /** How long a rollback waits for QEMU to leave a migration it was told to cancel (default 10 s). */
  settleTimeoutMs?: number;
}

export interface MigrationRunInput {
  id: string;
  source: { driver: MigrationHypervisor; vm: VmHandle };
  destination: { driver: MigrationHypervisor; spec: VmSpec };
  dataPath: MigrationDataPath;
  onPhase: PhaseSink;
  signal?: AbortSignal;
  options?: MigrationRunOptions;
  metrics?: MigrationMetrics;
  logger?: MigrationLogger;
}

export interface MigrationOutcome {
  phase: 'done' | 'failed' | 'cancelled';
  reason?: string;
  /** The VM on the destination; set only when done. */
  destination?: VmHandle;
  stats: MigrationRunStats;
  parameters: MigrationParameterChoice;
  /** Every phase reported, in order, repeats (progress reports) folded. */
  phases: MigrationPhase[];
}

class Aborted extends Error {}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}

function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (typeof r === 'string') return r;
  if (r instanceof Error && r.name !== 'AbortError') return r.message;
  return 'aborted';
}

/** Resolves to the time of the first event of `type`, or undefined when the VM's events end first. */
async function firstEventAt(
  events: AsyncIterator<VmEvent>,
  type: VmEvent['type'],
): Promise<number | undefined> {
  for (;;) {
    const next = await events.next();
    if (next.done) return undefined;
    if (next.value.type === type) return next.value.atMs;
  }
}

/**
 * One migration, on one machine: both ends run in this process and talk through the data path over
 * loopback. Between nodes, the destination's part (sink, `prepareIncoming`, inventory, the start
 * check) will be RPCs to the target node; they are not written yet.
 *
 * Phases: `preparing` (sockets, sink, destination QEMU listening, source started, QEMU's knobs
 * set), `transferring` (QEMU streams; progress reports), `switching-over` (QEMU says completed: the
 * source is paused; the sink's `finished()` is the real end), `done` (the destination runs, then
 * the source VM is destroyed). On any failure or abort before `done` it rolls back: both ends of the
 * data path cancelled, `migrate_cancel`, the source VM running again (`cont` after `postmigrate`),
 * the destination QEMU destroyed; then `failed` or `cancelled` with the reason.
 *
 * `run()` resolves with the outcome and does not throw.
 */
export class MigrationRun {
  readonly parameters: MigrationParameterChoice;
  private readonly phases: MigrationPhase[] = [];
  private readonly interrupts: Promise<never>[] = [];
  private sockets: Promise<MigrationSockets> | undefined;
  private sink: Promise<DataPathSink> | undefined;
  private destination: Promise<VmHandle> | undefined;
  private source: DataPathEnd<SourceCounters> | undefined;
  private sourceFinished: Promise<{ stats: SourceCounters }> | undefined;
  private sinkFinished: Promise<{ stats: SinkCounters }> | undefined;
  private migrateIssued = false;
  private progress: MigrationProgress | undefined;
  private stopAt: Promise<number | undefined> | undefined;
  private resumeAt: Promise<number | undefined> | undefined;
  private readonly eventStreams: AsyncIterator<VmEvent>[] = [];
  private startedAt = 0;

  constructor(private readonly input: MigrationRunInput) {
    const o = input.options ?? {};
    const chosen = chooseParameters(o.measured);
    this.parameters = {
      streams: o.streams ?? chosen.streams,
      zstdLevel: o.zstdLevel ?? chosen.zstdLevel,
      maxBandwidthBytesPerSec: o.maxBandwidthBytesPerSec ?? chosen.maxBandwidthBytesPerSec,
      downtimeLimitMs: o.downtimeLimitMs ?? chosen.downtimeLimitMs,
      basis: chosen.basis,
    };
    const { signal } = input;
    if (signal) {
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(new Aborted(abortReason(signal)));
        else signal.addEventListener('abort', () => reject(new Aborted(abortReason(signal))), { once: true });
      });
      aborted.catch(() => {});
      this.interrupts.push(aborted);
    }
  }

  async run(): Promise<MigrationOutcome> {
    const { id, source } = this.input;
    this.startedAt = performance.now();
    const p = this.parameters;
    this.input.logger?.log(
      `migration ${id}: ${p.basis}; using ${p.streams} connections, zstd ${p.zstdLevel}, ` +
        `max-bandwidth ${p.maxBandwidthBytesPerSec} B/s, downtime-limit ${p.downtimeLimitMs} ms`,
    );
    const root = tracer.startSpan('migration', {
      attributes: { 'dwcp.migration.id': id, 'dwcp.vm.name': source.vm.name },
    });
    const ctx = trace.setSpan(context.active(), root);
    try {
      await this.phase(ctx, 'preparing', () => this.prepare());
      await this.phase(ctx, 'transferring', () => this.transfer());
      const destination = await this.phase(ctx, 'switching-over', () => this.switchOver());
      const outcome = await this.finish(ctx, destination);
      root.end();
      return outcome;
    } catch (e) {
      const outcome = await this.rollBack(e);
      root.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason ?? outcome.phase });
      root.setAttribute('dwcp.migration.result', outcome.phase);
      root.end();
      return outcome;
    }
  }

  /** Reports `phase`, then runs `body` in its span, cut short by an abort or a data path failure. */
  private async phase<T>(ctx: Context, phase: MigrationPhase, body: () => Promise<T>): Promise<T> {
    const span = tracer.startSpan(
      `migration.${phase}`,
      { attributes: { 'dwcp.migration.id': this.input.id } },
      ctx,
    );
    try {
      await this.report(phase);
      const result = await this.guard(body());
      span.setAttributes(this.spanStats());
      return result;
    } catch (e) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(e) });
      throw e;
    } finally {
      span.end();
    }
  }

  private async prepare(): Promise<void> {
    const { dataPath, destination, source, id } = this.input;
    this.sockets = dataPath.sockets(id);
    const sockets = await this.guard(this.sockets);
    this.sink = dataPath.openSink(sockets.sink);
    const sink = await this.guard(this.sink);
    this.sinkFinished = this.watch(sink.finished());
    this.destination = destination.driver.prepareIncoming(destination.spec, `unix:${sockets.sink}`);
    const vm = await this.guard(this.destination);
    const resumes = destination.driver.events(vm);
    this.eventStreams.push(resumes);
    this.resumeAt = firstEventAt(resumes, 'resume');
    this.source = dataPath.startSource({
      socketPath: sockets.source,
      sinkPort: sink.port,
      streams: this.parameters.streams,
      zstdLevel: this.parameters.zstdLevel,
    });
    this.sourceFinished = this.watch(this.source.finished());
    await source.driver.setMigrationParameters(source.vm, {
      maxBandwidthBytesPerSec: this.parameters.maxBandwidthBytesPerSec,
      downtimeLimitMs: this.parameters.downtimeLimitMs,
    });
  }

  private async transfer(): Promise<void> {
    const { source, options } = this.input;
    const sockets = await this.guard(this.required(this.sockets));
    const stops = source.driver.events(source.vm);
    this.eventStreams.push(stops);
    this.stopAt = firstEventAt(stops, 'stop');
    this.migrateIssued = true;
    await source.driver.migrate(source.vm, `unix:${sockets.source}`);
    let reported = performance.now();
    for (;;) {
      const progress = await this.guard(source.driver.queryMigrate(source.vm));
      this.progress = progress;
      if (progress.status === 'completed') return;
      if (progress.status === 'failed' || progress.status === 'cancelled') {
        throw new Error(
          `QEMU's migration ${progress.status}${progress.errorDesc ? `: ${progress.errorDesc}` : ''}`,
        );
      }
      if (performance.now() - reported >= (options?.progressIntervalMs ?? 1000)) {
        await this.report('transferring');
        reported = performance.now();
      }
      await this.guard(sleep(options?.pollIntervalMs ?? 200));
    }
  }

  private async switchOver(): Promise<VmHandle> {
    const { destination, options } = this.input;
    await this.guard(Promise.all([this.required(this.sourceFinished), this.required(this.sinkFinished)]));
    const vm = await this.required(this.destination);
    const deadline = performance.now() + (options?.destinationStartTimeoutMs ?? 10_000);
    for (;;) {
      const status = await this.guard(destination.driver.status(vm));
      if (status.running) return vm;
      if (status.state === 'exited') throw new Error('the destination QEMU exited after its stream ended');
      if (performance.now() > deadline) {
        throw new Error(`the destination did not run within the timeout (state ${status.state})`);
      }
      await this.guard(sleep(50));
    }
  }

  private async finish(ctx: Context, destination: VmHandle): Promise<MigrationOutcome> {
    const { source, id, metrics, logger } = this.input;
    const span = tracer.startSpan('migration.done', { attributes: { 'dwcp.migration.id': id } }, ctx);
    // The destination runs with everything; only now may the source go.
    try {
      await source.driver.destroy(source.vm);
    } catch (e) {
      logger?.warn(`migration ${id}: done, but destroying the source VM failed: ${describeError(e)}`);
      span.setAttribute('dwcp.migration.source_destroy_error', describeError(e));
    }
    const downtimeMs = await this.pauseMs();
    const stats: MigrationRunStats = { ...this.stats(), remainingBytes: 0, etaMs: 0 };
    if (downtimeMs !== undefined) stats.downtimeMs = downtimeMs;
    this.closeEventStreams();
    await this.releaseSockets();
    try {
      await this.report('done', stats);
    } catch (e) {
      logger?.warn(`migration ${id}: done, but reporting it failed: ${describeError(e)}`);
    }
    if (metrics) {
      metrics.migrations.inc({ result: 'done' });
      metrics.duration.observe((stats.totalMs ?? 0) / 1000);
      if (stats.downtimeMs !== undefined) metrics.downtime.observe(stats.downtimeMs / 1000);
      metrics.wireBytes.inc(stats.bytesOnWire ?? 0);
      if (stats.dedupRatio !== undefined) metrics.dedupRatio.observe(stats.dedupRatio);
    }
    logger?.log(`migration ${id}: done ${JSON.stringify(stats)}`);
    span.setAttributes(this.spanStats(stats));
    span.end();
    return { phase: 'done', destination, stats, parameters: this.parameters, phases: [...this.phases] };
  }

  private async rollBack(cause: unknown): Promise<MigrationOutcome> {
    const { source, destination, id, logger, metrics, options } = this.input;
    const result = cause instanceof Aborted ? 'cancelled' : 'failed';
    const reason = describeError(cause);
    logger?.warn(`migration ${id}: ${result} in ${this.phases.at(-1) ?? 'pending'}: ${reason}; rolling back`);
    const stats = this.stats();
    const step = async (what: string, f: () => Promise<unknown>): Promise<void> => {
      try {
        await f();
      } catch (e) {
        logger?.warn(`migration ${id}: rollback: ${what}: ${describeError(e)}`);
      }
    };

    const sourceEnd = this.source;
    if (sourceEnd) await step('cancelling the source end', async () => sourceEnd.cancel());
    const sink = await this.sink?.catch(() => undefined);
    if (sink) await step('cancelling the sink end', async () => sink.cancel());
    if (this.migrateIssued) {
      await step('migrate_cancel', () => source.driver.cancelMigration(source.vm));
      // QEMU must leave the migration (cancelled, failed, or completed into postmigrate) before `cont`.
      const deadline = performance.now() + (options?.settleTimeoutMs ?? 10_000);
      await step('waiting for QEMU to leave the migration', async () => {
        for (;;) {
          const p = await source.driver.queryMigrate(source.vm);
          if (
            p.status === 'completed' ||
            p.status === 'failed' ||
            p.status === 'cancelled' ||
            p.status === 'none'
          ) {
            return;
          }
          if (performance.now() > deadline) throw new Error(`still '${p.status}'`);
          await sleep(50);
        }
      });
    }
    await step('resuming the source VM', async () => {
      const status = await source.driver.status(source.vm);
      if (!status.running && status.state !== 'exited') await source.driver.cont(source.vm);
    });
    await Promise.allSettled([this.sourceFinished, this.sinkFinished]);
    const vm = await this.destination?.catch(() => undefined);
    if (vm) await step('destroying the destination', () => destination.driver.destroy(vm));
    this.closeEventStreams();
    await this.releaseSockets();
    await step(`reporting ${result}`, () => this.report(result, stats, reason));
    metrics?.migrations.inc({ result });
    if (stats.bytesOnWire) metrics?.wireBytes.inc(stats.bytesOnWire);
    return { phase: result, reason, stats, parameters: this.parameters, phases: [...this.phases] };
  }

  private async report(phase: MigrationPhase, stats = this.stats(), reason?: string): Promise<void> {
    if (this.phases.at(-1) !== phase) this.phases.push(phase);
    await (reason === undefined
      ? this.input.onPhase(phase, stats)
      : this.input.onPhase(phase, stats, reason));
  }

  private stats(): MigrationRunStats {
    const stats: MigrationRunStats = { totalMs: Math.round(performance.now() - this.startedAt) };
    const sent = this.source?.stats();
    if (sent) {
      stats.bytesIn = sent.bytesFromQemu;
      stats.bytesOnWire = sent.wireBytes;
      stats.compressionRatio = sent.compressionRatio;
      if (sent.bytesFromQemu > 0) {
        stats.dedupRatio = (sent.inventoryDedupBytes + sent.streamDedupBytes) / sent.bytesFromQemu;
      }
    }
    const p = this.progress;
    if (p) {
      stats.remainingBytes = p.remainingBytes;
      stats.dirtyRateBytesPerSec = p.dirtyRateBytesPerSec;
      if (p.throughputBitsPerSec > 0)
        stats.etaMs = Math.round((p.remainingBytes * 8000) / p.throughputBitsPerSec);
      if (p.downtimeMs !== undefined) stats.downtimeMs = p.downtimeMs;
    }
    return stats;
  }

  private spanStats(stats = this.stats()): Record<string, number> {
    const attributes: Record<string, number> = {};
    for (const [k, v] of Object.entries(stats))
      if (typeof v === 'number') attributes[`dwcp.migration.${k}`] = v;
    return attributes;
  }

  /** The guest's real pause (source STOP → destination RESUME); QEMU's own figure if an event is missing. */
  private async pauseMs(): Promise<number | undefined> {
    const within = <T>(p: Promise<T> | undefined) =>
      Promise.race([p, sleep(2000).then(() => undefined)]) as Promise<T | undefined>;
    const [stop, resume] = await Promise.all([within(this.stopAt), within(this.resumeAt)]);
    if (stop !== undefined && resume !== undefined) return resume - stop;
    return this.progress?.downtimeMs;
  }

  /** A data path end's `finished()`, which may be awaited only once: a failure also interrupts the run. */
  private watch<T>(finished: Promise<T>): Promise<T> {
    finished.catch(() => {});
    const failure = finished.then(() => new Promise<never>(() => {}));
    failure.catch(() => {});
    this.interrupts.push(failure);
    return finished;
  }

  private guard<T>(p: Promise<T>): Promise<T> {
    return Promise.race([p, ...this.interrupts]);
  }

  private required<T>(p: Promise<T> | undefined): Promise<T> {
    if (p === undefined) throw new Error('migration step out of order');
    return p;
  }

  private closeEventStreams(): void {
    for (const events of this.eventStreams.splice(0)) void events.return?.();
  }

  private async releaseSockets(): Promise<void> {
    const sockets = await this.sockets?.catch(() => undefined);
    await sockets?.release().catch(() => {});
  }
}

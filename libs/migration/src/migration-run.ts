/**
 * Carries one live migration of a running VM through its phases, and back out of them when
 * anything fails or the caller aborts.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { PathEstimate, PeerPathView } from '@novacron/bandwidth';
import type { MigrationPhase } from '@novacron/cluster-state';
import { followMigration, type MigrationProgress, type VmEvent, type VmHandle } from '@novacron/hypervisor';
import { type Context, context, SpanStatusCode, trace } from '@opentelemetry/api';
import type { MigrationMetrics } from './metrics';
import { chooseParameters, type MigrationParameterChoice, type PathMeasurement } from './parameters';
import { PathSteering } from './path-steering';
import type {
  IncomingOffer,
  IncomingResult,
  MigrationDestination,
  MigrationHypervisor,
  MigrationLogger,
  MigrationRunStats,
  MigrationSocket,
  PhaseSink,
  SourceCounters,
  SourceDataPath,
  SourceDataPathEnd,
} from './ports';
import { decideSwitchover, type SourceCopy, type TargetAnswer } from './switchover-decision';
import { firstEventAt } from './vm-events';

const tracer = trace.getTracer('dwcp-migration');

export interface MigrationRunOptions {
  /** The path to the destination as measured; `chooseParameters` turns it into the knobs below. Default: the input's `path` estimate. */
  measured?: PathMeasurement;
  /** Each of these overrides the chosen value. */
  streams?: number;
  zstdLevel?: number;
  maxBandwidthBytesPerSec?: number;
  downtimeLimitMs?: number;
  /** `query-migrate` polling (default 200 ms). */
  pollIntervalMs?: number;
  /** How often the path is sampled for PBA and QEMU's max-bandwidth re-aimed (default 500 ms). */
  sampleIntervalMs?: number;
  /** How often a transferring migration reports its stats (default 1000 ms). */
  progressIntervalMs?: number;
  /** How long a rollback waits for QEMU to leave a migration it was told to cancel (default 10 s). */
  settleTimeoutMs?: number;
  /** Let QEMU throttle a guest that dirties memory faster than the path carries it (default on). */
  autoConverge?: boolean;
  /** Fail (and roll back) past this many seconds per GiB of guest RAM (default 150, as KubeVirt). */
  completionTimeoutPerGiBSec?: number;
  /**
   * The longest probe of the path before QEMU starts, ms (0: none). Default: on a path up to 20 ms
   * RTT that PBA has not measured lately, 15 RTTs within 50..300 ms; none on a longer one; it ends sooner once goodput stops growing. Short, because probe bytes carry
   * nothing: on `internet` a probe run to its plateau took about 1 s and 5 MB, where the stream's
   * own slow start would have carried data; a short one measures the RTT, warms the connections
   * and gives a lower bound of the rate.
   */
  probeMs?: number;
}

const GiB = 1024 ** 3;
/** Paths up to this RTT are probed before QEMU starts (`probe`). */
const PROBE_MAX_RTT_MS = 20;

/** The migration ran past its completion timeout: it is failed, and the VM runs on at its source. */
class CompletionTimeout extends Error {
  readonly code = 'ERR_MIGRATION_TIMEOUT';
}

export interface MigrationRunInput {
  id: string;
  source: { driver: MigrationHypervisor; vm: VmHandle; dataPath: SourceDataPath };
  /** The destination's half, in this process (IncomingMigration) or on the target node (over RPC). */
  destination: MigrationDestination;
  /** PBA's view of the path to the destination: fed with this run's samples, and steering it. */
  path?: PeerPathView;
  onPhase: PhaseSink;
  signal?: AbortSignal;
  options?: MigrationRunOptions;
  metrics?: MigrationMetrics;
  logger?: MigrationLogger;
}

export interface MigrationOutcome {
  /**
   * `held`: the run could not learn whether the destination runs the guest (the target did not
   * answer Abort) after QEMU may have switched over, so the source VM is left paused and nothing is
   * recorded; the caller must settle it (MigrationAgent asks the target again).
   */
  phase: 'done' | 'failed' | 'cancelled' | 'held';
  reason?: string;
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

/** What chooseParameters gets from PBA: the RTT, and a rate the path should sustain. */
function measurementOf(estimate: PathEstimate | undefined): PathMeasurement {
  const m: PathMeasurement = {};
  // Propagation, not the queue the last transfer built: connections and buffers cover that.
  const rtt = estimate?.minRttMs ?? estimate?.rttMs;
  if (rtt !== undefined) m.rttMs = rtt;
  const bw = estimate?.lowerBandwidthBytesPerSec ?? estimate?.bandwidthBytesPerSec;
  if (bw !== undefined) m.bandwidthBytesPerSec = bw;
  return m;
}

function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (typeof r === 'string') return r;
  if (r instanceof Error && r.name !== 'AbortError') return r.message;
  return 'aborted';
}

/**
 * One migration, driven from the source node. The destination's half (sink, destination QEMU, the
 * start check) is a MigrationDestination: an IncomingMigration in this process, or the same class
 * on the target node behind the peer RPCs.
 *
 * Phases: `preparing` (the destination's sink and QEMU listening, its inventory, the source started,
 * QEMU's knobs set), `transferring` (QEMU streams; progress reports), `switching-over` (QEMU says
 * completed: the source is paused; the destination's completion is the real end), `done` (the
 * destination runs, then the source VM is destroyed). On any failure or abort before `done` it rolls
 * back: the source end cancelled, the destination aborted (sink cancelled, its QEMU destroyed, so two
 * copies never run), `migrate_cancel`, the source VM running again (`cont` after `postmigrate`); then
 * `failed` or `cancelled` with the reason.
 *
 * `run()` resolves with the outcome and does not throw.
 */
export class MigrationRun {
  readonly parameters: MigrationParameterChoice;
  private readonly phases: MigrationPhase[] = [];
  private readonly interrupts: Promise<never>[] = [];
  private socket: Promise<MigrationSocket> | undefined;
  private offer: Promise<IncomingOffer> | undefined;
  private source: SourceDataPathEnd | undefined;
  private sourceFinished: Promise<{ stats: SourceCounters }> | undefined;
  /** The probe before QEMU starts, true once it measured; it never rejects. */
  private probing: Promise<boolean> | undefined;
  private arrived: Promise<IncomingResult> | undefined;
  private migrateIssued = false;
  private progress: MigrationProgress | undefined;
  private stopAt: Promise<number | undefined> | undefined;
  private readonly eventStreams: AsyncIterator<VmEvent>[] = [];
  private startedAt = 0;
  /** For the wire rate of progress reports. */
  private lastSample: { atMs: number; wireBytes: number } | undefined;
  private wireBytesPerSec: number | undefined;
  private readonly steering: PathSteering;
  /** The highest vCPU throttle auto-converge applied, percent. */
  private throttle = 0;
  /** Reports in commit order: each waits for the one before. */
  private reports: Promise<void> = Promise.resolve();
  private progressInFlight = false;
  /** When the destination had acknowledged the whole stream, and when its completion reached this run (epoch ms). */
  private switchedOverAt: { drainedAt: number; arrivedAt: number } | undefined;

  constructor(private readonly input: MigrationRunInput) {
    const o = input.options ?? {};
    const chosen = chooseParameters(o.measured ?? measurementOf(input.path?.estimate()));
    this.parameters = {
      streams: o.streams ?? chosen.streams,
      zstdLevel: o.zstdLevel ?? chosen.zstdLevel,
      maxBandwidthBytesPerSec: o.maxBandwidthBytesPerSec ?? chosen.maxBandwidthBytesPerSec,
      downtimeLimitMs: o.downtimeLimitMs ?? chosen.downtimeLimitMs,
      bufferBytes: chosen.bufferBytes,
      basis: chosen.basis,
    };
    this.steering = new PathSteering(
      input.path,
      this.parameters,
      o.maxBandwidthBytesPerSec === undefined,
      o.downtimeLimitMs === undefined,
    );
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
      // Cancelled while pending: nothing is started.
      if (this.input.signal?.aborted) throw new Aborted(abortReason(this.input.signal));
      await this.phase(ctx, 'preparing', () => this.prepare());
      await this.phase(ctx, 'transferring', () => this.transfer());
      const arrived = await this.phase(ctx, 'switching-over', () => this.switchOver());
      const outcome = await this.finish(ctx, arrived);
      root.end();
      return outcome;
    } catch (e) {
      const outcome = await this.rollBack(e, ctx);
      root.setStatus({ code: SpanStatusCode.ERROR, message: outcome.reason ?? outcome.phase });
      root.setAttribute('dwcp.migration.result', outcome.phase);
      root.end();
      return outcome;
    }
  }

  /**
   * Reports `phase`, then runs `body` in its span, cut short by an abort or a data path failure.
   * Only `preparing` waits for its commit: nothing starts until the cluster has recorded that the
   * migration runs. The later phases' records follow in order without holding the steps back (on
   * a path with a long RTT a Raft commit is one or two round trips).
   */
  private async phase<T>(ctx: Context, phase: MigrationPhase, body: () => Promise<T>): Promise<T> {
    const span = tracer.startSpan(
      `migration.${phase}`,
      { attributes: { 'dwcp.migration.id': this.input.id } },
      ctx,
    );
    try {
      if (phase === 'preparing') await this.report(phase);
      else this.recordLater(phase);
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
    const { destination, source, id } = this.input;
    this.offer = destination.prepare();
    const offer = await this.guard(this.offer);
    this.arrived = this.watch(destination.completion());
    this.socket = source.dataPath.socket(id);
    const socket = await this.guard(this.socket);
    this.source = source.dataPath.startSource({
      socketPath: socket.path,
      offer,
      streams: this.parameters.streams,
      zstdLevel: this.parameters.zstdLevel,
      bufferBytes: this.parameters.bufferBytes,
    });
    this.sourceFinished = this.watch(this.source.finished());
    // The probe runs while QEMU is told its knobs and the destination QEMU starts.
    this.probing = this.probe(this.source);
    // QEMU escalates itself once the guest outruns the stream (dirtied pages past half of what a
    // round sent), by throttling its vCPUs; the capability must be set before `migrate`.
    await source.driver.setMigrationCapabilities(source.vm, {
      autoConverge: this.input.options?.autoConverge ?? true,
    });
    const current = await source.driver.migrationParameters?.(source.vm);
    const uncapped =
      current?.availSwitchoverBandwidthBytesPerSec !== undefined
        ? this.steering.useSwitchoverBandwidth()
        : undefined;
    await source.driver.setMigrationParameters(source.vm, {
      maxBandwidthBytesPerSec: uncapped ?? this.parameters.maxBandwidthBytesPerSec,
      downtimeLimitMs: this.parameters.downtimeLimitMs,
    });
    if (await this.guard(this.probing)) await this.steer();
  }

  /**
   * PBA's first sample of this path, from the source's probe over its own (then warm) connections;
   * false when there is none. A probe that fails (the path went, a receiver too old for probes) is
   * logged: the transfer's own failure handling decides what the path can still do.
   */
  private async probe(source: SourceDataPathEnd): Promise<boolean> {
    const estimate = this.input.path?.estimate();
    const rtt = estimate?.minRttMs ?? estimate?.rttMs;
    // By default only a path PBA has not measured lately, and only a short one: a probe must reach
    // its plateau to say anything (BBR's startup exit takes some ten RTTs: 80 ms on `datacenter`,
    // 1.7 s on `internet`), and its bytes carry nothing. On a long path the stream's own first
    // samples measure it instead.
    const fresh = estimate?.measured !== undefined;
    const short = rtt !== undefined && rtt <= PROBE_MAX_RTT_MS;
    const maxMs =
      this.input.options?.probeMs ??
      (fresh || !short ? 0 : Math.round(Math.min(300, Math.max(50, 15 * (rtt ?? PROBE_MAX_RTT_MS)))));
    if (source.probe === undefined || maxMs <= 0) return false;
    try {
      const result = await source.probe(maxMs);
      this.steering.probed(result, Date.now());
      this.input.logger?.log(`migration ${this.input.id}: ${this.steering.probeNote}`);
      return true;
    } catch (e) {
      this.steering.probeFailed(describeError(e));
      this.input.logger?.warn(`migration ${this.input.id}: ${this.steering.probeNote}`);
      return false;
    }
  }

  private async transfer(): Promise<void> {
    const { source, options } = this.input;
    const socket = await this.guard(this.required(this.socket));
    const stops = source.driver.events(source.vm);
    this.eventStreams.push(stops);
    this.stopAt = firstEventAt(stops, 'stop');
    this.migrateIssued = true;
    this.sampleWireRate();
    await source.driver.migrate(source.vm, `unix:${socket.path}`);
    let reported = performance.now();
    let sampled = performance.now();
    await this.steer();
    const readings = followMigration(source.driver, source.vm, {
      intervalMs: options?.pollIntervalMs ?? 200,
    });
    try {
      for (;;) {
        const next = await this.guard(readings.next());
        if (next.done) throw new Error("QEMU's migration status stopped before it completed");
        const progress = next.value;
        this.progress = progress;
        this.steering.progressed(progress, this.source?.stats(), Date.now());
        this.checkCompletionTimeout(progress);
        if (progress.cpuThrottlePercent > this.throttle) {
          if (this.throttle === 0) {
            this.input.logger?.log(
              `migration ${this.input.id}: the guest outruns the path; auto-converge throttles it ${progress.cpuThrottlePercent} %`,
            );
          }
          this.throttle = progress.cpuThrottlePercent;
        }
        if (
          performance.now() - sampled >= (options?.sampleIntervalMs ?? 500) ||
          progress.status === 'completed'
        ) {
          await this.steer();
          sampled = performance.now();
        }
        if (progress.status === 'completed') return;
        if (progress.status === 'failed' || progress.status === 'cancelled') {
          throw new Error(
            `QEMU's migration ${progress.status}${progress.errorDesc ? `: ${progress.errorDesc}` : ''}`,
          );
        }
        if (performance.now() - reported >= (options?.progressIntervalMs ?? 1000)) {
          this.sampleWireRate();
          // At most one progress report in flight: the loop steers QEMU meanwhile.
          if (!this.progressInFlight) this.recordLater('transferring');
          reported = performance.now();
        }
      }
    } finally {
      void readings.return(undefined);
    }
  }

  /** Throws once the migration has run longer than its policy allows for this much RAM. */
  private checkCompletionTimeout(progress: MigrationProgress): void {
    if (progress.totalBytes <= 0) return;
    const perGiB = this.input.options?.completionTimeoutPerGiBSec ?? 150;
    const gib = progress.totalBytes / GiB;
    const limitMs = Math.max(1000, perGiB * gib * 1000);
    const ranMs = performance.now() - this.startedAt;
    if (ranMs <= limitMs) return;
    throw new CompletionTimeout(
      `did not complete within ${(limitMs / 1000).toFixed(1)} s (completionTimeoutPerGiB ${perGiB} s × ` +
        `${gib.toFixed(2)} GiB of RAM): the guest dirties memory faster than the path carries it` +
        `${this.throttle > 0 ? `, even throttled ${this.throttle} %` : ''}; the VM runs on at its source`,
    );
  }

  /** One PBA sample from the sender's counters, and QEMU's max-bandwidth re-aimed at the prediction. */
  private async steer(): Promise<void> {
    const counters = this.source?.stats();
    if (counters === undefined) return;
    this.steering.sample(counters, Date.now());
    const bufferBytes = this.steering.rebuffer();
    if (bufferBytes !== undefined && this.source?.setBufferBytes) {
      this.source.setBufferBytes(bufferBytes);
      this.input.logger?.log(`migration ${this.input.id}: send buffer → ${bufferBytes} B (PBA)`);
    }
    const maxBandwidthBytesPerSec = this.steering.retarget(counters);
    const availSwitchoverBandwidthBytesPerSec = this.steering.reswitchover();
    const downtimeLimitMs = this.steering.redowntime();
    const changes = {
      ...(maxBandwidthBytesPerSec === undefined ? {} : { maxBandwidthBytesPerSec }),
      ...(availSwitchoverBandwidthBytesPerSec === undefined ? {} : { availSwitchoverBandwidthBytesPerSec }),
      ...(downtimeLimitMs === undefined ? {} : { downtimeLimitMs }),
    };
    if (Object.keys(changes).length === 0) return;
    const { source, id, logger } = this.input;
    await this.guard(source.driver.setMigrationParameters(source.vm, changes));
    logger?.log(
      `migration ${id}: QEMU ${maxBandwidthBytesPerSec === undefined ? '' : `max-bandwidth → ${maxBandwidthBytesPerSec} B/s `}` +
        `${availSwitchoverBandwidthBytesPerSec === undefined ? '' : `avail-switchover-bandwidth → ${availSwitchoverBandwidthBytesPerSec} B/s `}` +
        `${downtimeLimitMs === undefined ? '' : `downtime-limit → ${downtimeLimitMs} ms `}(PBA)`,
    );
  }

  private async switchOver(): Promise<IncomingResult> {
    const drained = this.required(this.sourceFinished).then(() => Date.now());
    const [drainedAt, arrived] = await this.guard(Promise.all([drained, this.required(this.arrived)]));
    this.switchedOverAt = { drainedAt, arrivedAt: Date.now() };
    return arrived;
  }

  /**
   * Destroys the source and records `done`. `arrived` is absent when the run rolls forward: it was
   * failing, but the destination refused to abort because it runs the guest (`note` says so).
   */
  private async finish(ctx: Context, arrived?: IncomingResult, note?: string): Promise<MigrationOutcome> {
    const { source, id, metrics, logger } = this.input;
    const span = tracer.startSpan('migration.done', { attributes: { 'dwcp.migration.id': id } }, ctx);
    // The destination runs with everything; only now may the source go.
    try {
      await source.driver.destroy(source.vm);
    } catch (e) {
      logger?.warn(`migration ${id}: done, but destroying the source VM failed: ${describeError(e)}`);
      span.setAttribute('dwcp.migration.source_destroy_error', describeError(e));
    }
    const downtimeMs = await this.pauseMs(arrived);
    const stats: MigrationRunStats = { ...this.stats(), remainingBytes: 0, etaMs: 0 };
    if (downtimeMs !== undefined) stats.downtimeMs = downtimeMs;
    this.closeEventStreams();
    await this.releaseSocket();
    try {
      await this.report('done', stats, note);
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
    logger?.log(
      `migration ${id}: done ${JSON.stringify(stats)}; ${note ?? (await this.switchoverTimes(arrived))}`,
    );
    span.setAttributes(this.spanStats(stats));
    span.end();
    const outcome: MigrationOutcome = {
      phase: 'done',
      stats,
      parameters: this.parametersNow(),
      phases: [...this.phases],
    };
    if (note !== undefined) outcome.reason = note;
    return outcome;
  }

  private async rollBack(cause: unknown, ctx: Context): Promise<MigrationOutcome> {
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
    // The destination goes before the source resumes, so the VM never runs in two places; one
    // that already runs the guest stays, and the run finishes forward instead.
    let answer: TargetAnswer = 'aborted';
    if (this.offer) {
      try {
        answer = await destination.abort(reason);
      } catch (e) {
        logger?.warn(`migration ${id}: rollback: aborting the destination: ${describeError(e)}`);
        answer = { unreachable: describeError(e) };
      }
    }
    if (answer === 'destination-runs') {
      return this.finish(
        ctx,
        undefined,
        `rolled forward: ${reason}, but the destination already ran the guest`,
      );
    }
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
    const decision = decideSwitchover(await this.sourceCopy(), answer);
    if (decision.action === 'hold') {
      logger?.warn(`migration ${id}: ${decision.reason}`);
      // Not the destination's completion: a target that cannot be reached may never answer it.
      await Promise.allSettled([this.sourceFinished, this.probing]);
      this.closeEventStreams();
      await this.releaseSocket();
      return {
        phase: 'held',
        reason: `${reason}; ${decision.reason}`,
        stats,
        parameters: this.parametersNow(),
        phases: [...this.phases],
      };
    }
    if (decision.action === 'roll-back' && decision.resume)
      await step('resuming the source VM', () => source.driver.cont(source.vm));
    // A probe the failure cut short ends with its source end (cancelled above): the record says what it found.
    await Promise.allSettled([this.sourceFinished, this.arrived, this.probing]);
    this.closeEventStreams();
    await this.releaseSocket();
    await step(`reporting ${result}`, () => this.report(result, stats, reason));
    metrics?.migrations.inc({ result });
    if (stats.bytesOnWire) metrics?.wireBytes.inc(stats.bytesOnWire);
    return { phase: result, reason, stats, parameters: this.parametersNow(), phases: [...this.phases] };
  }

  private async sourceCopy(): Promise<SourceCopy> {
    const { source } = this.input;
    const status = await source.driver.status(source.vm).catch(() => undefined);
    if (status === undefined || status.state === 'exited') return 'gone';
    return status.running ? 'running' : 'paused';
  }

  /** The parameters in force now: the chosen ones, max-bandwidth as PBA last set it. */
  private parametersNow(): MigrationParameterChoice {
    return {
      ...this.parameters,
      maxBandwidthBytesPerSec: this.steering.maxBandwidthBytesPerSec,
      bufferBytes: this.steering.sendBufferBytes,
      downtimeLimitMs: this.steering.downtimeLimitMs,
    };
  }

  /**
   * Records `phase` after every report before it, in order, and resolves once it committed. The
   * final phase is awaited; the ones before are not (`recordLater`), and one of those that fails
   * is logged: the outcome's record, committed last, is what counts.
   */
  private report(phase: MigrationPhase, stats = this.stats(), reason?: string): Promise<void> {
    if (this.phases.at(-1) !== phase) this.phases.push(phase);
    const path = this.steering.report();
    const committed = this.reports.then(() => this.input.onPhase(phase, stats, reason, path));
    this.reports = committed.catch((e: unknown) => {
      this.input.logger?.warn(`migration ${this.input.id}: recording ${phase} failed: ${describeError(e)}`);
    });
    return committed;
  }

  private recordLater(phase: MigrationPhase): void {
    this.progressInFlight = true;
    void this.report(phase)
      .catch(() => {})
      .finally(() => {
        this.progressInFlight = false;
      });
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
    if (this.throttle > 0) stats.cpuThrottlePercent = this.throttle;
    if (this.wireBytesPerSec !== undefined) stats.wireBytesPerSec = this.wireBytesPerSec;
    const p = this.progress;
    if (p) {
      if (p.totalBytes > 0) stats.ramBytes = p.totalBytes;
      stats.remainingBytes = p.remainingBytes;
      stats.dirtyRateBytesPerSec = p.dirtyRateBytesPerSec;
      const counters = this.source?.stats();
      const predicted = counters ? this.steering.etaMs(counters, p.remainingBytes) : undefined;
      if (predicted !== undefined) stats.etaMs = predicted;
      else if (p.throughputBitsPerSec > 0)
        stats.etaMs = Math.round((p.remainingBytes * 8000) / p.throughputBitsPerSec);
      if (p.downtimeMs !== undefined) stats.downtimeMs = p.downtimeMs;
    }
    return stats;
  }

  private sampleWireRate(): void {
    const wireBytes = this.source?.stats().wireBytes;
    if (wireBytes === undefined) return;
    const atMs = performance.now();
    const last = this.lastSample;
    if (last && atMs > last.atMs) {
      this.wireBytesPerSec = Math.round(((wireBytes - last.wireBytes) * 1000) / (atMs - last.atMs));
    }
    this.lastSample = { atMs, wireBytes };
  }

  private spanStats(stats = this.stats()): Record<string, number> {
    const attributes: Record<string, number> = {};
    for (const [k, v] of Object.entries(stats))
      if (typeof v === 'number') attributes[`dwcp.migration.${k}`] = v;
    return attributes;
  }

  /**
   * The guest's real pause: source STOP → destination RESUME, both on QMP's wall clock (between
   * hosts, as good as their clock sync); QEMU's own figure if an event is missing.
   */
  /** Where the switch-over's time went, for the log: each step's end after the source's STOP. */
  private async switchoverTimes(arrived: IncomingResult | undefined): Promise<string> {
    const stop = await Promise.race([this.stopAt, Promise.resolve(undefined)]);
    const at = this.switchedOverAt;
    if (stop === undefined || at === undefined || arrived === undefined) return 'switch-over times unknown';
    const after = (t: number | undefined) => (t === undefined ? '?' : `${t - stop} ms`);
    return (
      `after the source's STOP: stream acknowledged ${after(at.drainedAt)}, destination resumed ` +
      `${after(arrived.resumedAtEpochMs)}, its completion here ${after(at.arrivedAt)}, done ${after(Date.now())}`
    );
  }

  private async pauseMs(arrived: IncomingResult | undefined): Promise<number | undefined> {
    const stop = await Promise.race([this.stopAt, sleep(2000).then(() => undefined)]);
    const resume = arrived?.resumedAtEpochMs;
    if (stop !== undefined && resume !== undefined && resume >= stop) return resume - stop;
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

  private async releaseSocket(): Promise<void> {
    const socket = await this.socket?.catch(() => undefined);
    await socket?.release().catch(() => {});
  }
}

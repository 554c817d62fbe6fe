/**
 * The destination's half of one live migration, run by the node that receives the VM: a sink that
 * takes the source's stream, verifies every chunk and feeds a destination QEMU started with
 * `-incoming`. It cleans up after itself: whatever fails or aborts, the sink is cancelled and the
 * destination QEMU destroyed, so a lost source leaves nothing behind.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { VmEvent, VmHandle, VmSpec } from '@novacron/hypervisor';
import type {
  AbortAnswer,
  DataPathSink,
  IncomingHypervisor,
  IncomingOffer,
  IncomingResult,
  MigrationDestination,
  MigrationLogger,
  MigrationSocket,
  SinkDataPath,
} from './ports';
import { firstEventAt } from './vm-events';

export interface IncomingMigrationInput {
  id: string;
  spec: VmSpec;
  driver: IncomingHypervisor;
  dataPath: SinkDataPath;
  logger?: MigrationLogger;
  /** How long the destination may take to run once its stream ended (default 10 s). */
  startTimeoutMs?: number;
}

export class IncomingMigration implements MigrationDestination {
  private socket: Promise<MigrationSocket> | undefined;
  private sink: Promise<DataPathSink> | undefined;
  private destination: Promise<VmHandle> | undefined;
  /** The destination QEMU once it listens. */
  private listening: VmHandle | undefined;
  private resumedAt: Promise<number | undefined> | undefined;
  private events: AsyncIterator<VmEvent> | undefined;
  private completing: Promise<IncomingResult> | undefined;
  private aborting: Promise<void> | undefined;
  private abortReason: string | undefined;
  /** The destination VM, once it runs with the whole stream: the node takes it over. */
  vm: VmHandle | undefined;

  constructor(private readonly input: IncomingMigrationInput) {}

  get id(): string {
    return this.input.id;
  }

  /**
   * Opens the sink, starts the destination QEMU on its socket, and answers with where to send once
   * QEMU listens. (Answering as soon as the sink listened, with QEMU starting meanwhile, failed
   * when the first VM of a freshly started node took seconds to launch, its accelerator being
   * probed first: the source's stream then stalled against a sink with nowhere to write.)
   */
  async prepare(): Promise<IncomingOffer> {
    const { id, spec, driver, dataPath } = this.input;
    this.socket = dataPath.socket(id);
    const socket = await this.socket;
    this.checkNotAborted();
    this.sink = dataPath.openSink(socket.path);
    const sink = await this.sink;
    this.checkNotAborted();
    this.destination = driver.prepareIncoming(spec, `unix:${socket.path}`);
    const vm = await this.destination;
    this.listening = vm;
    this.checkNotAborted();
    this.events = driver.events(vm);
    this.resumedAt = firstEventAt(this.events, 'resume');
    this.input.logger?.log(`incoming migration ${id}: sink on port ${sink.port}, destination QEMU waiting`);
    return dataPath.offer(sink.port);
  }

  completion(): Promise<IncomingResult> {
    this.completing ??= this.complete();
    return this.completing;
  }

  /**
   * Refuses (`destination-runs`) once the destination QEMU runs: it has the whole stream and the
   * guest may have run on it since, so destroying it could leave no copy, or the source's stale
   * one. QEMU resumes by itself at the end of its stream, so a resume between this status check
   * and the destroy is possible: that copy is destroyed (the wait for its exit comes before the
   * source resumes), and the guest loses the moment it ran there, never running twice.
   */
  async abort(reason: string): Promise<AbortAnswer> {
    if (this.aborting === undefined && (await this.destinationRuns())) {
      this.input.logger?.warn(
        `incoming migration ${this.input.id}: abort (${reason}) refused: the destination runs the guest`,
      );
      return 'destination-runs';
    }
    this.abortReason ??= reason;
    this.aborting ??= this.cleanUp(reason);
    await this.aborting;
    return 'aborted';
  }

  private async destinationRuns(): Promise<boolean> {
    if (this.vm !== undefined) return true;
    const vm = this.listening;
    if (vm === undefined) return false;
    const status = await this.input.driver.status(vm).catch(() => undefined);
    return status?.running === true;
  }

  private async complete(): Promise<IncomingResult> {
    try {
      const sink = await this.required(this.sink);
      const [{ stats }, vm] = await Promise.all([sink.finished(), this.required(this.destination)]);
      const streamEndedAt = Date.now();
      const deadline = performance.now() + (this.input.startTimeoutMs ?? 10_000);
      for (;;) {
        this.checkNotAborted();
        const status = await this.input.driver.status(vm);
        if (status.running) break;
        if (status.state === 'exited') {
          const said = this.input.driver.stderrTail?.(vm);
          throw new Error(`the destination QEMU exited after its stream ended${said ? `: ${said}` : ''}`);
        }
        if (performance.now() > deadline) {
          throw new Error(`the destination did not run within the timeout (state ${status.state})`);
        }
        await sleep(50);
      }
      const runningAt = Date.now();
      const resumedAtEpochMs = await Promise.race([this.resumedAt, sleep(2000).then(() => undefined)]);
      this.checkNotAborted();
      this.vm = vm;
      void this.events?.return?.();
      await this.releaseSocket();
      const since = (t: number) => (resumedAtEpochMs === undefined ? '?' : `${t - resumedAtEpochMs} ms`);
      this.input.logger?.log(
        `incoming migration ${this.input.id}: after the destination's RESUME: stream ended ${since(streamEndedAt)}, ` +
          `QEMU seen running ${since(runningAt)}, completing ${since(Date.now())}`,
      );
      return resumedAtEpochMs === undefined ? { sink: stats } : { sink: stats, resumedAtEpochMs };
    } catch (e) {
      // A destination that cannot finish never lingers: the source rolls back on its own.
      await this.abort(e instanceof Error ? e.message : String(e));
      throw e;
    }
  }

  private async cleanUp(reason: string): Promise<void> {
    const { logger, driver, id } = this.input;
    logger?.warn(`incoming migration ${id}: aborting: ${reason}`);
    const sink = await this.sink?.catch(() => undefined);
    sink?.cancel();
    await sink?.finished().catch(() => undefined);
    const vm = await this.destination?.catch(() => undefined);
    if (vm) {
      await driver.destroy(vm).catch((e: unknown) => {
        logger?.warn(`incoming migration ${id}: destroying the destination: ${(e as Error).message}`);
      });
    }
    void this.events?.return?.();
    await this.releaseSocket();
  }

  private checkNotAborted(): void {
    if (this.abortReason !== undefined && this.vm === undefined) {
      throw Object.assign(new Error(`the incoming migration was aborted: ${this.abortReason}`), {
        code: 'ERR_MIGRATION_ABORTED',
      });
    }
  }

  private required<T>(p: Promise<T> | undefined): Promise<T> {
    if (p === undefined) throw new Error('the incoming migration was not prepared');
    return p;
  }

  private async releaseSocket(): Promise<void> {
    const socket = await this.socket?.catch(() => undefined);
    await socket?.release().catch(() => {});
  }
}

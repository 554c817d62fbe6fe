/**
 * Settles a migration whose run on the source ended without an outcome: the source node restarted
 * mid-migration, or the run could not tell whether the destination took over. The source asks the
 * target to abort until it answers, and keeps the guest where it runs (decideSwitchover).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AbortAnswer, MigrationLogger } from './ports';
import {
  decideSwitchover,
  holdRetryDelayMs,
  type SourceCopy,
  type SwitchoverDecision,
  type TargetAnswer,
} from './switchover-decision';

/** What settling a cut-short migration does to the outside world; MigrationAgent gives the real ones. */
export interface CutShortMigrationPorts {
  /** The source's copy of the guest now. */
  sourceCopy(): Promise<SourceCopy>;
  /** Tells the target to abort its half; rejects when the target cannot be asked. */
  abortTarget(reason: string): Promise<AbortAnswer>;
  resumeSource(): Promise<void>;
  destroySource(): Promise<void>;
  /**
   * Records the outcome (`done`, `failed`), or `held`: the source keeps the VM paused until the
   * target answers (the record moves to `switching-over` with the reason, where no cancel reaches it).
   */
  record(outcome: 'done' | 'failed' | 'held', reason: string): Promise<void>;
  logger: MigrationLogger;
}

export interface SettleOptions {
  /** Ends the retries (the node shuts down); the VM stays as it is, for the node's next run. */
  signal?: AbortSignal;
  /** The wait before asking again; default `holdRetryDelayMs`. */
  retryDelayMs?: (attempt: number) => number;
}

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * Asks the target, acts on the decision, and returns it. While the target cannot be asked, the
 * source stays paused (recorded once as held) and it asks again after a growing delay. Rejects
 * when recording the outcome fails (the caller tries again from the start) or on `signal`.
 */
export async function settleCutShort(
  id: string,
  reason: string,
  ports: CutShortMigrationPorts,
  options: SettleOptions = {},
): Promise<SwitchoverDecision> {
  const delay = options.retryDelayMs ?? holdRetryDelayMs;
  let held = false;
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    const source = await ports.sourceCopy();
    let answer: TargetAnswer;
    try {
      answer = await ports.abortTarget(reason);
    } catch (e) {
      answer = { unreachable: describe(e) };
    }
    const decision = decideSwitchover(source, answer);
    switch (decision.action) {
      case 'roll-forward':
        ports.logger.warn(`migration ${id}: the destination runs the guest; finishing the migration forward`);
        // The source's copy goes before the record says the VM runs on the target, as in a run's `done`.
        await ports.destroySource();
        await ports.record('done', `rolled forward: ${reason}; the destination already ran the guest`);
        return decision;
      case 'roll-back':
        ports.logger.warn(
          `migration ${id}: rolled back (${reason}); the target has no copy of the guest` +
            `${decision.resume ? ', resuming the paused source' : ''}`,
        );
        // Resumed before the record: a restart in between finds the record under way and settles it again.
        if (decision.resume) await ports.resumeSource();
        await ports.record('failed', reason);
        return decision;
      case 'hold':
        ports.logger.warn(`migration ${id}: ${decision.reason}; asking again (attempt ${attempt + 1})`);
        if (!held) {
          held = await ports.record('held', `${reason}; ${decision.reason}`).then(
            () => true,
            (e: unknown) => {
              ports.logger.warn(`migration ${id}: recording that the VM is held: ${describe(e)}`);
              return false;
            },
          );
        }
        await sleep(delay(attempt), undefined, { signal: options.signal });
    }
  }
}

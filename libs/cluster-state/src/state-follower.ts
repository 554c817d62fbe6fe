/**
 * Runs a pass of some follower of the replicated state (a VM host, a migration agent) after every
 * batch of entries this node applies, and whenever the caller kicks it for another reason (a VM's
 * process exited, a deadline passed), never on a polling timer. Passes do not overlap; changes
 * that arrive during one are covered by exactly one more pass after it.
 */
import type { ClusterStore } from './store';

export class StateFollower {
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly store: Pick<ClusterStore, 'onApplied'>,
    private readonly pass: () => Promise<void>,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Subscribes to applied entries and runs a first pass. */
  start(): void {
    this.unsubscribe ??= this.store.onApplied(() => this.kick());
    this.kick();
  }

  /** Asks for a pass: now, or right after the one under way. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch(this.onError)
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** Stops following and waits for the pass under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    await this.running;
  }
}

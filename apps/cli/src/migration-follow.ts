/**
 * Follows one migration until it ends: polls GET /v1/migrations/:id and draws each change (in place
 * on a terminal, a line per change otherwise, JSON lines with --json). The first Ctrl-C asks the
 * cluster to cancel and keeps following; a second one stops following.
 */
import { isTerminal, type MigrationRecord } from '@novacron/cluster-state';
import type { ApiClient } from './api-client';
import type { CliIo } from './cli-io';
import { CliError, EXIT, errorLines } from './exit-codes';
import { type ProgressMemory, progressFrame } from './migration-progress';

/** How long the API may stay unreachable while following before the CLI gives up (a leader election takes seconds). */
const UNAVAILABLE_GRACE_MS = 30_000;

/** Where the progress goes: redrawn on a terminal, one line per change elsewhere. */
class ProgressDisplay {
  private memory: ProgressMemory = {};
  private last: string | undefined;
  private drawnWidth = 0;

  constructor(
    private readonly io: CliIo,
    private readonly json: boolean,
  ) {}

  show(record: MigrationRecord): void {
    if (this.json) {
      const text = JSON.stringify(record);
      if (text !== this.last) this.io.out(`${text}\n`);
      this.last = text;
      return;
    }
    const frame = progressFrame(record, this.memory);
    this.memory = frame.memory;
    if (frame.line === this.last) return;
    this.last = frame.line;
    if (!this.io.isTTY) {
      this.io.out(`${frame.line}\n`);
      return;
    }
    const line = this.io.columns ? frame.line.slice(0, this.io.columns - 1) : frame.line;
    this.io.out(`\r${line.padEnd(this.drawnWidth)}`);
    this.drawnWidth = line.length;
  }

  /** A message on stderr that must not be drawn over. */
  note(lines: string[]): void {
    this.endLine();
    this.io.err(lines.map((l) => `${l}\n`).join(''));
  }

  endLine(): void {
    if (this.drawnWidth > 0) this.io.out('\n');
    this.drawnWidth = 0;
    this.last = undefined;
  }
}

export interface FollowOptions {
  /** JSON lines instead of the progress display. */
  json: boolean;
}

/** Kept in the cancelled record, so `dwcp migrate get` says who cancelled it. */
const INTERRUPT_REASON = 'cancelled by the operator (Ctrl-C in dwcp migrate)';

/** Resolves with the migration's terminal record. */
export async function followMigration(
  client: ApiClient,
  first: MigrationRecord,
  io: CliIo,
  options: FollowOptions,
): Promise<MigrationRecord> {
  const id = first.id;
  const display = new ProgressDisplay(io, options.json);
  let record = first;
  let interrupts = 0;
  let stopFollowing: () => void = () => {};
  const stopped = new Promise<'stopped'>((resolve) => {
    stopFollowing = () => resolve('stopped');
  });
  let cancelling: Promise<void> = Promise.resolve();

  const onInterrupt = () => {
    interrupts += 1;
    if (interrupts > 1) {
      stopFollowing();
      return;
    }
    display.note([`dwcp: cancelling migration ${id} (Ctrl-C again to stop following)`]);
    const body = { reason: INTERRUPT_REASON };
    cancelling = client.post<MigrationRecord>(`/v1/migrations/${encodeURIComponent(id)}/cancel`, body).then(
      (cancelled) => {
        if (cancelled.revision >= record.revision) record = cancelled;
      },
      (e: unknown) => display.note([...errorLines(e), `dwcp: following migration ${id} until it ends`]),
    );
  };
  const removeHandler = io.onInterrupt(onInterrupt);
  // Linearizable first, so a node that forwarded the create sees it; local reads after that keep polling cheap.
  let consistency = 'linearizable';
  let unavailableSince: number | undefined;
  try {
    display.show(record);
    while (!isTerminal(record.phase)) {
      if ((await Promise.race([io.sleep(io.pollIntervalMs), stopped])) === 'stopped') break;
      const polled = await Promise.race([
        client
          .get<MigrationRecord>(`/v1/migrations/${encodeURIComponent(id)}?consistency=${consistency}`)
          .then(
            (r) => ({ record: r }),
            (e: unknown) => ({ error: e }),
          ),
        stopped,
      ]);
      if (polled === 'stopped') break;
      if ('error' in polled) {
        const e = polled.error;
        if (!(e instanceof CliError) || e.exitCode !== EXIT.unavailable) throw e;
        const now = Date.now();
        if (unavailableSince === undefined) {
          unavailableSince = now;
          display.note([...errorLines(e), 'dwcp: retrying']);
        } else if (now - unavailableSince > UNAVAILABLE_GRACE_MS) throw e;
        continue;
      }
      unavailableSince = undefined;
      consistency = 'local';
      if (polled.record.revision >= record.revision) record = polled.record;
      display.show(record);
    }
    if (interrupts > 1) {
      throw new CliError(
        'ERR_INTERRUPTED',
        `stopped following migration ${id}; it goes on in the cluster (dwcp migrate get ${id})`,
        EXIT.interrupted,
      );
    }
    await cancelling;
    return record;
  } finally {
    removeHandler();
    display.endLine();
  }
}

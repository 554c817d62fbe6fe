/** Which migration phase may follow which. `cancelled` is reached only through `migration.cancel`. */
import type { MigrationPhase } from './records';

const NEXT: Record<MigrationPhase, readonly MigrationPhase[]> = {
  pending: ['preparing', 'failed'],
  preparing: ['transferring', 'failed'],
  transferring: ['switching-over', 'failed'],
  'switching-over': ['done', 'failed'],
  done: [],
  failed: [],
  cancelled: [],
};

export type TerminalPhase = 'done' | 'failed' | 'cancelled';

export const TERMINAL_PHASES: readonly TerminalPhase[] = ['done', 'failed', 'cancelled'];

/** Phases a cancel may still interrupt: once QEMU switches over, only the outcome can be recorded. */
export const CANCELLABLE_PHASES: readonly MigrationPhase[] = ['pending', 'preparing', 'transferring'];

export function isTerminal(phase: MigrationPhase): phase is TerminalPhase {
  return (TERMINAL_PHASES as readonly MigrationPhase[]).includes(phase);
}

/**
 * A phase update is legal when it moves one step forward or to `failed`, or when it repeats a
 * non-terminal phase (a progress update that only carries stats).
 */
export function canAdvance(from: MigrationPhase, to: MigrationPhase): boolean {
  if (from === to) return !isTerminal(from);
  return NEXT[from].includes(to);
}

/**
 * The phases a migration in `from` still goes through, in order, to reach `to` on its forward
 * path (`pending` … `switching-over`, `done`); empty when it is there already or cannot get there.
 */
export function forwardPath(from: MigrationPhase, to: MigrationPhase): MigrationPhase[] {
  const path: MigrationPhase[] = [];
  for (let p = from; p !== to; ) {
    const next = NEXT[p][0];
    if (next === undefined || next === 'failed') return [];
    path.push(next);
    p = next;
  }
  return path;
}

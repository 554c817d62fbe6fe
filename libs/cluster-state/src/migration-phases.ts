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

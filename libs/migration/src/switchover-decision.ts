/**
 * Who keeps the guest when a migration's run ended without knowing whether the destination took
 * over: the source decides from its own QEMU's state and the target's answer to Abort, so that
 * exactly one copy of the guest runs (docs/hypervisor.md, "A migration cut short").
 */

/** The source's copy of the guest: running, paused (QEMU finished its side, `postmigrate`), or no process. */
export type SourceCopy = 'running' | 'paused' | 'gone';

/**
 * What the target said to Abort: its copy is destroyed (or it never had one), its copy runs the
 * guest (it refused to destroy it), or it could not be asked.
 */
export type TargetAnswer = 'aborted' | 'destination-runs' | { unreachable: string };

export type SwitchoverDecision =
  /** Record `done`, destroy the source's copy: the destination runs the guest. */
  | { action: 'roll-forward' }
  /** Record `failed`; `resume` the source's paused copy (the destination's is gone). */
  | { action: 'roll-back'; resume: boolean }
  /** Leave the source paused, record why, and ask the target again later. */
  | { action: 'hold'; reason: string };

export function decideSwitchover(source: SourceCopy, target: TargetAnswer): SwitchoverDecision {
  if (target === 'destination-runs') return { action: 'roll-forward' };
  if (target === 'aborted') return { action: 'roll-back', resume: source === 'paused' };
  // A source QEMU that runs never finished its stream, so no destination can run the guest: the
  // target drops its half once it reads the failed record, or at its own take-over.
  if (source === 'running') return { action: 'roll-back', resume: false };
  return {
    action: 'hold',
    reason:
      `the source holds the VM ${source === 'paused' ? 'paused' : '(its QEMU is gone)'} until the ` +
      `target says whether its copy runs the guest: ${target.unreachable}`,
  };
}

/** How long to wait before asking an unreachable target again: 1 s, doubling, at most 30 s. */
export function holdRetryDelayMs(attempt: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
}

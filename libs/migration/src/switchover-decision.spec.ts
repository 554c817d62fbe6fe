import { describe, expect, it } from 'vitest';
import { decideSwitchover, holdRetryDelayMs } from './switchover-decision';

describe('decideSwitchover', () => {
  const unreachable = { unreachable: 'aborting the destination on node-b: UNAVAILABLE' };

  it('rolls forward whenever the destination runs the guest', () => {
    for (const source of ['running', 'paused', 'gone'] as const)
      expect(decideSwitchover(source, 'destination-runs')).toEqual({ action: 'roll-forward' });
  });

  it('rolls back once the destination is gone, resuming only a paused source', () => {
    expect(decideSwitchover('paused', 'aborted')).toEqual({ action: 'roll-back', resume: true });
    expect(decideSwitchover('running', 'aborted')).toEqual({ action: 'roll-back', resume: false });
    expect(decideSwitchover('gone', 'aborted')).toEqual({ action: 'roll-back', resume: false });
  });

  it('never resumes blindly: an unreachable target holds a paused source, or one whose QEMU is gone', () => {
    const paused = decideSwitchover('paused', unreachable);
    expect(paused).toMatchObject({ action: 'hold' });
    expect(paused.action === 'hold' && paused.reason).toMatch(/paused until the target says.*UNAVAILABLE/);
    expect(decideSwitchover('gone', unreachable)).toMatchObject({ action: 'hold' });
  });

  it('rolls back a source that still runs, target or not: its stream never ended', () => {
    expect(decideSwitchover('running', unreachable)).toEqual({ action: 'roll-back', resume: false });
  });

  it('asks an unreachable target again after 1 s, doubling up to 30 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 40].map(holdRetryDelayMs)).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import { canAdvance, forwardPath } from './migration-phases';

describe('forwardPath', () => {
  it('lists the steps to a later phase, each one a legal advance', () => {
    const path = forwardPath('preparing', 'done');
    expect(path).toEqual(['transferring', 'switching-over', 'done']);
    let from = 'preparing' as const as Parameters<typeof canAdvance>[0];
    for (const to of path) {
      expect(canAdvance(from, to)).toBe(true);
      from = to;
    }
  });

  it('is empty where the migration already is, and from a phase that cannot get there', () => {
    expect(forwardPath('switching-over', 'switching-over')).toEqual([]);
    expect(forwardPath('done', 'switching-over')).toEqual([]);
    expect(forwardPath('failed', 'done')).toEqual([]);
  });
});

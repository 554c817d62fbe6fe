import { DomainError } from '@novacron/cluster-state';
import { describe, expect, it } from 'vitest';
import { checkRemoval, isMember, successorOf } from './membership-policy';

const view = (voters: number[], down: number[] = [], learners: number[] = []) => ({
  voters,
  learners,
  isReachable: (id: number) => !down.includes(id),
});

function refusal(f: () => void): DomainError {
  try {
    f();
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

describe('checkRemoval', () => {
  it('refuses to remove the last voter', () => {
    const e = refusal(() => checkRemoval(view([1]), 1));
    expect(e.code).toBe('ERR_CONFLICT');
    expect(e.message).toMatch(/last voter/);
  });

  it('allows removing one of three healthy voters, and then one of two', () => {
    expect(() => checkRemoval(view([1, 2, 3]), 3)).not.toThrow();
    expect(() => checkRemoval(view([1, 2]), 2)).not.toThrow();
  });

  it('allows removing a dead voter but not a live one while another is dead', () => {
    expect(() => checkRemoval(view([1, 2, 3], [3]), 3)).not.toThrow();
    const e = refusal(() => checkRemoval(view([1, 2, 3], [3]), 2));
    expect(e.message).toMatch(/2 voters of which 1 are reachable \(not reachable: 3\); a quorum needs 2/);
  });

  it('lets learners and non-members go without a quorum check', () => {
    expect(() => checkRemoval(view([1], [], [4]), 4)).not.toThrow();
    expect(() => checkRemoval(view([1]), 9)).not.toThrow();
  });
});

describe('successorOf and isMember', () => {
  it('picks the lowest reachable other voter', () => {
    expect(successorOf(view([3, 1, 2], [1]), 3)).toBe(2);
    expect(successorOf(view([1], []), 1)).toBeUndefined();
  });
  it('knows voters and learners', () => {
    expect(isMember(view([1], [], [2]), 2)).toBe(true);
    expect(isMember(view([1]), 2)).toBe(false);
  });
});

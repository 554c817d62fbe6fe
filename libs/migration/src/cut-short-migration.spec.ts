/** settleCutShort against fake ports: the order of its side effects and its retries, without QEMU. */
import { describe, expect, it } from 'vitest';
import { type CutShortMigrationPorts, settleCutShort } from './cut-short-migration';
import type { AbortAnswer } from './ports';
import type { SourceCopy } from './switchover-decision';

type Answer = AbortAnswer | Error;

/** A source copy and a target that answers each Abort with the next of `answers` (the last repeats). */
function ports(source: SourceCopy, answers: Answer[]) {
  const calls: string[] = [];
  let copy = source;
  const p: CutShortMigrationPorts = {
    sourceCopy: async () => copy,
    abortTarget: async (reason) => {
      const a = answers.length > 1 ? answers.shift() : answers[0];
      calls.push(`abort ${reason}`);
      if (a instanceof Error) throw a;
      return a as AbortAnswer;
    },
    resumeSource: async () => {
      calls.push('resume');
      copy = 'running';
    },
    destroySource: async () => {
      calls.push('destroy source');
      copy = 'gone';
    },
    record: async (outcome, reason) => {
      calls.push(`record ${outcome}: ${reason}`);
    },
    logger: { log: () => {}, warn: () => {} },
  };
  return { p, calls };
}

const noWait = { retryDelayMs: () => 0 };
const down = new Error('aborting the destination on node-b: UNAVAILABLE');

describe('settleCutShort', () => {
  it('rolls forward when the destination runs: the source goes, then the record says done', async () => {
    const { p, calls } = ports('paused', ['destination-runs']);
    expect(await settleCutShort('mig-1', 'lost', p, noWait)).toEqual({ action: 'roll-forward' });
    expect(calls).toEqual([
      'abort lost',
      'destroy source',
      'record done: rolled forward: lost; the destination already ran the guest',
    ]);
  });

  it('rolls back when the target destroyed its copy: resume before the failed record', async () => {
    const { p, calls } = ports('paused', ['aborted']);
    await settleCutShort('mig-1', 'lost', p, noWait);
    expect(calls).toEqual(['abort lost', 'resume', 'record failed: lost']);
  });

  it('holds a paused source while the target is down, recorded once, and asks until it answers', async () => {
    const { p, calls } = ports('paused', [down, down, down, 'destination-runs']);
    const delays: number[] = [];
    const decision = await settleCutShort('mig-1', 'lost', p, {
      retryDelayMs: (attempt) => {
        delays.push(attempt);
        return 0;
      },
    });
    expect(decision).toEqual({ action: 'roll-forward' });
    expect(delays).toEqual([0, 1, 2]);
    expect(calls.filter((c) => c.startsWith('record held'))).toHaveLength(1);
    expect(calls.find((c) => c.startsWith('record held'))).toMatch(
      /lost; the source holds the VM paused.*UNAVAILABLE/,
    );
    expect(calls).not.toContain('resume');
    expect(calls.slice(-2)).toEqual([
      'destroy source',
      'record done: rolled forward: lost; the destination already ran the guest',
    ]);
  });

  it('a target down and then rolled back resumes the source only after it answered', async () => {
    const { p, calls } = ports('paused', [down, 'aborted']);
    await settleCutShort('mig-1', 'lost', p, noWait);
    expect(calls.map((c) => c.split(':')[0])).toEqual([
      'abort lost',
      'record held',
      'abort lost',
      'resume',
      'record failed',
    ]);
  });

  it('keeps asking when recording the hold fails (no quorum), and records the outcome', async () => {
    const { p, calls } = ports('paused', [down, 'aborted']);
    const record = p.record;
    p.record = async (outcome, reason) => {
      if (outcome === 'held') throw new Error('no leader');
      return record(outcome, reason);
    };
    await settleCutShort('mig-1', 'lost', p, noWait);
    expect(calls.slice(-2)).toEqual(['resume', 'record failed: lost']);
  });

  it('fails a running source without waiting for the target, and without a resume', async () => {
    const { p, calls } = ports('running', [down]);
    expect(await settleCutShort('mig-1', 'lost', p, noWait)).toEqual({ action: 'roll-back', resume: false });
    expect(calls).toEqual(['abort lost', 'record failed: lost']);
  });

  it('stops asking at shutdown and leaves the source paused', async () => {
    const { p, calls } = ports('paused', [down]);
    const closing = new AbortController();
    const settled = settleCutShort('mig-1', 'lost', p, {
      signal: closing.signal,
      retryDelayMs: () => 60_000,
    });
    await new Promise((r) => setTimeout(r, 10));
    closing.abort('the node is shutting down');
    await expect(settled).rejects.toThrow();
    expect(calls).not.toContain('resume');
    expect(calls).not.toContain('destroy source');
  });
});

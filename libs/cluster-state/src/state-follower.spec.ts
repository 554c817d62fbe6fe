import { describe, expect, it } from 'vitest';
import { StateFollower } from './state-follower';

function store() {
  const listeners = new Set<(i: number) => void>();
  return {
    onApplied(l: (i: number) => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    apply(i: number) {
      for (const l of listeners) l(i);
    },
    get subscribers() {
      return listeners.size;
    },
  };
}

describe('StateFollower', () => {
  it('runs a pass on start and after applied entries, coalescing those that arrive during a pass', async () => {
    const s = store();
    let passes = 0;
    let release: () => void = () => undefined;
    const follower = new StateFollower(
      s,
      () => {
        passes += 1;
        return new Promise<void>((r) => {
          release = r;
        });
      },
      () => undefined,
    );
    follower.start();
    expect(passes).toBe(1);
    s.apply(1);
    s.apply(2);
    s.apply(3);
    expect(passes).toBe(1);
    release();
    await new Promise((r) => setImmediate(r));
    expect(passes).toBe(2);
    release();
    await new Promise((r) => setImmediate(r));
    expect(passes).toBe(2);
    s.apply(4);
    expect(passes).toBe(3);
    release();
    await follower.stop();
    expect(s.subscribers).toBe(0);
    s.apply(5);
    expect(passes).toBe(3);
  });

  it('reports a failed pass and goes on', async () => {
    const s = store();
    const errors: unknown[] = [];
    let n = 0;
    const follower = new StateFollower(
      s,
      async () => {
        n += 1;
        if (n === 1) throw new Error('boom');
      },
      (e) => errors.push(e),
    );
    follower.start();
    await new Promise((r) => setImmediate(r));
    s.apply(1);
    await follower.stop();
    expect(errors).toHaveLength(1);
    expect(n).toBe(2);
  });
});

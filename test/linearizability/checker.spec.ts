/**
 * The linearizability checker against in-process stores whose behaviour is known: histories from
 * an atomic store must pass, and histories from stores with classic replication bugs must not.
 * Needs Go (to build the checker), as CI has.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { describeUnless, missingTools } from '../tools';
import { buildChecker, checkLinearizable, type History, HistoryRecorder } from './history';

const KEYS = ['vm-1', 'vm-2', 'node-1'];
const CLIENTS = 6;
const OPS_PER_CLIENT = 40;

const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));
const jitter = () => sleep(Math.random() * 3);
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

/** The response to a request that did take effect was lost. */
class LostResponse extends Error {}

interface KeyValueStore {
  put(key: string, value: string): Promise<void>;
  get(key: string): Promise<string | null>;
  cas(key: string, expected: string | null, value: string): Promise<boolean>;
  delete(key: string): Promise<void>;
}

/**
 * Each operation takes effect at one instant between a random request delay and a random
 * response delay, so it is linearizable. One write in eight takes effect and then reports an
 * error, and one in eight fails before taking effect: the client cannot tell which.
 */
class AtomicStore implements KeyValueStore {
  protected readonly data = new Map<string, string>();

  protected async write(apply: () => void): Promise<void> {
    await jitter();
    const fate = Math.random();
    if (fate < 0.125) throw new Error('request dropped');
    apply();
    await jitter();
    if (fate < 0.25) throw new LostResponse('response dropped');
  }

  put(key: string, value: string) {
    return this.write(() => this.data.set(key, value));
  }

  async get(key: string) {
    await jitter();
    const value = this.data.get(key) ?? null;
    await jitter();
    if (Math.random() < 0.1) throw new Error('read timed out');
    return value;
  }

  async cas(key: string, expected: string | null, value: string) {
    let swapped = false;
    await this.write(() => {
      swapped = (this.data.get(key) ?? null) === expected;
      if (swapped) this.data.set(key, value);
    });
    return swapped;
  }

  delete(key: string) {
    return this.write(() => this.data.delete(key));
  }
}

/** Writes are applied by the leader; reads are served by a follower that is 20 ms behind it. */
class StaleFollowerStore extends AtomicStore {
  static readonly LAG_MS = 20;
  private follower = new Map<string, string>();

  protected override write(apply: () => void): Promise<void> {
    return super.write(() => {
      apply();
      const snapshot = new Map(this.data);
      setTimeout(() => {
        this.follower = snapshot;
      }, StaleFollowerStore.LAG_MS);
    });
  }

  override async get(key: string) {
    await jitter();
    return this.follower.get(key) ?? null;
  }
}

/** cas reads, yields, then writes: two concurrent cas calls can both succeed. */
class SplitCasStore {
  private readonly data = new Map<string, string>();

  async cas(key: string, expected: string | null, value: string) {
    const current = this.data.get(key) ?? null;
    await sleep(1);
    if (current !== expected) return false;
    this.data.set(key, value);
    return true;
  }
}

/** Runs concurrent clients doing random operations, recording what each of them saw. */
async function recordWorkload(store: KeyValueStore): Promise<HistoryRecorder> {
  const history = new HistoryRecorder();
  // The last value each key was sent, so that some cas calls expect the current value.
  const lastSent = new Map<string, string>();
  let written = 0;
  const client = async (clientId: number) => {
    for (let i = 0; i < OPS_PER_CLIENT; i++) {
      const key = pick(KEYS);
      const value = `c${clientId}-${written++}`;
      const roll = Math.random();
      if (roll >= 0.4 && roll < 0.9) lastSent.set(key, value);
      if (roll < 0.4) {
        const op = history.invoke(clientId, 'get', key);
        await store.get(key).then((v) => op.ok({ value: v }), op.fail);
      } else if (roll < 0.7) {
        const op = history.invoke(clientId, 'put', key, { value });
        await store.put(key, value).then(() => op.ok(), op.fail);
      } else if (roll < 0.9) {
        const expected = Math.random() < 0.3 ? null : (lastSent.get(key) ?? null);
        const op = history.invoke(clientId, 'cas', key, { expected, value });
        await store.cas(key, expected, value).then((ok) => op.ok({ ok }), op.fail);
      } else {
        const op = history.invoke(clientId, 'delete', key);
        await store.delete(key).then(() => op.ok(), op.fail);
      }
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, (_, id) => client(id)));
  return history;
}

describe('HistoryRecorder', () => {
  it('records outcomes in the checker format, keeping failed writes as unknown and dropping failed reads and refused requests', () => {
    const history = new HistoryRecorder();
    history.invoke(0, 'put', 'k', { value: 'a' }).ok();
    history.invoke(1, 'get', 'k').ok({ value: 'a' });
    history.invoke(2, 'cas', 'k', { expected: null, value: 'b' }).ok({ ok: false });
    history.invoke(3, 'delete', 'k').fail();
    history.invoke(4, 'get', 'k').fail();
    history.invoke(5, 'put', 'k', { value: 'c' });
    history.invoke(6, 'get', 'k');
    history.invoke(7, 'put', 'k', { value: 'd' }).refused();

    const { operations } = history.toJSON();
    expect(operations.map(({ call: _c, return: _r, ...op }) => op)).toEqual([
      { clientId: 0, kind: 'put', key: 'k', value: 'a', output: { ok: true } },
      { clientId: 1, kind: 'get', key: 'k', output: { value: 'a' } },
      { clientId: 2, kind: 'cas', key: 'k', expected: null, value: 'b', output: { ok: false } },
      { clientId: 3, kind: 'delete', key: 'k', output: null },
      { clientId: 5, kind: 'put', key: 'k', value: 'c', output: null },
    ]);
    for (const op of operations) {
      expect(Number.isInteger(op.call)).toBe(true);
      if (op.return !== null) expect(op.return).toBeGreaterThanOrEqual(op.call);
    }
    expect(operations[4]?.return).toBeNull();
    expect(operations[0]?.call).toBeLessThanOrEqual(operations[1]?.call ?? -1);
  });

  it('refuses to complete an operation twice', () => {
    const op = new HistoryRecorder().invoke(0, 'put', 'k', { value: 'a' });
    op.ok();
    expect(() => op.fail()).toThrow(/already completed/);
  });
});

const describeGo = describeUnless(missingTools('go'));

describeGo('checkLinearizable', () => {
  beforeAll(() => buildChecker(), 180_000);

  it('accepts a concurrent history from an atomic store with lost requests and lost responses', async () => {
    const history = await recordWorkload(new AtomicStore());
    const unknown = history.toJSON().operations.filter((op) => op.output === null).length;
    expect(unknown).toBeGreaterThan(0);

    const result = await checkLinearizable(history, { timeoutMs: 30_000 });
    expect(result, result.summary).toMatchObject({ ok: true, result: 'Ok', partitions: KEYS.length });
    expect(result.operations).toBe(history.toJSON().operations.length);
  });

  it('rejects a history with stale reads from a lagging follower', async () => {
    const store = new StaleFollowerStore();
    const history = await recordWorkload(store);
    // However the random workload went, a read right after an acknowledged write is stale.
    for (let acked = false; !acked; ) {
      const put = history.invoke(0, 'put', 'vm-1', { value: 'fresh' });
      try {
        await store.put('vm-1', 'fresh');
        put.ok();
        acked = true;
      } catch {
        put.fail();
      }
    }
    const get = history.invoke(0, 'get', 'vm-1');
    get.ok({ value: await store.get('vm-1') });

    const vizPath = join(mkdtempSync(join(tmpdir(), 'lincheck-')), 'stale.html');
    const result = await checkLinearizable(history, { timeoutMs: 30_000, vizPath });
    expect(result, result.summary).toMatchObject({ ok: false, result: 'Illegal' });
    expect(result.summary).toMatch(/not linearizable on keys: .*vm-1/);
    expect(readFileSync(vizPath, 'utf8')).toContain('<html');
  });

  it('rejects two concurrent compare-and-swaps that both succeed', async () => {
    const store = new SplitCasStore();
    const history = new HistoryRecorder();
    await Promise.all(
      ['a', 'b'].map(async (value, clientId) => {
        const op = history.invoke(clientId, 'cas', 'vm-1', { expected: null, value });
        op.ok({ ok: await store.cas('vm-1', null, value) });
      }),
    );
    expect(history.toJSON().operations.map((op) => op.output)).toEqual([{ ok: true }, { ok: true }]);

    const result = await checkLinearizable(history);
    expect(result, result.summary).toMatchObject({ ok: false, result: 'Illegal', operations: 2 });
  });

  it('rejects a malformed history with the field at fault', async () => {
    const history = {
      operations: [{ clientId: 0, kind: 'pt', key: 'k', call: 0, return: 1, output: { ok: true } }],
    };
    await expect(checkLinearizable(history as unknown as History)).rejects.toThrow(
      /exited with 2: .*operations\[0\]\.kind: unknown kind "pt"/,
    );
  });
});

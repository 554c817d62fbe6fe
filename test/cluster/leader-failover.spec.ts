/**
 * SIGKILL of the leader while writes stream in through every node: a new leader is elected, and
 * every acknowledged write is on every node, the killed one included once it restarts from disk.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCluster, WriteLoad } from './harness';

describe('killing the leader (SIGKILL)', () => {
  const cluster = new LocalCluster(['--raft-min-tick-ms', '20', '--raft-request-timeout-ms', '3000']);
  afterAll(() => cluster.stop());

  it('elects a new leader and loses no acknowledged write', async () => {
    await cluster.start(3);
    const oldLeader = await cluster.waitStable();
    const load = new WriteLoad(cluster, 'kill');
    await load.more(30);
    await oldLeader.signal('SIGKILL');
    const killedAt = load.acked.size;
    // Writes through the survivors go on; some of them land during the election and fail.
    await load.more(30);
    const newLeader = await cluster.waitStable();
    await load.stop();

    expect(newLeader).not.toBe(oldLeader);
    expect(killedAt).toBeGreaterThanOrEqual(30);
    expect(load.unexpectedFailures()).toEqual([]);
    const acked = [...load.acked].sort();
    for (const n of cluster.nodes.filter((x) => x.live)) {
      const names = await cluster.readVmNames(n);
      expect(
        acked.filter((x) => !names.includes(x)),
        `missing on ${n.name}`,
      ).toEqual([]);
      expect(new Set(names).size, `a write applied twice on ${n.name}`).toBe(names.length);
    }

    oldLeader.start();
    const names = await cluster.readVmNames(oldLeader);
    expect(
      acked.filter((x) => !names.includes(x)),
      'missing on the restarted node',
    ).toEqual([]);
    expect(names).toEqual(await cluster.readVmNames(newLeader));
    await cluster.waitStable();
  }, 120_000);
});

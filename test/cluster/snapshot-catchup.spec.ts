/**
 * A follower that was down while the leader compacted its log past it comes back from its own
 * data dir, is sent a snapshot, and ends with the same state as everyone else.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCluster, type NodeProcess } from './harness';

const SNAPSHOT_EVERY = 16;

describe('a restarted node', () => {
  const cluster = new LocalCluster([
    '--raft-min-tick-ms',
    '20',
    '--raft-snapshot-every',
    String(SNAPSHOT_EVERY),
  ]);
  afterAll(() => cluster.stop());

  it('catches up from disk and a snapshot after the log was compacted past it', async () => {
    await cluster.start(3);
    const leader = await cluster.waitStable();
    const follower = cluster.nodes.find((n) => n !== leader) as NodeProcess;
    // Some state the follower holds on disk before it goes down.
    for (let i = 0; i < 5; i++) expect((await cluster.createVm(leader, `before-${i}`)).status).toBe(201);
    expect(await cluster.readVmNames(follower)).toHaveLength(5);
    const snapshotsBefore = await leader.metric('dwcp_acp_snapshots_total');

    await follower.signal('SIGKILL');
    const writes = SNAPSHOT_EVERY * 6;
    for (let i = 0; i < writes; i += 16) {
      const batch = Array.from({ length: 16 }, (_, j) => cluster.createVm(leader, `while-down-${i + j}`));
      for (const r of await Promise.all(batch)) expect(r.status).toBe(201);
    }
    // The leader compacted several times while the follower was away.
    const snapshots = await leader.metric('dwcp_acp_snapshots_total');
    expect(snapshots - snapshotsBefore).toBeGreaterThanOrEqual(writes / SNAPSHOT_EVERY - 1);

    follower.start();
    const names = await cluster.readVmNames(follower);
    expect(names).toHaveLength(5 + writes);
    expect(names).toEqual(await cluster.readVmNames(leader));
    // And it keeps up with new writes afterwards.
    expect((await cluster.createVm(follower, 'after')).status).toBe(201);
    expect(await cluster.readVmNames(follower)).toContain('after');
    const statuses = await Promise.all(cluster.nodes.map((n) => cluster.statusOf(n)));
    expect(new Set(statuses.map((s) => s?.voters.length))).toEqual(new Set([3]));
  }, 120_000);
});

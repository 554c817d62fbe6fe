/**
 * Leaving a cluster: SIGTERM is a graceful exit (status 0) that hands leadership over without
 * losing a write, and DELETE /v1/nodes/:id takes a follower out of the voters while the rest go on.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterStatusBody, LocalCluster, type NodeProcess, until, WriteLoad } from './harness';

describe('membership', () => {
  const cluster = new LocalCluster(['--raft-min-tick-ms', '20', '--raft-request-timeout-ms', '3000']);
  afterAll(() => cluster.stop());

  it('SIGTERM of the leader exits 0 and leadership moves without losing a write', async () => {
    await cluster.start(3);
    const leader = await cluster.waitStable();
    const load = new WriteLoad(cluster, 'term');
    await load.more(20);
    await leader.signal('SIGTERM');
    expect(await leader.exited()).toBe(0);
    expect(leader.log).not.toMatch(/"level":(50|60)|drain timed out/);
    await load.more(20);
    const next = await cluster.waitStable();
    await load.stop();

    expect(next).not.toBe(leader);
    expect(load.unexpectedFailures()).toEqual([]);
    const acked = [...load.acked];
    for (const n of cluster.nodes.filter((x) => x.live)) {
      const names = await cluster.readVmNames(n);
      expect(
        acked.filter((x) => !names.includes(x)),
        `missing on ${n.name}`,
      ).toEqual([]);
    }
    leader.start();
    const names = await cluster.readVmNames(leader);
    expect(
      acked.filter((x) => !names.includes(x)),
      'missing on the restarted node',
    ).toEqual([]);
    await cluster.waitStable();
  }, 120_000);

  it('DELETE /v1/nodes/:id removes a follower from the voters; the other two still commit', async () => {
    const leader = await cluster.waitStable();
    const victim = cluster.nodes.find((n) => n !== leader) as NodeProcess;
    const victimStatus = (await cluster.statusOf(victim)) as ClusterStatusBody;
    const rest = cluster.nodes.filter((n) => n !== victim);

    const denied = await leader.api(
      'DELETE',
      `/v1/nodes/${victimStatus.nodeId}`,
      await cluster.createToken('operator', leader),
    );
    expect(denied.status).toBe(403);

    const r = await leader.api<{ id: string; status: string }>(
      'DELETE',
      `/v1/nodes/${victimStatus.nodeId}`,
      cluster.adminToken,
    );
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: victimStatus.nodeId, status: 'removed' });
    for (const n of rest) {
      await until(`${n.name} drops raft id ${victimStatus.raftId}`, async () => {
        const s = await cluster.statusOf(n);
        return s !== undefined && !s.voters.includes(victimStatus.raftId) && s.voters.length === 2;
      });
    }
    await victim.signal('SIGTERM');
    expect(await victim.exited()).toBe(0);

    const after = await cluster.waitStable();
    for (const n of rest) {
      expect((await cluster.createVm(n, `two-voters-via-${n.name}`)).status).toBe(201);
    }
    for (const n of rest) {
      const names = await cluster.readVmNames(n);
      expect(names).toEqual(expect.arrayContaining(rest.map((x) => `two-voters-via-${x.name}`)));
    }
    const nodes = await after.api<{ items: { id: string; status: string }[] }>(
      'GET',
      '/v1/nodes',
      cluster.adminToken,
    );
    expect(nodes.body.items.find((n) => n.id === victimStatus.nodeId)?.status).toBe('removed');
  }, 120_000);
});

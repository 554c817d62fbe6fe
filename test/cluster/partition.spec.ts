/**
 * Partitions made with SIGSTOP: a leader cut off from both followers is a minority and must
 * neither commit nor serve linearizable reads; a cut-off leader is replaced, and once it is back
 * it steps down and catches up.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type ClusterStatusBody, LocalCluster, type NodeProcess, until } from './harness';

const REQUEST_TIMEOUT_MS = 2000;
/** How long a node looks for a leader before ERR_UNAVAILABLE (at least 5 s; see RaftClusterStore). */
const LEADER_WAIT_MS = Math.max(5000, REQUEST_TIMEOUT_MS);

describe('partitions', () => {
  const cluster = new LocalCluster([
    '--raft-min-tick-ms',
    '20',
    '--raft-request-timeout-ms',
    String(REQUEST_TIMEOUT_MS),
  ]);
  afterAll(() => cluster.stop());

  it('a leader in a minority cannot commit or read linearizably, and the healed cluster writes again', async () => {
    await cluster.start(3);
    const leader = await cluster.waitStable();
    expect((await cluster.createVm(leader, 'before-partition')).status).toBe(201);
    const followers = cluster.nodes.filter((n) => n !== leader);
    for (const f of followers) await f.signal('SIGSTOP');

    // A write and a linearizable read, at once: neither may succeed without a quorum.
    const started = Date.now();
    const [write, read] = await Promise.all([
      cluster.createVm(leader, 'in-minority', 30_000),
      leader.api<{ code: string }>('GET', '/v1/vms', cluster.adminToken, undefined, 30_000),
    ]);
    const tookMs = Date.now() - started;
    expect([503, 504]).toContain(write.status);
    expect(['ERR_UNAVAILABLE', 'ERR_TIMEOUT']).toContain((write.body as unknown as { code: string }).code);
    expect([503, 504]).toContain(read.status);
    expect(['ERR_UNAVAILABLE', 'ERR_TIMEOUT']).toContain(read.body.code);
    // Both fail within the request timeout, or the leader wait if the leader stepped down first.
    expect(tookMs).toBeLessThan(LEADER_WAIT_MS + REQUEST_TIMEOUT_MS + 2000);
    // Stale state stays available, but only when asked for explicitly.
    const local = await leader.api<{ items: unknown[] }>(
      'GET',
      '/v1/vms?consistency=local',
      cluster.adminToken,
    );
    expect(local.status).toBe(200);

    for (const f of followers) await f.signal('SIGCONT');
    const healed = await cluster.waitStable();
    expect((await cluster.createVm(healed, 'after-heal')).status).toBe(201);
    for (const n of cluster.nodes) expect(await cluster.readVmNames(n)).toContain('after-heal');
  }, 120_000);

  it('a cut-off leader is replaced by the majority, then steps down and catches up', async () => {
    const old = await cluster.waitStable();
    const oldStatus = (await cluster.statusOf(old)) as ClusterStatusBody;
    await old.signal('SIGSTOP');

    const replacement = await cluster.waitStable();
    expect(replacement).not.toBe(old);
    const write = await cluster.createVm(replacement, 'while-old-leader-stopped');
    expect(write.status).toBe(201);
    const other = cluster.nodes.find((n) => n !== old && n !== replacement) as NodeProcess;
    expect(await cluster.readVmNames(other)).toContain('while-old-leader-stopped');

    await old.signal('SIGCONT');
    const leader = await cluster.waitStable();
    const s = (await cluster.statusOf(old)) as ClusterStatusBody;
    expect(s.term).toBeGreaterThan(oldStatus.term);
    expect(s.leaderRaftId).toBe(((await cluster.statusOf(leader)) as ClusterStatusBody).raftId);
    await until(
      'the old leader to step down',
      async () => (await cluster.statusOf(old))?.role === 'follower',
    );
    expect(await cluster.readVmNames(old)).toContain('while-old-leader-stopped');
  }, 120_000);
});

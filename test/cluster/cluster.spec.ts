import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from './harness';

describe('a 3-node cluster of real node processes', () => {
  const cluster = new LocalCluster(['--raft-min-tick-ms', '20']);
  beforeAll(() => cluster.start(3), 120_000);
  afterAll(() => cluster.stop());

  it('serves the API through any node, forwarding writes to the leader', async () => {
    const created: string[] = [];
    for (const n of cluster.nodes) {
      const r = await n.api<{ id: string }>('POST', '/v1/vms', cluster.adminToken, {
        name: `via-${n.name}`,
        image: 'debian',
        vcpus: 1,
        memoryMiB: 64,
      });
      expect(r.status).toBe(201);
      created.push(r.body.id);
    }
    for (const n of cluster.nodes) {
      const r = await n.api<{ items: { id: string }[] }>('GET', '/v1/vms', cluster.adminToken);
      expect(r.body.items.map((v) => v.id).sort()).toEqual([...created].sort());
    }
  });
});

/** A node exports its spans over OTLP/HTTP when given a collector, and flushes them on SIGTERM. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalCluster } from './harness';

describe('OpenTelemetry export', () => {
  const bodies: string[] = [];
  const collector = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString('utf8');
    });
    req.on('end', () => {
      if (req.url === '/v1/traces') bodies.push(body);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  let cluster: LocalCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
    collector.close();
  });

  it('sends the commit spans of a write to the collector', async () => {
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    const { port } = collector.address() as AddressInfo;
    cluster = new LocalCluster([
      '--raft-min-tick-ms',
      '20',
      '--tracing-otlp-endpoint',
      `http://127.0.0.1:${port}`,
    ]);
    await cluster.start(1);
    const node = cluster.nodes[0];
    if (!node) throw new Error('no node');
    expect((await cluster.createVm(node, 'traced')).status).toBe(201);
    await node.signal('SIGTERM');
    const all = bodies.join('\n');
    expect(all).toContain('acp.commit');
    expect(all).toContain('vm.create');
    expect(all).toContain('dwcp-node');
  }, 60_000);
});

import { LocalClusterStore } from '@novacron/cluster-state/testing';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseNodeConfig } from './config/node-config';
import { startNode } from './start-node';
import { localConsensus } from './testing/local-consensus';
import { startTestNode } from './testing/test-node';

describe('startNode lifecycle', () => {
  it('close() stops the listeners, then runs beforeShutdown once', async () => {
    const order: string[] = [];
    const t = await startTestNode({ beforeShutdown: () => void order.push('beforeShutdown') });
    const url = `${t.node.apiUrl}/health/live`;
    expect((await fetch(url)).status).toBe(200);
    await Promise.all([t.node.close(), t.node.close()]);
    order.push('closed');
    expect(order).toEqual(['beforeShutdown', 'closed']);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('lets an in-flight request finish while shutting down', async () => {
    const t = await startTestNode();
    const slowRead = t.store.read.bind(t.store);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    t.store.read = async (q, c) => {
      const result = await slowRead(q, c);
      if (c !== 'local') await gate;
      return result;
    };
    const inFlight = t.call('GET', '/v1/vms');
    await new Promise((r) => setTimeout(r, 100));
    let closed = false;
    const closing = t.node.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(closed).toBe(false);
    release();
    const released = performance.now();
    expect((await inFlight).status).toBe(200);
    await closing;
    // Once the last request is answered, not when the drain times out (shutdownTimeoutMs, 10 s):
    // the kept-alive connection it came on must not hold server.close() open.
    expect(performance.now() - released).toBeLessThan(5000);
  });

  it('refuses to listen beyond loopback without TLS files', async () => {
    const config = parseNodeConfig({
      dataDir: '/nonexistent-dwcp',
      api: { host: '0.0.0.0', port: 0 },
      logLevel: 'silent',
    });
    await expect(
      startNode(config, {
        consensus: localConsensus(new LocalClusterStore()),
        logger: pino({ level: 'silent' }),
      }),
    ).rejects.toThrow(ConfigError);
  });
});

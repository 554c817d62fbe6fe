import { randomBytes } from 'node:crypto';
import { generateClusterCa, issueNodeCertificate, type NodeIdentity } from '@novacron/native';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AmstReceiver, AmstTransfer } from './transfer';

const ca = generateClusterCa('libs-transport');
function identity(name: string): NodeIdentity {
  const c = issueNodeCertificate(ca, { nodeName: name });
  return { caPem: ca.certPem, certPem: c.certPem, keyPem: c.keyPem };
}

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

describe('AmstTransfer', () => {
  it('emits live stats and keeps the dwcp_amst_* metrics', async () => {
    const registry = new Registry();
    const receiver = await AmstReceiver.listen({
      kind: 'tcp',
      host: '127.0.0.1',
      port: 0,
      identity: identity('node-b'),
      registry,
    });
    const data = randomBytes(24 << 20);
    const transfer = AmstTransfer.start({
      kind: 'tcp',
      host: '127.0.0.1',
      port: receiver.port,
      serverName: 'node-b',
      identity: identity('node-a'),
      streams: 2,
      statsIntervalMs: 20,
      registry,
    });
    const seen: number[] = [];
    transfer.on('stats', (s) => seen.push(s.bytesAcked));
    const sending = transfer.sendFrom(pieces(data, 1 << 20));
    const incoming = await receiver.accept();
    let received = 0;
    for await (const piece of incoming ?? []) received += piece.length;
    const report = await sending;
    expect(received).toBe(data.length);
    expect(report.stats.bytesAcked).toBe(data.length);
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.at(-1)).toBe(data.length);
    const metrics = await registry.getMetricsAsJSON();
    const value = (name: string) =>
      metrics.find((m) => m.name === name)?.values.reduce((n, v) => n + v.value, 0);
    expect(value('dwcp_amst_sent_bytes_total')).toBe(data.length);
    expect(value('dwcp_amst_received_bytes_total')).toBe(data.length);
    expect(value('dwcp_amst_transfers_total')).toBe(2);
    expect(value('dwcp_amst_connections')).toBe(0);
    const text = await registry.metrics();
    expect(text).toContain('dwcp_amst_connection_rtt_seconds_bucket');
  });

  it('cancels through an AbortSignal', async () => {
    const registry = new Registry();
    const receiver = await AmstReceiver.listen({
      kind: 'quic',
      host: '127.0.0.1',
      port: 0,
      identity: identity('node-b'),
      orphanTimeoutMs: 500,
      registry,
    });
    const transfer = AmstTransfer.start({
      kind: 'quic',
      host: '127.0.0.1',
      port: receiver.port,
      serverName: 'node-b',
      identity: identity('node-a'),
      registry,
    });
    const controller = new AbortController();
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) yield Buffer.alloc(1 << 20, 3);
    }
    const sending = transfer.sendFrom(endless(), controller.signal);
    const incoming = await receiver.accept();
    const reading = (async () => {
      for await (const _ of incoming ?? []) controller.abort();
    })();
    await expect(sending).rejects.toBeDefined();
    await expect(reading).rejects.toMatchObject({ code: 'ERR_AMST_NO_CONNECTION' });
    const metrics = await registry.getMetricsAsJSON();
    const transfers = metrics.find((m) => m.name === 'dwcp_amst_transfers_total')?.values ?? [];
    expect(transfers.find((v) => v.labels.direction === 'send')?.labels.result).toBe('cancelled');
  });
});

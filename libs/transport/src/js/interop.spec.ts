/**
 * The cross-check: the JS path and the native one (the addon's TCP+TLS transport) talk to each
 * other, both ways, so hello, frames, acks and windows agree byte for byte.
 */
import { createHash, randomBytes } from 'node:crypto';
import { AmstListener, AmstSender, generateClusterCa, issueNodeCertificate } from '@novacron/native';
import { describe, expect, it } from 'vitest';
import { listenJs, sendJs } from './tls-transport';

const MiB = 1024 * 1024;
const ca = generateClusterCa('amst-interop');
const nodeA = issueNodeCertificate(ca, { nodeName: 'node-a' });
const nodeB = issueNodeCertificate(ca, { nodeName: 'node-b' });
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function* chunksOf(data: Buffer, size = MiB): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

async function hashAll(pieces: AsyncIterable<Buffer>): Promise<{ sha: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of pieces) {
    hash.update(piece);
    bytes += piece.length;
  }
  return { sha: hash.digest('hex'), bytes };
}

describe('AMST JS and native interoperate over mutual TLS', () => {
  it('JS sender to native receiver', async () => {
    const data = randomBytes(16 * MiB + 5);
    const listener = await AmstListener.bind({
      kind: 'tcp',
      host: '127.0.0.1',
      port: 0,
      identity: { caPem: ca.certPem, ...nodeB },
    });
    const received = listener.accept().then((incoming) => {
      if (incoming === null) throw new Error('the native listener closed');
      return hashAll(incoming);
    });
    const sent = await sendJs(
      {
        host: '127.0.0.1',
        port: listener.port,
        serverName: 'node-b',
        identity: { ca: ca.certPem, cert: nodeA.certPem, key: nodeA.keyPem },
        streams: 3,
      },
      chunksOf(data),
    );
    expect(sent.bytes).toBe(data.length);
    expect(await received).toEqual({ sha: sha256(data), bytes: data.length });
  });

  it('native sender to JS receiver', async () => {
    const data = randomBytes(16 * MiB + 5);
    const listener = await listenJs({
      host: '127.0.0.1',
      port: 0,
      identity: { ca: ca.certPem, cert: nodeB.certPem, key: nodeB.keyPem },
    });
    try {
      const accepted = listener.accept();
      const sender = AmstSender.start({
        kind: 'tcp',
        host: '127.0.0.1',
        port: listener.port,
        serverName: 'node-b',
        identity: { caPem: ca.certPem, ...nodeA },
        streams: 3,
      });
      for await (const chunk of chunksOf(data)) await sender.write(chunk);
      sender.end();
      const [report, got] = await Promise.all([sender.finished(), accepted.then(hashAll)]);
      expect(report.stats.bytesAcked).toBe(data.length);
      expect(got).toEqual({ sha: sha256(data), bytes: data.length });
      expect((await accepted).stats().receiver.duplicates).toBe(0);
    } finally {
      await listener.close();
    }
  });
});

import { createHash, randomBytes } from 'node:crypto';
import { blake3 } from '@noble/hashes/blake3';
import { describe, expect, it } from 'vitest';
import { NativeError } from './errors';
import {
  AmstListener,
  AmstSender,
  generateClusterCa,
  issueNodeCertificate,
  type LinkKind,
  type NodeIdentity,
  sendSynthetic,
  syntheticBlake3,
} from './transport';

const ca = generateClusterCa('spec');
const intruderCa = generateClusterCa('intruder');

function identity(name: string, signer = ca): NodeIdentity {
  const cert = issueNodeCertificate(signer, { nodeName: name });
  return { caPem: ca.certPem, certPem: cert.certPem, keyPem: cert.keyPem };
}

async function listen(kind: LinkKind): Promise<AmstListener> {
  return AmstListener.bind({
    kind,
    host: '127.0.0.1',
    port: 0,
    identity: identity('node-b'),
    orphanTimeoutMs: 1000,
  });
}

describe.each<LinkKind>(['tcp', 'quic'])('AMST over %s', (kind) => {
  it('carries bytes written from JS, in order and exact, over 3 connections', async () => {
    const listener = await listen(kind);
    const data = randomBytes(12 << 20);
    const sender = AmstSender.start({
      kind,
      host: '127.0.0.1',
      port: listener.port,
      serverName: 'node-b',
      identity: identity('node-a'),
      streams: 3,
    });
    const writing = (async () => {
      for (let at = 0; at < data.length; at += 1 << 20) await sender.write(data.subarray(at, at + (1 << 20)));
      sender.end();
      return sender.finished();
    })();
    const incoming = await listener.accept();
    const hash = createHash('sha256');
    for await (const piece of incoming ?? []) hash.update(piece);
    const report = await writing;
    expect(hash.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
    expect(report.stats.bytesAcked).toBe(data.length);
    expect(report.maxStreams).toBe(3);
    expect(report.stats.connections.length).toBeGreaterThan(0);
  });

  it('keeps data native end to end with sendSynthetic and drainToHash', async () => {
    const listener = await listen(kind);
    const sending = sendSynthetic(
      { kind, host: '127.0.0.1', port: listener.port, serverName: 'node-b', identity: identity('node-a') },
      16 << 20,
      7,
    );
    const incoming = await listener.accept();
    const drained = await incoming?.drainToHash();
    const report = await sending;
    expect(drained?.bytes).toBe(16 << 20);
    expect(drained?.blake3).toBe(await syntheticBlake3(16 << 20, 7));
    expect(await syntheticBlake3(16 << 20, 8)).not.toBe(drained?.blake3);
    expect(report.stats.bytesAcked).toBe(16 << 20);
  });
});

describe('AMST refusals and errors', () => {
  it('refuses a sender whose certificate is from another CA', async () => {
    const listener = await listen('tcp');
    const sender = AmstSender.start({
      kind: 'tcp',
      host: '127.0.0.1',
      port: listener.port,
      serverName: 'node-b',
      identity: identity('node-a', intruderCa),
      streams: 1,
    });
    sender.end();
    const err = await sender.finished().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NativeError);
    expect(['ERR_AMST_TLS', 'ERR_AMST_NO_CONNECTION', 'ERR_AMST_IO']).toContain((err as NativeError).code);
    expect(listener.refused()).toBeGreaterThanOrEqual(1);
  });

  it('refuses a receiver with the wrong name', async () => {
    const listener = await listen('quic');
    const sender = AmstSender.start({
      kind: 'quic',
      host: '127.0.0.1',
      port: listener.port,
      serverName: 'node-z',
      identity: identity('node-a'),
      streams: 1,
    });
    sender.end();
    await expect(sender.finished()).rejects.toMatchObject({ code: 'ERR_AMST_TLS' });
  });

  it('names the bad option', () => {
    const base = {
      kind: 'tcp' as const,
      host: '127.0.0.1',
      port: 1,
      serverName: 'node-b',
      identity: identity('a'),
    };
    const cases: Array<[object, string]> = [
      [{ kind: 'udp' }, 'kind'],
      [{ port: 70000 }, 'port'],
      [{ host: 'example.com' }, 'host'],
      [{ rateCap: -1 }, 'rateCap'],
      [{ congestion: 'vegas' }, 'congestion'],
      [{ maxStreams: 0 }, 'maxStreams'],
    ];
    for (const [patch, field] of cases) {
      try {
        AmstSender.start({ ...base, ...patch } as typeof base);
        expect.unreachable(JSON.stringify(patch));
      } catch (e) {
        expect((e as NativeError).code).toBe('ERR_AMST_INVALID_PARAM');
        expect((e as NativeError).message).toContain(`\`${field}\``);
      }
    }
    expect(() => AmstSender.start({ ...base, identity: { ...base.identity, certPem: 'nope' } })).toThrow(
      expect.objectContaining({ code: 'ERR_AMST_CERTIFICATE' }),
    );
  });

  it('cancel rejects the sender and fails the receiver', async () => {
    const listener = await listen('tcp');
    const sender = AmstSender.start({
      kind: 'tcp',
      host: '127.0.0.1',
      port: listener.port,
      serverName: 'node-b',
      identity: identity('node-a'),
      streams: 2,
    });
    const chunk = Buffer.alloc(1 << 20, 1);
    const writing = (async () => {
      for (;;) await sender.write(chunk);
    })().catch((e: unknown) => e);
    const incoming = await listener.accept();
    const first = await incoming?.read();
    expect(first?.length).toBeGreaterThan(0);
    sender.cancel();
    await expect(sender.finished()).rejects.toMatchObject({ code: 'ERR_AMST_CANCELLED' });
    const failed = await incoming?.drainToHash().catch((e: unknown) => e);
    expect((failed as NativeError).code).toBe('ERR_AMST_NO_CONNECTION');
    expect(((await writing) as NativeError).code).toBe('ERR_AMST_CANCELLED');
  });
});

it('drainToHash agrees with a JS BLAKE3 of the same bytes', async () => {
  const listener = await listen('tcp');
  const data = randomBytes(3 << 20);
  const sender = AmstSender.start({
    kind: 'tcp',
    host: '127.0.0.1',
    port: listener.port,
    serverName: 'node-b',
    identity: identity('node-a'),
    streams: 2,
  });
  await sender.write(data);
  sender.end();
  const incoming = await listener.accept();
  const drained = await incoming?.drainToHash();
  await sender.finished();
  expect(drained?.blake3).toBe(Buffer.from(blake3(data)).toString('hex'));
});

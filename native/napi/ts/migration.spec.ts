/**
 * The migration facade without QEMU: a fake source QEMU writes into the source's unix socket and
 * a fake destination QEMU listens where the sink delivers, so the stats and reports JS sees (the
 * integrity counters a node exports as metrics among them) are checked against a real run.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChunkStore } from './hde';
import { MigrationSink, MigrationSource } from './migration';
import { generateClusterCa, issueNodeCertificate, type NodeIdentity } from './transport';

const MiB = 1024 * 1024;
const ca = generateClusterCa('migration-spec');
const identity = (nodeName: string): NodeIdentity => ({
  caPem: ca.certPem,
  ...issueNodeCertificate(ca, { nodeName }),
});
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The destination QEMU: listens on `path` and resolves with everything written to it. */
function fakeDestination(path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => {
      const pieces: Buffer[] = [];
      socket.on('data', (b: Buffer) => pieces.push(b));
      socket.on('end', () => {
        server.close();
        resolve(Buffer.concat(pieces));
      });
      socket.on('error', reject);
    });
    server.on('error', reject);
    server.listen(path);
  });
}

/** The source QEMU: connects to `path`, writes `data` and closes. */
function fakeSource(path: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path, () => socket.end(data, () => resolve()));
    socket.on('error', reject);
  });
}

describe('MigrationSource and MigrationSink', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dwcp-mig-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A sink toward QEMU's socket at `dstPath` (a store of its own), and a source sending to it over 2 connections. */
  async function pair(dstPath: string): Promise<{ sink: MigrationSink; source: MigrationSource }> {
    const sink = await MigrationSink.start(
      {
        socketPath: dstPath,
        listen: { kind: 'tcp', host: '127.0.0.1', port: 0, identity: identity('node-b') },
      },
      ChunkStore.open(join(dir, 'store'), 256 * MiB),
    );
    const source = MigrationSource.start({
      socketPath: join(dir, 'src.sock'),
      send: {
        kind: 'tcp',
        host: '127.0.0.1',
        port: sink.port,
        serverName: 'node-b',
        identity: identity('node-a'),
        streams: 2,
      },
    });
    return { sink, source };
  }

  it('carry a stream exactly and report clean integrity counters', async () => {
    const dstPath = join(dir, 'dst.sock');
    const delivered = fakeDestination(dstPath);
    const { sink, source } = await pair(dstPath);
    const data = randomBytes(6 * MiB);
    await fakeSource(source.socketPath, data);
    const [sent, got, out] = await Promise.all([source.finished(), sink.finished(), delivered]);

    expect(sha256(out)).toBe(sha256(data));
    expect(sent.stats).toMatchObject({
      bytesFromQemu: data.length,
      framesRejected: 0,
      connectionsFailed: 0,
      connectionsOpened: 2,
    });
    expect(sent.stats.transfer.framesResent).toBe(0);
    expect(sent.failedConnections).toBe(0);
    expect(got.stats).toMatchObject({ bytesToQemu: data.length, framesRejected: 0, connectionsCorrupted: 0 });
    // The live stats carry the same fields for the node's metrics.
    expect(source.stats()).toHaveProperty('framesRejected', 0);
    expect(sink.stats()).toHaveProperty('connectionsCorrupted', 0);
  });

  it('probe the path on the warm connections before QEMU, and the stream follows exactly', async () => {
    const dstPath = join(dir, 'dst.sock');
    const delivered = fakeDestination(dstPath);
    const { sink, source } = await pair(dstPath);
    const started = Date.now();
    const probe = await source.probe(800);
    expect(Date.now() - started).toBeLessThan(800 + 1000);
    expect(['plateau', 'maxMs']).toContain(probe.endedBy);
    expect(probe.bytes).toBeGreaterThan(0);
    expect(probe.goodputBytesPerSec).toBeGreaterThan(0);
    expect(probe.minRttMs).toBeGreaterThan(0);
    expect(probe.connections).toBe(2);
    expect(probe.perConnection).toHaveLength(2);
    for (const c of probe.perConnection) expect(c.cwndBytes).toBeGreaterThan(0);
    await expect(source.probe(0)).rejects.toMatchObject({ code: 'ERR_AMST_INVALID_PARAM' });

    const data = randomBytes(4 * MiB);
    await fakeSource(source.socketPath, data);
    const [sent, got, out] = await Promise.all([source.finished(), sink.finished(), delivered]);
    // Nothing of the probe reached QEMU, and the stream went on the connections the probe warmed:
    // no other joined the sink's transfer. (A sender may still dial once more at the very end,
    // when the sink closes its connections before the FIN's ack is read; the listener answers
    // that one with the final ack, outside the transfer.)
    expect(sha256(out)).toBe(sha256(data));
    expect(got.stats.transfer.connectionsSeen).toBe(2);
    expect(sent.stats.connectionsFailed).toBe(0);
  });

  it('reject a probe with a typed error when the sink is gone, and cancel cleanly', async () => {
    const { sink, source } = await pair(join(dir, 'dst.sock'));
    const probe = source.probe(5000);
    sink.cancel();
    await expect(probe).rejects.toMatchObject({ code: 'ERR_AMST_PROBE_FAILED' });
    source.cancel();
    // Cancelled, or already failed for want of a sink: either way it ends, with a code.
    const ended = await source.finished().then(
      () => 'resolved',
      (e: { code?: string }) => e.code,
    );
    expect(['ERR_MIGRATION_CANCELLED', 'ERR_AMST_NO_CONNECTION']).toContain(ended);
    await sink.finished().catch(() => undefined);
  });
});

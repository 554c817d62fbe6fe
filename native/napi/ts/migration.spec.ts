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

  it('carry a stream exactly and report clean integrity counters', async () => {
    const store = ChunkStore.open(join(dir, 'store'), 256 * MiB);
    const dstPath = join(dir, 'dst.sock');
    const delivered = fakeDestination(dstPath);
    const sink = await MigrationSink.start(
      {
        socketPath: dstPath,
        listen: { kind: 'tcp', host: '127.0.0.1', port: 0, identity: identity('node-b') },
      },
      store,
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
});

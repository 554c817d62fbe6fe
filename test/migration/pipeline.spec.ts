/**
 * The native migration data path with real QEMU: a running test guest migrates from one QEMU to
 * another through MigrationSource → HDE → AMST (TCP + mutual TLS) → MigrationSink, with no byte of
 * the stream in JS. Then back and forth, the second time into a store that remembers the guest, and
 * a cancel mid-transfer.
 */

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  followMigration,
  type MigrationProgress,
  QemuDriver,
  type VmHandle,
  waitForLine,
} from '@novacron/hypervisor';
import {
  ChunkStore,
  generateClusterCa,
  issueNodeCertificate,
  MigrationSink,
  type MigrationSinkReport,
  MigrationSource,
  type MigrationSourceReport,
  type NodeIdentity,
} from '@novacron/native';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  ensureGuestBuilt,
  firstEvent,
  guestSpec,
  heartbeatSeq,
  integrityHolds,
  isAlive,
  qemuSkipReason,
  READY,
} from '../guest/guest';
import { describeUnless } from '../tools';

const MiB = 1024 * 1024;

type NodeName = 'node-a' | 'node-b';

interface Migration {
  destination: VmHandle;
  sent: MigrationSourceReport;
  got: MigrationSinkReport;
  final: MigrationProgress;
  /** From the source's STOP to the destination's RESUME, by QEMU's own event timestamps. */
  pauseMs: number;
  seconds: number;
}

const describeQemu = describeUnless(qemuSkipReason());

describeQemu('native migration data path with real QEMU', () => {
  const logs: string[] = [];
  const driver = new QemuDriver({
    logger: { log: (m) => logs.push(m), warn: (m) => logs.push(`WARN ${m}`) },
  });
  const results: string[] = [];
  let workDir: string;
  let identities: Record<NodeName, NodeIdentity>;
  let stores: Record<NodeName, ChunkStore>;
  let vm: VmHandle;
  let readyMd5: string;
  let first: Migration;
  let seq = 0;

  beforeAll(async () => {
    await ensureGuestBuilt();
    workDir = await mkdtemp(join(tmpdir(), 'dwcp-pl-'));
    const ca = generateClusterCa('pipeline-test');
    const identity = (nodeName: NodeName): NodeIdentity => ({
      caPem: ca.certPem,
      ...issueNodeCertificate(ca, { nodeName }),
    });
    identities = { 'node-a': identity('node-a'), 'node-b': identity('node-b') };
    // Each node opens its store once and hands it to every sink it starts.
    stores = {
      'node-a': ChunkStore.open(join(workDir, 'store-a'), 1024 * MiB),
      'node-b': ChunkStore.open(join(workDir, 'store-b'), 1024 * MiB),
    };
  }, 620_000);

  afterAll(async () => {
    await driver.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
    console.info(logs.join('\n'));
    console.info(results.join('\n'));
  });

  /** Starts a destination QEMU, the sink feeding it and the source; QEMU is then told to migrate to `uri`. */
  async function startMigration(fromNode: NodeName, toNode: NodeName, inventory?: Buffer) {
    seq += 1;
    const sinkSocket = join(workDir, `sink-${seq}.sock`);
    const sourceSocket = join(workDir, `source-${seq}.sock`);
    const destination = await driver.prepareIncoming(guestSpec(`pl-${toNode}-${seq}`), `unix:${sinkSocket}`);
    const sink = await MigrationSink.start(
      {
        socketPath: sinkSocket,
        listen: {
          kind: 'tcp',
          host: '127.0.0.1',
          port: 0,
          identity: identities[toNode],
          orphanTimeoutMs: 1500,
        },
      },
      stores[toNode],
    );
    const source = MigrationSource.start({
      socketPath: sourceSocket,
      send: {
        kind: 'tcp',
        host: '127.0.0.1',
        port: sink.port,
        serverName: toNode,
        identity: identities[fromNode],
        streams: 4,
      },
      codec: { codec: 'zstd', level: 1 },
      ...(inventory ? { inventory } : {}),
    });
    return { destination, sink, source, uri: `unix:${sourceSocket}` as const };
  }

  async function migrate(
    from: VmHandle,
    fromNode: NodeName,
    toNode: NodeName,
    inventory?: Buffer,
  ): Promise<Migration> {
    const { destination, sink, source, uri } = await startMigration(fromNode, toNode, inventory);
    const sourceEvents = driver.events(from);
    const destinationEvents = driver.events(destination);
    const started = performance.now();
    await driver.migrate(from, uri);
    const readings: MigrationProgress[] = [];
    for await (const progress of followMigration(driver, from, { intervalMs: 100 })) readings.push(progress);
    const final = readings.at(-1);
    expect(final?.status, final?.errorDesc).toBe('completed');
    const [sent, got] = await Promise.all([source.finished(), sink.finished()]);
    const seconds = (performance.now() - started) / 1000;
    const stop = await firstEvent(sourceEvents, (e) => e.type === 'stop');
    const resume = await firstEvent(destinationEvents, (e) => e.type === 'resume');
    await sourceEvents.return?.();
    await destinationEvents.return?.();
    expect(await driver.status(from)).toEqual({ state: 'postmigrate', running: false });
    expect(await driver.status(destination)).toEqual({ state: 'running', running: true });
    // Every byte QEMU wrote reached the destination QEMU, verified, and nothing else did.
    expect(sent.stats.bytesFromQemu).toBe(got.stats.bytesToQemu);
    expect(got.stats.wireBytes).toBe(sent.stats.wireBytes);
    expect(sent.stats.transfer.bytesAcked).toBe(sent.stats.wireBytes);
    return {
      destination,
      sent,
      got,
      final: final as MigrationProgress,
      pauseMs: (resume?.atMs ?? Number.NaN) - (stop?.atMs ?? Number.NaN),
      seconds,
    };
  }

  function describeRun(what: string, m: Migration): string {
    const s = m.sent.stats;
    return (
      `${what}: ${s.bytesFromQemu} bytes from QEMU (QEMU counts ${m.final.transferredBytes}), ` +
      `${s.wireBytes} on the wire (${((100 * s.wireBytes) / s.bytesFromQemu).toFixed(1)}%, ratio ${s.compressionRatio.toFixed(2)}), ` +
      `chunks ${s.chunks}: ${s.chunksSent} sent, ${s.streamDedupChunks} repeats in the stream, ` +
      `${s.inventoryDedupChunks} from the destination's inventory (${s.inventoryDedupBytes} bytes); ` +
      `${m.seconds.toFixed(2)} s end to end, QEMU total ${m.final.totalTimeMs} ms, ` +
      `QEMU downtime ${m.final.downtimeMs} ms, STOP→RESUME ${m.pauseMs} ms, ` +
      `AMST ${m.sent.maxStreams} connections`
    );
  }

  /** The guest runs on the destination: its heartbeat counter carries on and its memory checks out. */
  async function expectRunsIntact(destination: VmHandle, seqBefore: number): Promise<void> {
    const lines = driver.serialLines(destination);
    expect(await heartbeatSeq(lines)).toBeGreaterThan(seqBefore);
    await integrityHolds(lines, readyMd5);
    await lines.return?.();
  }

  async function lastSeq(from: VmHandle): Promise<number> {
    const lines = driver.serialLines(from);
    const seqNow = await heartbeatSeq(lines);
    await lines.return?.();
    return seqNow;
  }

  it('boots the test guest on node A', async () => {
    vm = await driver.launch(guestSpec('pl-origin'));
    const lines = driver.serialLines(vm, { replay: true });
    readyMd5 = (await waitForLine(lines, READY, { timeoutMs: 45_000, what: 'DWCP-READY' }))[1] ?? '';
    await heartbeatSeq(lines);
    await lines.return?.();
  }, 60_000);

  it('migrates the running guest A → B natively; it runs on B with its memory intact', async () => {
    const seqBefore = await lastSeq(vm);
    const storeBefore = stores['node-b'].count;
    first = await migrate(vm, 'node-a', 'node-b');
    results.push(describeRun('A → B, empty store on B', first));
    const s = first.sent.stats;
    expect(s.inventoryDedupChunks).toBe(0);
    expect(s.wireBytes).toBeLessThan(s.bytesFromQemu);
    expect(first.got.stats.chunksReceived).toBe(s.chunksSent);
    expect(stores['node-b'].count - storeBefore).toBe(s.chunksSent);
    await expectRunsIntact(first.destination, seqBefore);
    await driver.destroy(vm);
    vm = first.destination;
  }, 90_000);

  it("back to A, then to B again with B's inventory: far fewer bytes on the wire", async () => {
    const back = await migrate(vm, 'node-b', 'node-a');
    results.push(describeRun('B → A, empty store on A', back));
    await expectRunsIntact(back.destination, 0);
    await driver.destroy(vm);
    vm = back.destination;

    const inventory = stores['node-b'].inventory();
    expect(inventory.length).toBe(32 * stores['node-b'].count);
    const seqBefore = await lastSeq(vm);
    const again = await migrate(vm, 'node-a', 'node-b', inventory);
    results.push(
      `${describeRun("A → B again, with B's inventory", again)}; inventory ${inventory.length} bytes`,
    );
    const s = again.sent.stats;
    expect(s.inventoryDedupChunks).toBeGreaterThan(0);
    expect(again.got.stats.chunksReused).toBeGreaterThanOrEqual(s.inventoryDedupChunks);
    results.push(
      `wire bytes, second A → B / first A → B: ${s.wireBytes} / ${first.sent.stats.wireBytes} = ` +
        `${((100 * s.wireBytes) / first.sent.stats.wireBytes).toFixed(1)}%`,
    );
    expect(s.wireBytes).toBeLessThan(0.5 * first.sent.stats.wireBytes);
    await expectRunsIntact(again.destination, seqBefore);
    await driver.destroy(vm);
    vm = again.destination;
  }, 150_000);

  it('cancel mid-transfer: QEMU fails its migration, the source VM keeps running, the destination goes with no orphan', async () => {
    // 1 MiB/s: the stream takes far longer than the test waits.
    await driver.setMigrationParameters(vm, { maxBandwidthBytesPerSec: MiB });
    const { destination, sink, source, uri } = await startMigration('node-b', 'node-a');
    const destinationEvents = driver.events(destination);
    await driver.migrate(vm, uri);
    let moving: MigrationProgress | undefined;
    for await (const progress of followMigration(driver, vm, { intervalMs: 100 })) {
      if (progress.status === 'active' && (progress.totalTimeMs ?? 0) >= 1500) {
        moving = progress;
        break;
      }
    }
    expect(moving?.status).toBe('active');
    const during = source.stats();
    expect(during.qemuConnected && !during.qemuFinished).toBe(true);
    expect(during.bytesFromQemu).toBeGreaterThan(0);
    expect(sink.stats().bytesToQemu).toBeGreaterThan(0);

    source.cancel();
    await expect(source.finished()).rejects.toMatchObject({ code: 'ERR_MIGRATION_CANCELLED' });
    const readings: MigrationProgress[] = [];
    for await (const progress of followMigration(driver, vm, { intervalMs: 100 })) readings.push(progress);
    const final = readings.at(-1);
    expect(final?.status).toBe('failed');
    expect(await driver.status(vm)).toEqual({ state: 'running', running: true });
    const lines = driver.serialLines(vm);
    const beat = await heartbeatSeq(lines);
    expect(await heartbeatSeq(lines)).toBe(beat + 1);
    await lines.return?.();

    // The sink loses every connection, gives up after its orphan timeout and closes QEMU's socket.
    await expect(sink.finished()).rejects.toMatchObject({ code: 'ERR_AMST_NO_CONNECTION' });
    const exit = await firstEvent(destinationEvents, (e) => e.type === 'exit', 10_000);
    results.push(
      `cancel: after ${moving?.totalTimeMs} ms at 1 MiB/s (${during.bytesFromQemu} bytes from QEMU), ` +
        `source QEMU '${final?.status}' (${final?.errorDesc}), destination exit ${JSON.stringify(exit)}`,
    );
    const { pid, runtimeDir } = destination;
    await driver.destroy(destination);
    expect(isAlive(pid)).toBe(false);
    expect(runtimeDir && existsSync(runtimeDir)).toBe(false);
    expect(existsSync(source.socketPath)).toBe(false);
  }, 90_000);
});

import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { VmHandle, VmSpec } from './driver';
import type { VmEvent } from './events';
import type { MigrationProgress, MigrationUri } from './migration';
import { followMigration } from './migration-watch';
import { waitForLine } from './serial-console';
import { SimulatedDriver, type SimulatedDriverOptions } from './simulated-driver';

const MiB = 1024 * 1024;
const spec: VmSpec = { name: 'sim', memoryMiB: 64, kernel: '/nowhere/vmlinux' };

function driver(options: SimulatedDriverOptions = {}): SimulatedDriver {
  return new SimulatedDriver({ logger: { log: vi.fn(), warn: vi.fn() }, heartbeatIntervalMs: 0, ...options });
}

async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (performance.now() > deadline) throw new Error(`still ${JSON.stringify(value)}`);
    await sleep(10);
  }
}

async function finalProgress(d: SimulatedDriver, vm: VmHandle): Promise<MigrationProgress> {
  let last: MigrationProgress | undefined;
  for await (const progress of followMigration(d, vm, { intervalMs: 5 })) last = progress;
  return last as MigrationProgress;
}

/** Every event until the VM exits, or until `timeoutMs`. */
async function collect(events: AsyncIterableIterator<VmEvent>, timeoutMs: number): Promise<VmEvent[]> {
  const seen: VmEvent[] = [];
  const reading = (async () => {
    for await (const event of events) seen.push(event);
  })();
  await Promise.race([reading, sleep(timeoutMs)]);
  await events.return?.();
  return seen;
}

/** A listener that keeps what a source writes to it (QEMU's stream, as a file would). */
async function capture(path: string): Promise<{ server: Server; bytes: Promise<Buffer> }> {
  const server = createServer();
  const bytes = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('end', () => resolve(Buffer.concat(chunks)));
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { server, bytes };
}

async function send(path: string, bytes: Buffer): Promise<void> {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.end(bytes, resolve);
  });
}

describe('SimulatedDriver (no hypervisor: a stand-in, not evidence about QEMU)', () => {
  let dir: string;
  const uri = (name: string): MigrationUri => `unix:${join(dir, name)}`;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dwcp-sim-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('warns at construction and marks every handle simulated', async () => {
    const warn = vi.fn();
    const d = new SimulatedDriver({ logger: { log: vi.fn(), warn }, heartbeatIntervalMs: 0 });
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/SIMULATED/));
    const vm = await d.launch(spec);
    expect(vm).toMatchObject({ simulated: true, pid: undefined, accelerator: 'simulated' });
    const destination = await d.prepareIncoming(spec, uri('in.sock'));
    expect(destination).toMatchObject({ simulated: true, incoming: true });
    await d.close();
  });

  it('models stop/cont and a migration paced by max-bandwidth that hands over to the destination', async () => {
    let now = 1_000_000;
    const d = driver({ now: () => now });
    const source = await d.launch(spec);
    await d.stop(source);
    expect(await d.status(source)).toEqual({ state: 'paused', running: false });
    await d.cont(source);
    const destination = await d.prepareIncoming(spec, uri('in.sock'));
    expect(existsSync(join(dir, 'in.sock'))).toBe(true);
    expect((await d.status(destination)).state).toBe('inmigrate');
    const arrived = d.events(destination);
    await d.setMigrationParameters(source, { maxBandwidthBytesPerSec: 32 * MiB });
    await d.migrate(source, uri('in.sock'));
    now += 1000;
    const last = await finalProgress(d, source);
    expect(last).toMatchObject({ status: 'completed', remainingBytes: 0, totalBytes: 64 * MiB });
    // An eighth of RAM is the boot image and a sixteenth private; the zero pages take 9 bytes each.
    expect(last.transferredBytes).toBeGreaterThan(12 * MiB);
    expect(last.transferredBytes).toBeLessThan(14 * MiB);
    const seconds = (last.totalTimeMs ?? 0) / 1000;
    expect(last.transferredBytes / seconds).toBeLessThan(32 * MiB * 1.15);
    expect(last.downtimeMs).toBeGreaterThanOrEqual(0);
    expect((await d.status(source)).state).toBe('postmigrate');
    // As with QEMU, the source completes once its stream is out; the destination runs once it loaded.
    expect(
      (
        await until(
          () => d.status(destination),
          (s) => s.state !== 'inmigrate',
        )
      ).state,
    ).toBe('running');
    expect((await arrived.next()).value).toEqual({ atMs: 1_001_000, type: 'resume' });
    await d.close();
  });

  it('round trip between two drivers: the destination runs on with the console where the source stopped', async () => {
    const a = driver({ heartbeatIntervalMs: 20 });
    const b = driver({ heartbeatIntervalMs: 20 });
    const source = await a.launch(spec);
    const beats = a.serialLines(source);
    await waitForLine(beats, /seq=3 /, { timeoutMs: 2000, what: 'a heartbeat' });
    const destination = await b.prepareIncoming(spec, uri('in.sock'));
    const sourceEvents = a.events(source);
    const destinationEvents = b.events(destination);
    await a.migrate(source, uri('in.sock'));
    expect((await finalProgress(a, source)).status).toBe('completed');
    expect(await a.status(source)).toEqual({ state: 'postmigrate', running: false });
    expect(
      await until(
        () => b.status(destination),
        (s) => s.running,
      ),
    ).toEqual({
      state: 'running',
      running: true,
    });
    const kinds = (await collect(sourceEvents, 50)).map((e) =>
      e.type === 'migration' ? e.status : e.type === 'migration-pass' ? 'pass' : e.type,
    );
    expect(kinds.filter((k, i) => kinds[i - 1] !== k)).toEqual([
      'setup',
      'active',
      'pass',
      'stop',
      'completed',
    ]);
    expect((await destinationEvents.next()).value).toMatchObject({ type: 'resume' });
    const after = b.serialLines(destination);
    const beat = await waitForLine(after, /DWCP-HEARTBEAT seq=(\d+)/, {
      timeoutMs: 2000,
      what: 'a heartbeat',
    });
    expect(Number(beat[1])).toBeGreaterThanOrEqual(4);
    // The destination's memory is the source's: it migrates on, and A checks every page again.
    const back = await a.prepareIncoming(spec, uri('back.sock'));
    await b.migrate(destination, uri('back.sock'));
    expect((await finalProgress(b, destination)).status).toBe('completed');
    expect(
      (
        await until(
          () => a.status(back),
          (s) => s.state !== 'inmigrate',
        )
      ).state,
    ).toBe('running');
    await Promise.all([a.close(), b.close()]);
  });

  it('a truncated, corrupted or foreign stream makes the destination exit, as a failed load does QEMU', async () => {
    const warn = vi.fn();
    const d = new SimulatedDriver({ logger: { log: vi.fn(), warn }, heartbeatIntervalMs: 0 });
    const source = await d.launch(spec);
    const sink = await capture(join(dir, 'capture.sock'));
    await d.migrate(source, uri('capture.sock'));
    expect((await finalProgress(d, source)).status).toBe('completed');
    const stream = await sink.bytes;
    sink.server.close();
    const flipped = Buffer.from(stream);
    flipped[Math.floor(stream.length / 3)] ^= 0x01;
    const cases: [string, VmSpec, Buffer, RegExp][] = [
      ['truncated', spec, stream.subarray(0, stream.length / 2), /ended without EOS/],
      ['without its trailer', spec, stream.subarray(0, stream.length - 40), /ended without its trailer/],
      ['a flipped bit', spec, flipped, /digest does not match/],
      ['another RAM size', { ...spec, memoryMiB: 32 }, stream, /RAM size mismatch/],
      ['garbage after the end', spec, Buffer.concat([stream, Buffer.from([0])]), /1 bytes after the end/],
    ];
    for (const [i, [what, destinationSpec, bytes, reason]] of cases.entries()) {
      const destination = await d.prepareIncoming(destinationSpec, uri(`${i}.sock`));
      const events = d.events(destination);
      await send(join(dir, `${i}.sock`), bytes).catch(() => {});
      const seen = await collect(events, 5000);
      expect(
        seen.map((e) => e.type),
        what,
      ).toEqual(['exit']);
      expect(seen[0], what).toMatchObject({ type: 'exit', code: 1 });
      expect(await d.status(destination), what).toEqual({ state: 'exited', running: false });
      expect(warn.mock.lastCall?.[0], what).toMatch(reason);
      await d.destroy(destination);
    }
    const intact = await d.prepareIncoming(spec, uri('intact.sock'));
    await send(join(dir, 'intact.sock'), stream);
    expect(
      (
        await until(
          () => d.status(intact),
          (s) => s.state !== 'inmigrate',
        )
      ).state,
    ).toBe('running');
    await d.close();
  });

  it('cancel stops writing and closes the socket: the source runs on, the destination exits', async () => {
    const d = driver();
    const source = await d.launch(spec);
    const destination = await d.prepareIncoming(spec, uri('in.sock'));
    const sourceEvents = d.events(source);
    await d.setMigrationParameters(source, { maxBandwidthBytesPerSec: MiB });
    await d.migrate(source, uri('in.sock'));
    const during = await until(
      () => d.queryMigrate(source),
      (p) => p.transferredBytes > 100_000,
    );
    expect(during).toMatchObject({ status: 'active', totalBytes: 64 * MiB });
    expect(during.remainingBytes).toBeGreaterThan(32 * MiB);
    await d.cancelMigration(source);
    const cancelled = await d.queryMigrate(source);
    expect(cancelled.status).toBe('cancelled');
    expect(await d.status(source)).toEqual({ state: 'running', running: true });
    await sleep(300);
    expect((await d.queryMigrate(source)).transferredBytes).toBe(cancelled.transferredBytes);
    expect(
      (
        await until(
          () => d.status(destination),
          (s) => s.state !== 'inmigrate',
        )
      ).state,
    ).toBe('exited');
    const statuses = (await collect(sourceEvents, 50)).flatMap((e) =>
      e.type === 'migration' ? [e.status] : [],
    );
    expect(statuses).toEqual(['setup', 'active', 'cancelling', 'cancelled']);
    await d.close();
  });

  it('a write error (the reader went away) fails the migration and the VM keeps running', async () => {
    const d = driver();
    const source = await d.launch(spec);
    const server = createServer((socket) => {
      let read = 0;
      socket.on('data', (chunk: Buffer) => {
        read += chunk.length;
        if (read > 200_000) socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server.listen(join(dir, 'reader.sock'), resolve));
    await d.setMigrationParameters(source, { maxBandwidthBytesPerSec: 8 * MiB });
    await d.migrate(source, uri('reader.sock'));
    const failed = await finalProgress(d, source);
    server.close();
    expect(failed.status).toBe('failed');
    expect(failed.errorDesc).toMatch(/EPIPE|ECONNRESET|closed/);
    expect(await d.status(source)).toEqual({ state: 'running', running: true });
    await d.migrate(source, uri('nobody.sock'));
    expect(await finalProgress(d, source)).toMatchObject({
      status: 'failed',
      errorDesc: expect.stringMatching(/Failed to connect to '.*nobody.sock'/),
    });
    expect(await d.status(source)).toEqual({ state: 'running', running: true });
    await d.close();
  });

  it('re-sends dirtied pages while the dirty set misses downtime-limit at the drain rate; the final round honours it', async () => {
    const d = driver({ dirtyRateBytesPerSec: 16 * MiB });
    const small: VmSpec = { ...spec, memoryMiB: 16 };
    const source = await d.launch(small);
    const destination = await d.prepareIncoming(small, uri('in.sock'));
    // The working set is a 64th of RAM (256 KiB): 62 ms at 4 MiB/s, never within 10 ms.
    await d.setMigrationParameters(source, { maxBandwidthBytesPerSec: 4 * MiB, downtimeLimitMs: 10 });
    await d.migrate(source, uri('in.sock'));
    const looping = await until(
      () => d.queryMigrate(source),
      (p) => p.dirtySyncCount >= 5,
    );
    expect(looping.status).toBe('active');
    expect(looping.dirtyRateBytesPerSec).toBeGreaterThan(8 * MiB);
    expect(looping.expectedDowntimeMs).toBeGreaterThan(10);
    expect(looping.throughputBitsPerSec).toBeGreaterThan(0);
    expect(looping.throughputBitsPerSec).toBeLessThan(4 * MiB * 8 * 1.3);
    await d.setMigrationParameters(source, { downtimeLimitMs: 300 });
    const done = await finalProgress(d, source);
    expect(done.status).toBe('completed');
    expect(done.transferredBytes).toBeGreaterThan(looping.transferredBytes);
    expect(done.downtimeMs).toBeLessThan(300);
    // The destination checks every page against the memory the source stopped with.
    expect(
      (
        await until(
          () => d.status(destination),
          (s) => s.state !== 'inmigrate',
        )
      ).state,
    ).toBe('running');
    await d.close();
  });
});

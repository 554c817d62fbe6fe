/**
 * The source end of bench:migrate, run by it inside namespace dwcp-a: boots test guests and
 * migrates them, with QEMU's own TCP transport or through MigrationSource (AMST to the sink in
 * dwcp-b). Requests come as JSON lines on stdin (migrate-rpc.ts).
 *
 *   migrate-source --identity DIR
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { FINAL_MIGRATION_STATUSES, type MigrationProgress, QemuDriver } from '@novacron/hypervisor';
import { MigrationSource } from '@novacron/native';
import { guestSpec, nextEvent, RunningGuest } from './migrate-guest';
import {
  type BootReply,
  type BootRequest,
  type MigrateReply,
  type MigrateRequest,
  readIdentity,
  serveRequests,
  stderrLogger,
} from './migrate-rpc';

const { values } = parseArgs({ options: { identity: { type: 'string' } } });
if (values.identity === undefined) throw new Error('usage: migrate-source --identity DIR');
const identity = readIdentity(values.identity);
const driver = new QemuDriver({ dieWithParent: true, logger: stderrLogger('[source]') });
const guests = new Map<string, RunningGuest>();
const sources = new Set<MigrationSource>();

function guest(name: string): RunningGuest {
  const g = guests.get(name);
  if (g === undefined) throw new Error(`no guest ${name} here`);
  return g;
}

async function boot(r: BootRequest): Promise<BootReply> {
  const g = await RunningGuest.boot(driver, guestSpec(r.name, r.memoryMiB));
  guests.set(r.name, g);
  const defaults = await driver.qmp(g.vm).execute<Record<string, unknown>>('query-migrate-parameters');
  return { md5: g.md5, accelerator: g.vm.accelerator, defaults };
}

async function migrate(r: MigrateRequest): Promise<MigrateReply> {
  const { vm, latestSeq } = guest(r.name);
  const qmp = driver.qmp(vm);
  if (r.multifd) {
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }] });
    await qmp.execute('migrate-set-parameters', {
      'multifd-channels': r.multifd.channels,
      'multifd-compression': r.multifd.compression,
    });
  }
  await driver.setMigrationParameters(vm, {
    ...(r.maxBandwidthBytesPerSec === undefined
      ? {}
      : { maxBandwidthBytesPerSec: r.maxBandwidthBytesPerSec }),
    ...(r.downtimeLimitMs === undefined ? {} : { downtimeLimitMs: r.downtimeLimitMs }),
  });
  const all = await qmp.execute<Record<string, unknown>>('query-migrate-parameters');
  const parameters = Object.fromEntries(
    ['max-bandwidth', 'downtime-limit', 'multifd-channels', 'multifd-compression', 'multifd-zstd-level'].map(
      (k) => [k, all[k]],
    ),
  );
  const caps = await qmp.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');

  let source: MigrationSource | undefined;
  let socketDir: string | undefined;
  let uri: `unix:${string}` | `tcp:${string}` = `tcp:${r.host}:${r.port}`;
  if (r.transport === 'dwcp') {
    if (r.dwcp === undefined) throw new Error('a dwcp migration needs its dwcp settings');
    socketDir = await mkdtemp(join(tmpdir(), 'dwcp-mig-src-'));
    source = MigrationSource.start({
      socketPath: join(socketDir, 'source.sock'),
      send: {
        kind: 'tcp',
        host: r.host,
        port: r.port,
        serverName: r.dwcp.serverName,
        identity,
        streams: r.dwcp.streams,
      },
      codec: { codec: 'zstd', level: r.dwcp.zstdLevel },
      ...(r.dwcp.inventoryBase64 ? { inventory: Buffer.from(r.dwcp.inventoryBase64, 'base64') } : {}),
    });
    sources.add(source);
    uri = `unix:${source.socketPath}`;
  }

  const events = driver.events(vm);
  const startedAtMs = Date.now();
  const deadline = startedAtMs + r.capMs;
  let final: MigrationProgress | undefined;
  let didNotFinish = false;
  try {
    await driver.migrate(vm, uri);
    for (;;) {
      final = await driver.queryMigrate(vm);
      if (FINAL_MIGRATION_STATUSES.has(final.status)) break;
      if (!didNotFinish && Date.now() > deadline) {
        didNotFinish = true;
        await driver.cancelMigration(vm).catch(() => undefined);
        source?.cancel();
      }
      await sleep(100);
    }
    const reply: MigrateReply = {
      startedAtMs,
      final,
      didNotFinish,
      stopAtMs: undefined,
      seqAtStart: latestSeq,
      parameters,
      capabilities: caps.filter((c) => c.state).map((c) => c.capability),
    };
    if (final.status === 'completed') {
      reply.stopAtMs = (await nextEvent(events, (e) => e.type === 'stop', 2000))?.atMs;
    }
    if (source) {
      // The source is done once the sink acknowledged every byte; a cancelled one rejects.
      if (final.status !== 'completed') source.cancel();
      await source.finished().then(
        (report) => {
          reply.source = report;
        },
        (e: unknown) => {
          reply.sourceError = `${(e as { code?: string }).code ?? ''} ${(e as Error).message}`;
        },
      );
    }
    return reply;
  } finally {
    await events.return?.();
    if (source) sources.delete(source);
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
  }
}

async function destroy(r: { name: string }): Promise<void> {
  const g = guests.get(r.name);
  guests.delete(r.name);
  if (g) await driver.destroy(g.vm);
}

serveRequests(
  {
    boot: (a) => boot(a as unknown as BootRequest),
    migrate: (a) => migrate(a as unknown as MigrateRequest),
    destroy: (a) => destroy(a as unknown as { name: string }),
  },
  async () => {
    for (const s of sources) s.cancel();
    await driver.close();
  },
);

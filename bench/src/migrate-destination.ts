/**
 * The destination end of bench:migrate, run by it inside namespace dwcp-b: starts each incoming
 * QEMU (its QMP and serial sockets live here too), the MigrationSink that feeds it for DWCP runs,
 * and the one ChunkStore every sink shares; then watches the guest resume and checks it. Requests
 * come as JSON lines on stdin (migrate-rpc.ts).
 *
 *   migrate-destination --identity DIR
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { QemuDriver, type VmEvent, type VmHandle } from '@novacron/hypervisor';
import { ChunkStore, MigrationSink } from '@novacron/native';
import { checkIntact, guestSpec, nextEvent } from './migrate-guest';
import {
  type FinishReply,
  type FinishRequest,
  type InventoryReply,
  type MultifdSetting,
  type PrepareRequest,
  readIdentity,
  serveRequests,
  stderrLogger,
} from './migrate-rpc';

const MiB = 1024 * 1024;

const { values } = parseArgs({ options: { identity: { type: 'string' } } });
if (values.identity === undefined) throw new Error('usage: migrate-destination --identity DIR');
const identity = readIdentity(values.identity);
const work = mkdtempSync(join(tmpdir(), 'dwcp-mig-dst-'));
const store = ChunkStore.open(join(work, 'store'), 4096 * MiB);
const logger = stderrLogger('[destination]');
const driver = new QemuDriver({ dieWithParent: true, logger });
/** One driver per multifd setting: QEMU reads it at start-up (see multifdDriver). */
const multifdDrivers = new Map<string, QemuDriver>();

interface Incoming {
  driver: QemuDriver;
  vm: VmHandle;
  events: AsyncIterableIterator<VmEvent>;
  serial: AsyncIterableIterator<string>;
  sink?: MigrationSink;
}
const incoming = new Map<string, Incoming>();

/**
 * A qemu-system-x86_64 that starts with multifd on. A destination must have multifd before
 * `migrate-incoming` opens its listener (set after it, the source's channels are reset), and
 * QemuDriver issues `migrate-incoming` as soon as QEMU is up; QEMU's `-global migration.*`
 * properties set the capability and parameters from the command line instead.
 */
async function multifdDriver(m: MultifdSetting): Promise<QemuDriver> {
  const key = `${m.channels}-${m.compression}`;
  const known = multifdDrivers.get(key);
  if (known) return known;
  const wrapper = join(work, `qemu-multifd-${key}`);
  writeFileSync(
    wrapper,
    `#!/bin/sh\nexec qemu-system-x86_64 "$@" -global migration.x-multifd=on -global migration.multifd-channels=${m.channels} -global migration.multifd-compression=${m.compression}\n`,
  );
  chmodSync(wrapper, 0o755);
  const accelerator = await driver.warmUp(guestSpec('probe', 64).kernel ?? '');
  const d = new QemuDriver({ qemuBinary: wrapper, accelerator, dieWithParent: true, logger });
  multifdDrivers.set(key, d);
  return d;
}

async function prepare(r: PrepareRequest): Promise<{ port: number; parameters: Record<string, unknown> }> {
  const spec = guestSpec(r.name, r.memoryMiB);
  const d = r.multifd ? await multifdDriver(r.multifd) : driver;
  if (r.transport === 'tcp') {
    const vm = await d.prepareIncoming(spec, `tcp:0.0.0.0:${r.port}`);
    incoming.set(r.name, { driver: d, vm, events: d.events(vm), serial: d.serialLines(vm) });
    const parameters = await d.qmp(vm).execute<Record<string, unknown>>('query-migrate-parameters');
    return { port: r.port, parameters };
  }
  const socketPath = join(work, `${r.name}.sock`);
  const vm = await d.prepareIncoming(spec, `unix:${socketPath}`);
  const entry: Incoming = { driver: d, vm, events: d.events(vm), serial: d.serialLines(vm) };
  incoming.set(r.name, entry);
  entry.sink = await MigrationSink.start(
    {
      socketPath,
      listen: { kind: 'tcp', host: '0.0.0.0', port: r.port, identity, orphanTimeoutMs: 5000 },
    },
    store,
  );
  return { port: entry.sink.port, parameters: {} };
}

function entryOf(name: string): Incoming {
  const e = incoming.get(name);
  if (e === undefined) throw new Error(`no incoming ${name} here`);
  return e;
}

async function finish(r: FinishRequest): Promise<FinishReply> {
  const e = entryOf(r.name);
  const reply: FinishReply = { resumeAtMs: undefined };
  const sinkDone = e.sink?.finished().then(
    (report) => {
      reply.sink = report;
    },
    (error: unknown) => {
      reply.sinkError = `${(error as { code?: string }).code ?? ''} ${(error as Error).message}`;
    },
  );
  const resumed = await nextEvent(
    e.events,
    (ev) => ev.type === 'resume' || ev.type === 'exit' || (ev.type === 'migration' && ev.status === 'failed'),
    r.timeoutMs,
  );
  if (resumed?.type === 'resume') reply.resumeAtMs = resumed.atMs;
  else reply.failure = resumed === undefined ? `no RESUME in ${r.timeoutMs} ms` : JSON.stringify(resumed);
  await sinkDone;
  if (reply.resumeAtMs !== undefined) reply.intact = await checkIntact(e.serial, r.md5);
  if (!reply.intact?.integrityOk && incoming.get(r.name) === e) reply.console = await lastWords(e);
  return reply;
}

/** What the destination QEMU and its guest said last, for a run that went wrong. */
async function lastWords(e: Incoming): Promise<string[]> {
  const said: string[] = [];
  const status = await e.driver.status(e.vm).catch((error: unknown) => ({ state: String(error) }));
  said.push(`status ${JSON.stringify(status)}`);
  let backlog: AsyncIterableIterator<string>;
  try {
    backlog = e.driver.serialLines(e.vm, { replay: true });
  } catch (error) {
    return [...said, String(error)];
  }
  const lines: string[] = [];
  for (;;) {
    const next = await Promise.race([backlog.next(), sleep(200).then(() => undefined)]);
    if (next === undefined || next.done) break;
    lines.push(next.value);
  }
  await backlog.return?.();
  const stderr = (() => {
    try {
      return e.driver.stderrTail(e.vm);
    } catch (error) {
      return String(error);
    }
  })();
  said.push(...lines.slice(-15), `stderr: ${stderr}`);
  return said;
}

async function destroy(r: { name: string }): Promise<void> {
  const e = incoming.get(r.name);
  incoming.delete(r.name);
  if (e === undefined) return;
  e.sink?.cancel();
  await e.events.return?.();
  await e.serial.return?.();
  await e.driver.destroy(e.vm);
}

async function inventory(): Promise<InventoryReply> {
  return store.count > 0
    ? { chunks: store.count, inventoryBase64: store.inventory().toString('base64') }
    : { chunks: 0 };
}

serveRequests(
  {
    prepare: (a) => prepare(a as unknown as PrepareRequest),
    finish: (a) => finish(a as unknown as FinishRequest),
    destroy: (a) => destroy(a as unknown as { name: string }),
    inventory: () => inventory(),
  },
  async () => {
    for (const e of incoming.values()) e.sink?.cancel();
    await Promise.all([driver.close(), ...[...multifdDrivers.values()].map((d) => d.close())]);
    rmSync(work, { recursive: true, force: true });
  },
);

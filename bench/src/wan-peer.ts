/**
 * One end of a WAN benchmark run, started inside a network namespace by wan.bench.ts. Prints
 * one JSON line with what it measured and exits.
 *
 *   wan-peer receive --kind tcp|quic --port P --identity DIR [--path native|js]
 *   wan-peer send    --kind tcp|quic --host H --port P --identity DIR [--path native|js]
 *                    (--bytes N --seed S | --seconds T) [--streams N] [--max-streams N] [--congestion C]
 *   wan-peer record  --kind tcp|quic --host H --port P --identity DIR --seconds T [--sample-ms M]
 *                    [--streams N] [--max-streams N] [--congestion C]
 *
 * `record` sends for T seconds and reports the sender's acknowledged bytes every M ms (default
 * 100; the addon refreshes them every 250 ms), the counter a migration feeds PBA (libs/migration
 * path-steering), for bench:pba:record.
 *
 * The JS path (libs/transport's node:tls reference) is TCP only; both ends print the SHA-256 of
 * the stream, since its data is made in JS.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  AmstListener,
  AmstSender,
  type LinkKind,
  type NodeIdentity,
  type SendOptions,
  sendSynthetic,
} from '@novacron/native';
import { listenJs, sendJs, type TlsIdentity } from '@novacron/transport';

function identity(dir: string): NodeIdentity {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { caPem: read('ca.pem'), certPem: read('node.pem'), keyPem: read('node.key') };
}

/** Every result line carries this process's CPU seconds (all threads, native ones included). */
function out(result: object): void {
  const cpu = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ ...result, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`);
}

function tlsIdentity(dir: string): TlsIdentity {
  const id = identity(dir);
  return { ca: id.caPem, cert: id.certPem, key: id.keyPem };
}

async function receiveJs(port: number, dir: string): Promise<void> {
  const listener = await listenJs({
    host: '0.0.0.0',
    port,
    identity: tlsIdentity(dir),
    orphanTimeoutMs: 3000,
  });
  out({ listening: listener.port });
  const stream = await listener.accept();
  const started = process.hrtime.bigint();
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const piece of stream ?? []) {
      bytes += piece.length;
      hash.update(piece);
    }
    out({
      bytes,
      sha256: hash.digest('hex'),
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
      complete: true,
    });
  } catch (e) {
    out({ bytes, complete: false, error: (e as { code?: string }).code });
  }
  // The JS listener's close() destroys sockets at once and can drop the FIN's ack (see
  // docs/amst.md): give the sender time to have it, then let process exit close the sockets.
  await new Promise((r) => setTimeout(r, 1500));
  process.exit(0);
}

/** 4 MiB of random bytes, written over and over: incompressible, and cheap to make once. */
function incompressiblePiece(): Buffer {
  const piece = Buffer.alloc(4 << 20);
  for (let i = 0; i < piece.length; i += 4) piece.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  return piece;
}

async function sendWithJs(o: SendOptions, bytes: number): Promise<void> {
  const piece = incompressiblePiece();
  const hash = createHash('sha256');
  async function* source(): AsyncGenerator<Buffer> {
    for (let left = bytes; left > 0; left -= piece.length) {
      const p = piece.subarray(0, Math.min(left, piece.length));
      hash.update(p);
      yield p;
    }
  }
  const r = await sendJs(
    {
      host: o.host,
      port: o.port,
      serverName: o.serverName,
      identity: tlsIdentity(DIR),
      streams: o.streams ?? 'adaptive',
    },
    source(),
  );
  const maxStreams = r.connections.length;
  out({
    bytes: r.bytes,
    seconds: r.seconds,
    maxStreams,
    resent: r.stats.framesResent,
    sha256: hash.digest('hex'),
  });
}

let DIR = '.';

async function receive(kind: LinkKind, port: number, dir: string): Promise<void> {
  const listener = await AmstListener.bind({
    kind,
    host: '0.0.0.0',
    port,
    identity: identity(dir),
    orphanTimeoutMs: 3000,
  });
  out({ listening: listener.port });
  const incoming = await listener.accept();
  if (!incoming) throw new Error('listener closed');
  const started = process.hrtime.bigint();
  let bytes = 0;
  try {
    const r = await incoming.drainToHash();
    out({ bytes: r.bytes, blake3: r.blake3, seconds: r.seconds, complete: true });
  } catch (e) {
    out({
      bytes,
      complete: false,
      error: (e as { code?: string }).code,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
    });
  }
  bytes = 0;
}

async function send(
  o: SendOptions,
  bytes: number | undefined,
  seed: number,
  seconds: number | undefined,
): Promise<void> {
  if (bytes !== undefined) {
    const started = process.hrtime.bigint();
    const report = await sendSynthetic(o, bytes, seed);
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    out({
      bytes: report.stats.bytesAcked,
      seconds: elapsed,
      maxStreams: report.maxStreams,
      resent: report.stats.framesResent,
    });
    return;
  }
  // Time-limited: send for `seconds`, then count what was acknowledged.
  const sender = AmstSender.start(o);
  const piece = incompressiblePiece();
  const deadline = Date.now() + (seconds ?? 20) * 1000;
  let maxStreams = 0;
  let firstAckAt: number | undefined;
  const sampler = setInterval(() => {
    const s = sender.stats();
    maxStreams = Math.max(maxStreams, s.connections.length);
    if (firstAckAt === undefined && s.bytesAcked > 0) firstAckAt = s.elapsedSeconds;
  }, 100);
  try {
    while (Date.now() < deadline) await sender.write(piece);
  } finally {
    clearInterval(sampler);
  }
  const s = sender.stats();
  sender.cancel();
  await sender.finished().catch(() => undefined);
  out({
    bytes: s.bytesAcked,
    seconds: s.elapsedSeconds,
    maxStreams,
    resent: s.framesResent,
    timeLimited: true,
  });
}

/**
 * Sends for `seconds` and samples `[elapsedSeconds, bytesAcked]` every `sampleMs`. The deadline
 * does not wait for a write: on a slow path the sender holds up to 64 MiB unacknowledged, and a
 * write can wait for many seconds of it to drain.
 */
async function record(o: SendOptions, seconds: number, sampleMs: number): Promise<void> {
  const startedAtMs = Date.now();
  const sender = AmstSender.start(o);
  const piece = incompressiblePiece();
  const samples: Array<[number, number]> = [];
  let maxStreams = 0;
  const sampler = setInterval(() => {
    const s = sender.stats();
    maxStreams = Math.max(maxStreams, s.connections.length);
    samples.push([s.elapsedSeconds, s.bytesAcked]);
  }, sampleMs);
  let stop = false;
  const writing = (async () => {
    while (!stop) await sender.write(piece);
  })();
  try {
    await Promise.race([writing, new Promise((r) => setTimeout(r, seconds * 1000))]);
  } finally {
    stop = true;
    clearInterval(sampler);
  }
  const s = sender.stats();
  samples.push([s.elapsedSeconds, s.bytesAcked]);
  sender.cancel();
  writing.catch(() => undefined);
  await sender.finished().catch(() => undefined);
  out({ startedAtMs, samples, maxStreams, resent: s.framesResent, bytes: s.bytesAcked });
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      kind: { type: 'string', default: 'tcp' },
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      identity: { type: 'string' },
      bytes: { type: 'string' },
      seed: { type: 'string', default: '1' },
      seconds: { type: 'string' },
      streams: { type: 'string' },
      'max-streams': { type: 'string' },
      congestion: { type: 'string', default: 'default' },
      path: { type: 'string', default: 'native' },
      'sample-ms': { type: 'string', default: '100' },
    },
  });
  const kind = values.kind as LinkKind;
  const dir = values.identity ?? '.';
  DIR = dir;
  const js = values.path === 'js';
  if (positionals[0] === 'receive')
    return js ? receiveJs(Number(values.port), dir) : receive(kind, Number(values.port), dir);
  if (positionals[0] !== 'send' && positionals[0] !== 'record')
    throw new Error('usage: wan-peer receive|send|record ...');
  const options: SendOptions = {
    kind,
    host: values.host ?? '127.0.0.1',
    port: Number(values.port),
    serverName: 'node-b',
    identity: identity(dir),
    congestion: values.congestion as SendOptions['congestion'],
  };
  if (values.streams !== undefined) options.streams = Number(values.streams);
  if (values['max-streams'] !== undefined) options.maxStreams = Number(values['max-streams']);
  const bytes = values.bytes === undefined ? undefined : Number(values.bytes);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (positionals[0] === 'record') return record(options, seconds ?? 60, Number(values['sample-ms']));
  if (js) return sendWithJs(options, bytes ?? 256 << 20);
  return send(options, bytes, Number(values.seed), seconds);
}

main().catch((e: unknown) => {
  out({ error: (e as { code?: string }).code ?? 'ERR_BENCH', message: (e as Error).message });
  process.exit(1);
});

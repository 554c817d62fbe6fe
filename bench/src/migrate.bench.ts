/**
 * `npm run bench:migrate`: live migration of the test guest over each emulated WAN scenario, DWCP
 * (MigrationSource → AMST over N TCP+TLS connections → MigrationSink) against QEMU's own TCP
 * migration (bbr, cubic) and QEMU multifd+zstd; a first migration and a second one of another VM
 * into the same destination store. Needs root: the source runs in namespace dwcp-a, the
 * destination in dwcp-b, joined by bench/wan's user-space emulator. Writes
 * docs/benchmarks/migration.md and migration.json.
 *
 * Environment: DWCP_MIGRATE_SCENARIOS (comma list, default all four), DWCP_MIGRATE_METHODS (comma
 * list of method ids, default all), DWCP_MIGRATE_CAP_S (per-run cap, default 300),
 * DWCP_MIGRATE_MEMORY_MIB (guest RAM, default 128), DWCP_MIGRATE_REPORT (name under
 * docs/benchmarks/, default migration).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { chooseParameters, type MigrationParameterChoice } from '@novacron/migration';
import { ensureGuestBuilt } from './migrate-guest';
import { METHODS, type MigrationMethod, type RunSample, writeReport } from './migrate-report';
import {
  type BootReply,
  type FinishReply,
  type InventoryReply,
  type MigrateReply,
  type MigrateRequest,
  NamespaceChild,
} from './migrate-rpc';
import { writePeerIdentities } from './peer-identities';
import {
  ADDR_B,
  buildEmulator,
  NS_A,
  NS_B,
  namespacesDown,
  namespacesUp,
  REPO,
  type ScenarioPath,
  scenarioPaths,
  sh,
  WAN_IF,
  withEmulator,
} from './wan-path';

const env = process.env;
const SCENARIOS = (env.DWCP_MIGRATE_SCENARIOS ?? 'datacenter,regional,internet,bad-internet').split(',');
const ONLY = env.DWCP_MIGRATE_METHODS?.split(',').filter((m) => m !== '');
const CAP_S = Number(env.DWCP_MIGRATE_CAP_S ?? 300);
const MEMORY_MIB = Number(env.DWCP_MIGRATE_MEMORY_MIB ?? 128);
const REPORT = env.DWCP_MIGRATE_REPORT ?? 'migration';
/** QEMU's max-bandwidth for the uncapped runs: far above any link here. */
const UNCAPPED = 2 ** 40;
const SOURCE = join(REPO, 'bench', 'dist', 'migrate-source.js');
const DESTINATION = join(REPO, 'bench', 'dist', 'migrate-destination.js');

/** What a namespace's wan0 has carried so far, read from /proc/PID/net/dev of a process inside it. */
interface IfCounters {
  rx: number;
  tx: number;
}

function readCounters(pid: number): IfCounters {
  const line = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith(`${WAN_IF}:`));
  if (line === undefined) throw new Error(`no ${WAN_IF} in the namespace of pid ${pid}`);
  const f = (line.split(':')[1] ?? '').trim().split(/\s+/).map(Number);
  return { rx: f[0] ?? Number.NaN, tx: f[8] ?? Number.NaN };
}

/** Both namespaces' counters every 100 ms, the same way for every method. */
class CounterSampler {
  readonly samples: { t: number; a: IfCounters; b: IfCounters }[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pidA: number,
    private readonly pidB: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 100);
  }

  private sample(): void {
    this.samples.push({ t: Date.now(), a: readCounters(this.pidA), b: readCounters(this.pidB) });
  }

  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }

  /**
   * Bytes dwcp-a sent into the path up to `untilMs` (the destination's resume), and the time
   * from the last sample before the first byte to the sample that saw the last one.
   */
  measure(
    untilMs: number,
    stopAtMs: number | undefined,
  ): { wire: number; acks: number; delivered: number; transferS: number; afterStop?: number } {
    const s = this.samples;
    const first = s[0];
    if (first === undefined) throw new Error('no counter samples');
    let end = s.findIndex((x) => x.t > untilMs + 200);
    if (end < 0) end = s.length - 1;
    const last = s[end] ?? first;
    let begin = s.findIndex((x) => x.a.tx > first.a.tx);
    if (begin < 0 || begin > end) begin = end;
    let lastMove = begin;
    for (let i = begin + 1; i <= end; i++) if ((s[i]?.a.tx ?? 0) > (s[i - 1]?.a.tx ?? 0)) lastMove = i;
    const from = s[Math.max(0, begin - 1)]?.t ?? first.t;
    // The last reading before the source stopped: what crossed after it was still in the pipe.
    const atStop = stopAtMs === undefined ? undefined : [...s].reverse().find((x) => x.t <= stopAtMs);
    return {
      wire: last.a.tx - first.a.tx,
      acks: last.a.rx - first.a.rx,
      delivered: last.b.rx - first.b.rx,
      transferS: ((s[lastMove]?.t ?? from) - from) / 1000,
      ...(atStop === undefined ? {} : { afterStop: last.a.tx - atStop.a.tx }),
    };
  }
}

/**
 * The native addon file the children load when they start: others may rebuild it while the bench
 * runs, so each scenario records which build its children had.
 */
function addonBuild(): string {
  const dir = join(REPO, 'native', 'napi');
  const file = readdirSync(dir).find((f) => f.endsWith('.node'));
  if (file === undefined) return 'no .node file';
  const path = join(dir, file);
  const sha = createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 12);
  return `${file} sha256 ${sha}…, written ${statSync(path).mtime.toISOString()}`;
}

function setCongestion(cc: string): void {
  sh('ip', ['netns', 'exec', NS_A, 'sysctl', '-q', '-w', `net.ipv4.tcp_congestion_control=${cc}`]);
}

const ALLOWED_CC = 'net.ipv4.tcp_allowed_congestion_control';
/** The host's allowed list as found, when the bench had to widen it. */
let allowedBefore: string | undefined;

/**
 * A namespace other than the host's may only default to an algorithm on the host's allowed list
 * (EPERM otherwise), and this kernel allows reno and bbr: add the ones the bench needs, until the
 * end of the run. Only what unprivileged sockets may choose changes; the host's default does not.
 */
function allowCongestion(needed: string[]): string | undefined {
  const allowed = sh('sysctl', ['-n', ALLOWED_CC]).trim();
  const missing = needed.filter((cc) => !allowed.split(/\s+/).includes(cc));
  if (missing.length === 0) return undefined;
  allowedBefore = allowed;
  sh('sysctl', ['-q', '-w', `${ALLOWED_CC}=${allowed} ${missing.join(' ')}`]);
  return `${ALLOWED_CC} widened from "${allowed}" to add ${missing.join(', ')} for the run, then restored`;
}

interface ScenarioContext {
  path: ScenarioPath;
  source: NamespaceChild;
  destination: NamespaceChild;
  choice: MigrationParameterChoice;
  kernelCc: string;
  nextPort: () => number;
}

async function runOne(
  ctx: ScenarioContext,
  method: MigrationMethod,
  run: 'first' | 'second',
): Promise<RunSample> {
  const { source, destination, path, choice } = ctx;
  const name = `${path.name}-${method.id}-${run}`;
  const cc = method.congestion === 'kernel-default' ? ctx.kernelCc : method.congestion;
  const sample: RunSample = {
    scenario: path.name,
    method: method.id,
    label: method.label,
    run,
    congestion: cc,
    loadavg: loadavg(),
    status: 'error',
    intact: false,
    notes: [],
  };
  try {
    setCongestion(cc);
    const booted = await source.request<BootReply>('boot', { name, memoryMiB: MEMORY_MIB });
    sample.accelerator = booted.accelerator;
    sample.qemuDefaults = {
      'max-bandwidth': booted.defaults['max-bandwidth'],
      'downtime-limit': booted.defaults['downtime-limit'],
    };
    let inventory: InventoryReply | undefined;
    if (method.transport === 'dwcp') {
      inventory = await destination.request<InventoryReply>('inventory');
      sample.inventoryChunks = inventory.chunks;
    }
    const prepared = await destination.request<{ port: number; parameters: Record<string, unknown> }>(
      'prepare',
      {
        name,
        memoryMiB: MEMORY_MIB,
        transport: method.transport,
        port: ctx.nextPort(),
        ...(method.multifd ? { multifd: method.multifd } : {}),
      },
    );
    if (method.multifd) {
      const p = prepared.parameters;
      sample.notes.push(
        `destination multifd ${String(p['multifd-channels'])}× ${String(p['multifd-compression'])}`,
      );
    }
    const request: MigrateRequest = {
      name,
      transport: method.transport,
      host: ADDR_B,
      port: prepared.port,
      capMs: CAP_S * 1000,
      ...(method.bandwidth === 'uncapped' ? { maxBandwidthBytesPerSec: UNCAPPED } : {}),
      ...(method.multifd ? { multifd: method.multifd } : {}),
    };
    if (method.transport === 'dwcp') {
      request.maxBandwidthBytesPerSec = choice.maxBandwidthBytesPerSec;
      request.downtimeLimitMs = choice.downtimeLimitMs;
      request.dwcp = {
        streams: choice.streams,
        zstdLevel: choice.zstdLevel,
        serverName: 'node-b',
        ...(inventory?.inventoryBase64 ? { inventoryBase64: inventory.inventoryBase64 } : {}),
      };
    }
    const sampler = new CounterSampler(source.pid, destination.pid);
    const finishing = destination.request<FinishReply>('finish', {
      name,
      md5: booted.md5,
      timeoutMs: (CAP_S + 60) * 1000,
    });
    // Awaited below, after the source is done; until then a rejection must not count as unhandled.
    finishing.catch(() => undefined);
    let migrated: MigrateReply;
    try {
      migrated = await source.request<MigrateReply>('migrate', request);
    } catch (error) {
      await destination.request('destroy', { name }).catch(() => undefined);
      await finishing.catch(() => undefined);
      sampler.stop();
      throw error;
    }
    // A migration that ended without completing leaves the destination waiting: end it.
    if (migrated.final.status !== 'completed') await destination.request('destroy', { name });
    const finished = await finishing;
    sampler.stop();
    Object.assign(sample, {
      status: migrated.didNotFinish ? 'did-not-finish' : migrated.final.status,
      parameters: migrated.parameters,
      capabilities: migrated.capabilities,
      qemu: migrated.final,
      source: migrated.source,
      sourceError: migrated.sourceError,
      sink: finished.sink,
      sinkError: finished.sinkError,
      destinationFailure: finished.failure,
      intactReport: finished.intact,
      seqAtStart: migrated.seqAtStart,
      qemuTotalS: (migrated.final.totalTimeMs ?? Number.NaN) / 1000,
      qemuDowntimeMs: migrated.final.downtimeMs,
    });
    const resumeAtMs = finished.resumeAtMs;
    const m = sampler.measure(resumeAtMs ?? Date.now(), migrated.stopAtMs);
    sample.wireBytesAfterStop = m.afterStop;
    sample.wireBytes = m.wire;
    sample.ackBytes = m.acks;
    sample.deliveredBytes = m.delivered;
    sample.transferS = m.transferS;
    sample.utilisation = (m.wire * 8) / (path.rate_mbit * 1e6) / m.transferS;
    sample.counters = sampler.samples.map((x) => [
      x.t - migrated.startedAtMs,
      x.a.tx,
      x.a.rx,
      x.b.rx,
      x.b.tx,
    ]);
    if (resumeAtMs !== undefined) {
      sample.totalS = (resumeAtMs - migrated.startedAtMs) / 1000;
      if (migrated.stopAtMs !== undefined) sample.pauseMs = resumeAtMs - migrated.stopAtMs;
      const intact = finished.intact;
      sample.intact =
        intact?.integrityOk === true &&
        intact.firstSeq !== undefined &&
        intact.firstSeq > migrated.seqAtStart;
      if (!sample.intact) {
        sample.destinationConsole = finished.console;
      }
    }
    if (migrated.didNotFinish) sample.notes.unshift(`did not finish in ${CAP_S} s (migrate_cancel)`);
    else if (migrated.final.status !== 'completed') {
      sample.notes.unshift(`QEMU ${migrated.final.status}: ${migrated.final.errorDesc ?? ''}`);
    }
    if (migrated.sourceError && migrated.final.status === 'completed')
      sample.notes.push(migrated.sourceError);
    if (finished.failure && migrated.final.status === 'completed') sample.notes.push(finished.failure);
  } catch (error) {
    sample.status = 'error';
    sample.notes.push(`FAILED: ${(error as Error).message.split('\n')[0]}`);
  } finally {
    await source.request('destroy', { name }).catch(() => undefined);
    await destination.request('destroy', { name }).catch(() => undefined);
    try {
      setCongestion(ctx.kernelCc);
    } catch (error) {
      log(`could not restore the congestion control: ${(error as Error).message}`);
    }
  }
  return sample;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function describe(s: RunSample): string {
  const f = (x: number | undefined, d: number) => (x === undefined ? '-' : x.toFixed(d));
  return (
    `${s.scenario} ${s.method} ${s.run}: ${s.status}, total ${f(s.totalS, 1)} s, transfer ${f(s.transferS, 1)} s, ` +
    `downtime ${f(s.qemuDowntimeMs, 0)}/${f(s.pauseMs, 0)} ms, wire ${f((s.wireBytes ?? 0) / 1e6, 1)} MB, ` +
    `util ${f((s.utilisation ?? 0) * 100, 0)} %, intact ${s.intact} ${s.notes.join('; ')}`
  );
}

let children: NamespaceChild[] = [];
let ownNamespaces = false;
let cleaning: Promise<void> | undefined;

/** Every QEMU lives under a child; the children destroy theirs, and netns.sh down ends whatever is left. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all(children.map((c) => c.close()));
    children = [];
    if (ownNamespaces) namespacesDown();
    if (allowedBefore !== undefined) sh('sysctl', ['-q', '-w', `${ALLOWED_CC}=${allowedBefore}`]);
  })();
  return cleaning;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:migrate needs root for network namespaces');
  if (
    sh('ip', ['netns', 'list'])
      .split('\n')
      .some((l) => l.startsWith(`${NS_A} `) || l === NS_A)
  ) {
    throw new Error(
      `namespace ${NS_A} exists: another WAN bench may be running (bench/wan/netns.sh down ends it)`,
    );
  }
  ensureGuestBuilt();
  buildEmulator();
  const paths = scenarioPaths();
  for (const s of SCENARIOS) if (!paths.has(s)) throw new Error(`unknown scenario ${s}`);
  const methods = METHODS.filter((m) => !ONLY || ONLY.includes(m.id));
  const ids = writePeerIdentities('migrate-bench');
  const samples: RunSample[] = [];
  const choices: Record<string, MigrationParameterChoice> = {};
  const emulators: Record<string, string> = {};
  const addons: Record<string, string> = {};
  const startLoad = loadavg();
  let port = 23000;
  process.once('SIGINT', () => {
    log('SIGINT: destroying every VM and the namespaces');
    void cleanUp().then(() => process.exit(130));
  });
  const widened = allowCongestion(
    [...new Set(methods.map((m) => m.congestion))].filter((c) => c !== 'kernel-default'),
  );
  if (widened) log(widened);
  ownNamespaces = true;
  namespacesUp();
  try {
    const kernelCc = sh('ip', [
      'netns',
      'exec',
      NS_A,
      'sysctl',
      '-n',
      'net.ipv4.tcp_congestion_control',
    ]).trim();
    for (const scenario of SCENARIOS) {
      const path = paths.get(scenario) as ScenarioPath;
      const choice = chooseParameters({
        bandwidthBytesPerSec: (path.rate_mbit * 1e6) / 8,
        rttMs: 2 * path.delay_ms,
      });
      choices[scenario] = choice;
      log(`${scenario}: DWCP parameters: ${choice.basis}`);
      const { emulator } = await withEmulator(scenario, async () => {
        addons[scenario] = addonBuild();
        const source = new NamespaceChild(NS_A, SOURCE, ['--identity', join(ids, 'node-a')]);
        const destination = new NamespaceChild(NS_B, DESTINATION, ['--identity', join(ids, 'node-b')]);
        children = [source, destination];
        const ctx: ScenarioContext = { path, source, destination, choice, kernelCc, nextPort: () => port++ };
        try {
          for (const method of methods) {
            for (const run of ['first', 'second'] as const) {
              const s = await runOne(ctx, method, run);
              log(describe(s));
              samples.push(s);
            }
          }
        } finally {
          await Promise.all([source.close(), destination.close()]);
          const after = addonBuild();
          if (after !== addons[scenario]) {
            addons[scenario] +=
              ` (replaced during the scenario by ${after}; the children kept the one they loaded)`;
          }
          children = [];
        }
      });
      emulators[scenario] = emulator.trim().split('\n').at(-1) ?? '';
      writeReport(REPORT, {
        samples,
        choices,
        paths,
        scenarios: SCENARIOS,
        capS: CAP_S,
        memoryMiB: MEMORY_MIB,
        startLoad,
        kernelCc,
        hostChanges: widened,
        emulators,
        addons,
      });
    }
  } finally {
    await cleanUp();
  }
}

// Whatever goes wrong, no QEMU, namespace or host setting is left behind.
process.once('uncaughtException', (e) => {
  process.stderr.write(`bench:migrate: ${e.stack ?? String(e)}\n`);
  void cleanUp().finally(() => process.exit(1));
});

main().catch(async (e: unknown) => {
  process.stderr.write(`bench:migrate failed: ${(e as Error).stack ?? String(e)}\n`);
  await cleanUp().catch(() => undefined);
  process.exit(1);
});

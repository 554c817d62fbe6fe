/**
 * `npm run bench:migrate`: live migration of the test guest over each emulated WAN scenario. DWCP
 * is the product itself: two node processes (@novacron/local-cluster), node 1 in namespace dwcp-a
 * and node 2 in dwcp-b, joined by bench/wan's user-space emulator; each migration is asked over
 * node 1's REST API (POST /v1/migrations) and followed through its record, so what runs is the
 * node's own MigrationRun. QEMU alone (one TCP connection with bbr or cubic, multifd+zstd) runs
 * through libs/hypervisor's migrateWithQemuAlone on the same path. Every pause is the guest's real
 * one, source STOP to destination RESUME. A second VM of the same image into the same destination
 * node shows cross-VM dedup. Needs root. Writes docs/benchmarks/migration.md and migration.json.
 *
 * The bench runs itself again inside dwcp-a for each scenario (`--inner SCENARIO --out FILE`), as
 * the demo does, so node 1's loopback API and the source QEMU are where the source host is.
 *
 * Environment: DWCP_MIGRATE_SCENARIOS (comma list, default all four), DWCP_MIGRATE_METHODS (comma
 * list of method ids, default all), DWCP_MIGRATE_CAP_S (per-run cap, default 300),
 * DWCP_MIGRATE_MEMORY_MIB (guest RAM, default 128), DWCP_MIGRATE_REPORT (name under
 * docs/benchmarks/, default migration), DWCP_MIGRATE_NODE_LOGS (a directory for the nodes' logs).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { migrateWithQemuAlone, waitForLine } from '@novacron/hypervisor';
import { freePort, LocalCluster, type NodeProcess, until } from '@novacron/local-cluster';
import { CounterSampler } from './migrate-counters';
import {
  checkIntact,
  cmdlineFor,
  DEFAULT_GUEST,
  DIRTY_HEAVY_GUEST,
  ensureGuestBuilt,
  GUEST_OUT,
  type GuestProfile,
  guestSpec,
  HEARTBEAT,
  INTEGRITY,
  type IntactReport,
  READY,
} from './migrate-guest';
import {
  METHODS,
  type MigrationMethod,
  type RecordPoint,
  type RunSample,
  writeReport,
} from './migrate-report';
import {
  ADDR_A,
  ADDR_B,
  buildEmulator,
  NS_A,
  NS_B,
  namespacesDown,
  namespacesUp,
  REPO,
  scenarioPaths,
  sh,
  withEmulator,
} from './wan-path';

const env = process.env;
const SCENARIOS = (env.DWCP_MIGRATE_SCENARIOS ?? 'datacenter,regional,internet,bad-internet').split(',');
const ONLY = env.DWCP_MIGRATE_METHODS?.split(',').filter((m) => m !== '');
const CAP_S = Number(env.DWCP_MIGRATE_CAP_S ?? 300);
const MEMORY_MIB = Number(env.DWCP_MIGRATE_MEMORY_MIB ?? 128);
const GUESTS = (env.DWCP_MIGRATE_GUESTS ?? 'default,dirty-heavy').split(',');
const HEAVY_SCENARIOS = (env.DWCP_MIGRATE_HEAVY_SCENARIOS ?? 'internet').split(',');
const REPORT = env.DWCP_MIGRATE_REPORT ?? 'migration';
/** A directory for both nodes' last log lines after each DWCP run, to see what the node did. */
const NODE_LOGS = env.DWCP_MIGRATE_NODE_LOGS;
/** QEMU's max-bandwidth for the uncapped runs: far above any link here. */
const UNCAPPED = 2 ** 40;
const SELF = join(REPO, 'bench', 'dist', 'migrate.bench.js');
const IMAGE = 'test-guest';

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * The native addon file the nodes load when they start: others may rebuild it while the bench
 * runs, so each scenario records which build its nodes had.
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

/**
 * A namespace other than the host's may only default to an algorithm on the host's allowed list
 * (EPERM otherwise), and this kernel allows reno and bbr: add the ones the bench needs, until the
 * end of the run. Only what unprivileged sockets may choose changes; the host's default does not.
 */
function allowCongestion(needed: string[]): { before: string; note: string } | undefined {
  const allowed = sh('sysctl', ['-n', ALLOWED_CC]).trim();
  const missing = needed.filter((cc) => !allowed.split(/\s+/).includes(cc));
  if (missing.length === 0) return undefined;
  sh('sysctl', ['-q', '-w', `${ALLOWED_CC}=${allowed} ${missing.join(' ')}`]);
  return {
    before: allowed,
    note: `${ALLOWED_CC} widened from "${allowed}" to add ${missing.join(', ')} for the run, then restored`,
  };
}

// ---- inside dwcp-a: one scenario against a two-node cluster ----

interface Inner {
  scenario: string;
  rateMbit: number;
  methods: MigrationMethod[];
  kernelCc: string;
  guests: GuestProfile[];
}

const imageOf = (g: GuestProfile): string => `${IMAGE}-${g.id}`;

/** The node's image directory for the test guest, with each profile's kernel command line. */
function installImages(imagesDir: string, guests: GuestProfile[]): void {
  for (const g of guests) {
    const dir = join(imagesDir, imageOf(g));
    mkdirSync(dir, { recursive: true });
    for (const f of ['vmlinux', 'initramfs.cpio.gz']) symlinkSync(join(GUEST_OUT, f), join(dir, f));
    writeFileSync(join(dir, 'cmdline'), `${cmdlineFor(g)}\n`);
  }
}

/**
 * The guest profiles a scenario runs: the default one everywhere, the dirty-heavy one on the
 * scenarios in DWCP_MIGRATE_HEAVY_SCENARIOS (default internet: each run there takes up to minutes).
 */
function guestsFor(scenario: string): GuestProfile[] {
  const profiles = [
    { ...DEFAULT_GUEST, memoryMiB: MEMORY_MIB },
    ...(HEAVY_SCENARIOS.includes(scenario) ? [DIRTY_HEAVY_GUEST] : []),
  ];
  return profiles.filter((g) => GUESTS.includes(g.id));
}

async function startCluster(
  cluster: LocalCluster,
): Promise<{ a: NodeProcess; b: NodeProcess; aId: string; bId: string }> {
  const a = await cluster.add({ peerHost: ADDR_A });
  a.start();
  await until('node 1 to lead', async () => (await cluster.statusOf(a))?.role === 'leader', 60_000);
  const b = await cluster.add({ prefix: ['ip', 'netns', 'exec', NS_B], peerHost: ADDR_B });
  // Node 2 cannot reach node 1's loopback API across the namespaces: it is admitted from here.
  await cluster.provision(b, a, `${ADDR_B}:${b.peerPort}`);
  b.start();
  const status = await until(
    'node 2 to join',
    async () => {
      const s = await b.getWhereItRuns<{ nodeId: string; voters: number[]; leaderRaftId: number | null }>(
        '/v1/cluster/status',
        cluster.adminToken,
      );
      return s && s.voters.length === 2 && s.leaderRaftId !== null ? s : undefined;
    },
    90_000,
  );
  return { a, b, aId: (await cluster.statusOf(a))?.nodeId ?? '', bId: status.nodeId };
}

async function consoleOf(n: NodeProcess, vmId: string, token: string): Promise<string[]> {
  return (
    (await n.getWhereItRuns<{ lines: string[] }>(`/v1/vms/${vmId}/console?tail=500`, token))?.lines ?? []
  );
}

/** The destination guest's heartbeat and integrity readings from its console, as checkIntact reads them. */
async function intactOnNode(n: NodeProcess, vmId: string, token: string, md5: string): Promise<IntactReport> {
  let at = 0;
  const lines: AsyncIterator<string> = {
    next: async () => {
      for (;;) {
        const all = await consoleOf(n, vmId, token);
        if (all.length > at) return { done: false, value: all[at++] as string };
        await new Promise((r) => setTimeout(r, 500));
      }
    },
  };
  return checkIntact(lines, md5);
}

/** A process that only sits in a namespace, so its /proc/PID/net/dev reads that namespace's counters. */
function anchor(ns: string): ChildProcess {
  return spawn('ip', ['netns', 'exec', ns, 'sleep', 'infinity'], { stdio: 'ignore' });
}

/** The wire columns, from the interface counters, the same way for every method. */
function fromCounters(
  sample: RunSample,
  sampler: CounterSampler,
  rateMbit: number,
  at: { startedAtMs: number; untilMs: number; stopAtMs: number | undefined },
): void {
  const m = sampler.measure(at.untilMs, at.stopAtMs);
  Object.assign(sample, {
    wireBytes: m.wire,
    wireBytesAfterStop: m.afterStop,
    ackBytes: m.acks,
    deliveredBytes: m.delivered,
    transferS: m.transferS,
    utilisation: (m.wire * 8) / (rateMbit * 1e6) / m.transferS,
    counters: sampler.samples.map((x) => [x.t - at.startedAtMs, x.a.tx, x.a.rx, x.b.rx, x.b.tx]),
  });
}

function recordPoint(record: MigrationRecord, tMs: number): RecordPoint {
  const p = record.path;
  return {
    tMs,
    phase: record.phase,
    bytesIn: record.stats.bytesIn,
    bytesOnWire: record.stats.bytesOnWire,
    ...(p
      ? {
          measuredBytesPerSec: p.measuredBytesPerSec,
          predictedBytesPerSec: p.predictedBytesPerSec,
          maxBandwidthBytesPerSec: p.maxBandwidthBytesPerSec,
          bufferBytes: p.bufferBytes,
          downtimeLimitMs: p.downtimeLimitMs,
          streams: p.streams,
          codec: p.codec,
        }
      : {}),
  };
}

async function dwcpRun(
  ctx: Inner,
  cluster: LocalCluster,
  nodes: Awaited<ReturnType<typeof startCluster>>,
  pidB: number,
  method: MigrationMethod,
  run: 'first' | 'second',
  sample: RunSample,
  guest: GuestProfile,
): Promise<void> {
  const token = cluster.adminToken;
  const { a, b } = nodes;
  const name = `${ctx.scenario}-${guest.id}-${method.id}-${run}`;
  const created = await a.api<VmRecord>('POST', '/v1/vms', token, {
    name,
    image: imageOf(guest),
    vcpus: 1,
    memoryMiB: guest.memoryMiB,
    nodeId: nodes.aId,
  });
  if (created.status !== 201 && created.status !== 200)
    throw new Error(`POST /v1/vms: ${created.status} ${JSON.stringify(created.body)}`);
  const vm = created.body;
  await a.api('POST', `/v1/vms/${vm.id}/start`, token);
  // Migrate a guest whose workload is under way and whose memory checked out once on the source.
  const booted = await until(
    `${name} to boot and check its memory`,
    async () => {
      const lines = await consoleOf(a, vm.id, token);
      const md5 = lines.map((l) => READY.exec(l)?.[1]).find((m) => m !== undefined);
      const check = lines.map((l) => INTEGRITY.exec(l)).find((m) => m !== null);
      const beat = lines.flatMap((l) => HEARTBEAT.exec(l)?.[1] ?? []).at(-1);
      return md5 && check && beat ? { md5, check, beat: Number(beat) } : undefined;
    },
    120_000,
  );
  if (booted.check[1] !== 'ok' || booted.check[2] !== booted.md5) {
    throw new Error(`the guest failed its integrity check before migrating: ${booted.check[0]}`);
  }
  sample.seqAtStart = booted.beat;
  const sampler = new CounterSampler(process.pid, pidB);
  const startedAtMs = Date.now();
  const posted = await a.api<MigrationRecord>('POST', '/v1/migrations', token, {
    vmId: vm.id,
    targetNodeId: nodes.bId,
  });
  if (posted.status !== 201 && posted.status !== 200) {
    sampler.stop();
    throw new Error(`POST /v1/migrations: ${posted.status} ${JSON.stringify(posted.body)}`);
  }
  // Follow the migration's record. Its switching-over phase is committed when the source QEMU
  // has completed, a few ms after its STOP: the bench's STOP time for the after-STOP bytes.
  let record = posted.body;
  const timeline: RecordPoint[] = [];
  let switchingAtMs: number | undefined;
  const deadline = Date.now() + (CAP_S + 60) * 1000;
  while (!['done', 'failed', 'cancelled'].includes(record.phase)) {
    if (Date.now() > deadline) {
      await a.api('POST', `/v1/migrations/${record.id}/cancel`, token).catch(() => undefined);
      sample.notes.unshift(`did not finish in ${CAP_S} s (cancelled)`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
    const r = await a
      .api<MigrationRecord>('GET', `/v1/migrations/${record.id}`, token)
      .catch(() => undefined);
    if (r?.status !== 200) continue;
    record = r.body;
    timeline.push(recordPoint(record, Date.now() - startedAtMs));
    if (record.phase === 'switching-over' && switchingAtMs === undefined)
      switchingAtMs = Date.parse(record.updatedAt);
  }
  const doneAtMs = Date.parse(record.updatedAt);
  sampler.stop();
  const st = record.stats;
  sample.status = record.phase === 'done' ? 'completed' : record.phase;
  if (record.reason) sample.notes.push(record.reason);
  sample.dwcp = {
    migrationId: record.id,
    stats: st,
    ...(record.path ? { path: record.path } : {}),
    timeline,
  };
  sample.pauseMs = st.downtimeMs;
  sample.totalS = st.totalMs === undefined ? undefined : st.totalMs / 1000;
  fromCounters(sample, sampler, ctx.rateMbit, { startedAtMs, untilMs: doneAtMs, stopAtMs: switchingAtMs });
  const predicted = record.path?.predictedBytesPerSec;
  if (predicted !== undefined && sample.wireBytes !== undefined && sample.transferS) {
    const mbit = (bytesPerSec: number) => ((bytesPerSec * 8) / 1e6).toFixed(1);
    sample.notes.push(
      `PBA's last prediction ${mbit(predicted)} Mbit/s of goodput; the transfer averaged ` +
        `${mbit(sample.wireBytes / sample.transferS)} Mbit/s on the wire`,
    );
  }
  if (record.phase === 'done') {
    const intact = await intactOnNode(b, vm.id, token, booted.md5);
    sample.intactReport = intact;
    sample.intact = intact.integrityOk && intact.firstSeq !== undefined && intact.firstSeq > booted.beat;
    if (!sample.intact) sample.destinationConsole = (await consoleOf(b, vm.id, token)).slice(-15);
  }
  if (NODE_LOGS) {
    mkdirSync(NODE_LOGS, { recursive: true });
    writeFileSync(join(NODE_LOGS, `${name}-node1.log`), a.log);
    writeFileSync(join(NODE_LOGS, `${name}-node2.log`), b.log);
  }
  // The chunks stay in node 2's store when the VM goes, which the second VM's run relies on; a
  // deleted VM also stops taking the 2 cores' CPU from the next run.
  await a.api('DELETE', `/v1/vms/${vm.id}`, token).catch(() => undefined);
}

async function qemuRun(
  ctx: Inner,
  pidB: number,
  method: MigrationMethod,
  run: 'first' | 'second',
  sample: RunSample,
  guest: GuestProfile,
): Promise<void> {
  const name = `${ctx.scenario}-${guest.id}-${method.id}-${run}`;
  let md5 = '';
  let sampler: CounterSampler | undefined;
  let intact: IntactReport | undefined;
  const r = await migrateWithQemuAlone({
    spec: guestSpec(name, guest.memoryMiB, cmdlineFor(guest)),
    host: ADDR_B,
    port: await freePort(),
    destinationNamespace: NS_B,
    ...(method.multifd ? { multifd: method.multifd } : {}),
    ...(method.bandwidth === 'uncapped' ? { maxBandwidthBytesPerSec: UNCAPPED } : {}),
    ready: READY,
    capMs: CAP_S * 1000,
    beforeMigrate: async ({ source, sourceVm }) => {
      const lines = source.serialLines(sourceVm, { replay: true });
      md5 = (await waitForLine(lines, READY, { timeoutMs: 90_000 }))[1] ?? '';
      const check = await waitForLine(lines, INTEGRITY, { timeoutMs: 20_000 });
      if (check[1] !== 'ok' || check[2] !== md5)
        throw new Error(`the guest failed its integrity check before migrating: ${check[0]}`);
      sample.seqAtStart = Number((await waitForLine(lines, HEARTBEAT, { timeoutMs: 10_000 }))[1]);
      await lines.return?.();
      const p = await source.qmp(sourceVm).execute<Record<string, unknown>>('query-migrate-parameters');
      sample.parameters = Object.fromEntries(
        ['max-bandwidth', 'downtime-limit', 'multifd-channels', 'multifd-compression'].map((k) => [k, p[k]]),
      );
      sample.accelerator = sourceVm.accelerator;
      sampler = new CounterSampler(process.pid, pidB);
    },
    afterResume: async (destination, vm) => {
      intact = await checkIntact(destination.serialLines(vm, { replay: true }), md5);
    },
  });
  sampler?.stop();
  sample.status = r.status;
  sample.qemu = r.final;
  sample.qemuDowntimeMs = r.final.downtimeMs;
  sample.qemuTotalS = (r.final.totalTimeMs ?? Number.NaN) / 1000;
  if (r.note) sample.notes.unshift(r.note);
  if (r.status === 'completed' && r.resumeAtMs !== undefined) {
    sample.totalS = r.totalMs / 1000;
    sample.pauseMs = r.pauseMs;
  }
  if (sampler) {
    fromCounters(sample, sampler, ctx.rateMbit, {
      startedAtMs: r.startedAtMs,
      untilMs: r.resumeAtMs ?? Date.now(),
      stopAtMs: r.stopAtMs,
    });
  }
  if (intact) {
    const i: IntactReport = intact;
    sample.intactReport = i;
    sample.intact = i.integrityOk && i.firstSeq !== undefined && i.firstSeq > (sample.seqAtStart ?? 0);
  }
}

async function inner(ctx: Inner, out: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'dwcp-migrate-bench-'));
  const images = join(work, 'images');
  installImages(images, ctx.guests);
  const cluster = new LocalCluster(
    [
      '--hypervisor-driver',
      'qemu',
      '--hypervisor-images-dir',
      images,
      // The migration's own log lines (what PBA chose, and when) only where they are kept.
      ...(NODE_LOGS ? ['--log-level', 'info'] : []),
    ],
    join(work, 'nodes'),
  );
  const anchorB = anchor(NS_B);
  const samples: RunSample[] = [];
  try {
    const nodes = await startCluster(cluster);
    log(`${ctx.scenario}: cluster up, node 1 in ${NS_A}, node 2 in ${NS_B}`);
    for (const guest of ctx.guests) {
      for (const method of ctx.methods) {
        // The second run shows cross-VM dedup: the default guest's, not the dirty-heavy one's point.
        const second = method.transport === 'dwcp' && guest.id === DEFAULT_GUEST.id;
        for (const run of second ? (['first', 'second'] as const) : (['first'] as const)) {
          const cc = method.congestion === 'kernel-default' ? ctx.kernelCc : method.congestion;
          const sample: RunSample = {
            scenario: ctx.scenario,
            guest: guest.id,
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
            if (method.transport === 'dwcp')
              await dwcpRun(ctx, cluster, nodes, anchorB.pid ?? 0, method, run, sample, guest);
            else await qemuRun(ctx, anchorB.pid ?? 0, method, run, sample, guest);
          } catch (error) {
            sample.status = 'error';
            sample.notes.push(`FAILED: ${(error as Error).message.split('\n')[0]}`);
          } finally {
            setCongestion(ctx.kernelCc);
          }
          log(describe(sample));
          samples.push(sample);
          writeFileSync(out, JSON.stringify(samples));
        }
      }
    }
  } finally {
    for (const n of cluster.nodes) if (n.running) await n.signal('SIGTERM');
    anchorB.kill();
    rmSync(work, { recursive: true, force: true });
  }
}

function describe(s: RunSample): string {
  const f = (x: number | undefined, d: number) => (x === undefined ? '-' : x.toFixed(d));
  return (
    `${s.scenario} ${s.guest} ${s.method} ${s.run}: ${s.status}, total ${f(s.totalS, 1)} s, transfer ${f(s.transferS, 1)} s, ` +
    `real pause ${f(s.pauseMs, 0)} ms, wire ${f((s.wireBytes ?? 0) / 1e6, 1)} MB ` +
    `(${f((s.wireBytesAfterStop ?? 0) / 1e6, 1)} after STOP), util ${f((s.utilisation ?? 0) * 100, 0)} %, intact ${s.intact} ${s.notes.join('; ')}`
  );
}

// ---- on the host: namespaces, emulator, congestion settings and the report ----

function runInner(scenario: string, out: string): Promise<number | null> {
  const child = spawn(
    'ip',
    ['netns', 'exec', NS_A, process.execPath, SELF, '--inner', scenario, '--out', out],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  return new Promise((res) => child.once('exit', (code) => res(code)));
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
  const samples: RunSample[] = [];
  const emulators: Record<string, string> = {};
  const addons: Record<string, string> = {};
  const startLoad = loadavg();
  const qemuVersion =
    spawnSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? 'unknown';
  const widened = allowCongestion(
    [...new Set(methods.map((m) => m.congestion))].filter((c) => c !== 'kernel-default'),
  );
  if (widened) log(widened.note);
  const restore = () => {
    namespacesDown();
    if (widened) sh('sysctl', ['-q', '-w', `${ALLOWED_CC}=${widened.before}`]);
  };
  process.once('SIGINT', () => {
    log('SIGINT: stopping the nodes and removing the namespaces');
    restore();
    process.exit(130);
  });
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
      const out = join(tmpdir(), `dwcp-migrate-${NS_A}-${scenario}.json`);
      rmSync(out, { force: true });
      addons[scenario] = addonBuild();
      const { emulator, result } = await withEmulator(scenario, () => runInner(scenario, out));
      if (result !== 0) log(`${scenario}: the run inside ${NS_A} exited with ${result}`);
      try {
        samples.push(...(JSON.parse(readFileSync(out, 'utf8')) as RunSample[]));
      } catch {
        log(`${scenario}: no samples`);
      }
      const after = addonBuild();
      if (after !== addons[scenario])
        addons[scenario] += ` (replaced during the scenario by ${after}; the nodes kept the one they loaded)`;
      emulators[scenario] = emulator.trim().split('\n').at(-1) ?? '';
      writeReport(REPORT, {
        samples,
        paths,
        scenarios: SCENARIOS,
        capS: CAP_S,
        memoryMiB: MEMORY_MIB,
        startLoad,
        kernelCc,
        hostChanges: widened?.note,
        emulators,
        addons,
        qemuVersion,
      });
    }
  } finally {
    restore();
  }
}

const { values } = parseArgs({ options: { inner: { type: 'string' }, out: { type: 'string' } } });
const fail = (e: unknown) => {
  process.stderr.write(`bench:migrate failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
};
if (values.inner !== undefined && values.out !== undefined) {
  const scenario = values.inner;
  const path = scenarioPaths().get(scenario);
  if (!path) throw new Error(`unknown scenario ${scenario}`);
  const kernelCc = sh('sysctl', ['-n', 'net.ipv4.tcp_congestion_control']).trim();
  const methods = METHODS.filter((m) => !ONLY || ONLY.includes(m.id));
  inner(
    { scenario, rateMbit: path.rate_mbit, methods, kernelCc, guests: guestsFor(scenario) },
    values.out,
  ).then(() => process.exit(0), fail);
} else {
  main().catch(fail);
}

/**
 * `npm run bench:wan`: goodput of DWCP (TCP, QUIC, adaptive) against one cubic and one bbr TCP
 * stream (iperf3) and one QUIC connection, on each emulated WAN scenario. Needs root: the path
 * runs between two network namespaces through bench/wan's user-space emulator (TUN).
 * Writes docs/benchmarks/wan.md and wan.json.
 *
 * Environment: DWCP_WAN_SCENARIOS (comma list), DWCP_WAN_MIB (bytes per DWCP run, default 256),
 * DWCP_WAN_REPS (default 3), DWCP_WAN_BASELINE_SECONDS (time-limited runs, default 20),
 * DWCP_BENCH_NOTE (a line for the report about the run's conditions, e.g. what else shared the machine).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { syntheticBlake3 } from '@novacron/native';
import { machineInfo, machineMarkdown } from './machine';
import { writePeerIdentities } from './peer-identities';
import {
  ADDR_B,
  buildEmulator,
  exited,
  inNs,
  LINK_MBIT,
  lines,
  NS_A,
  NS_B,
  namespacesDown,
  namespacesUp,
  nextJson,
  REPO,
  sh,
  withEmulator,
} from './wan-path';

const PEER = join(REPO, 'bench', 'dist', 'wan-peer.js');

const scenarios = (process.env.DWCP_WAN_SCENARIOS ?? 'datacenter,regional,internet,bad-internet').split(',');
const MIB = Number(process.env.DWCP_WAN_MIB ?? 256);
const REPS = Number(process.env.DWCP_WAN_REPS ?? 3);
const BASELINE_SECONDS = Number(process.env.DWCP_WAN_BASELINE_SECONDS ?? 20);
/** Run only the cases whose name contains one of these (comma-separated); all when unset. */
const ONLY = process.env.DWCP_WAN_ONLY?.split(',').filter((s) => s !== '');
/** Report name under docs/benchmarks/ (a partial run should not overwrite the full report). */
const REPORT = process.env.DWCP_WAN_REPORT ?? 'wan';
const NOTE = process.env.DWCP_BENCH_NOTE;

/** The 1-minute load average, read every 10 s while the bench runs: other work on the machine shows here. */
interface Load {
  atStart: number[];
  samples: number[];
}

interface Case {
  name: string;
  kind: 'dwcp' | 'baseline' | 'js';
  run: (port: number) => Promise<Sample>;
}

interface Sample {
  mbit: number;
  bytes: number;
  seconds: number;
  /** Sender plus receiver CPU seconds per GB (10^9 bytes) delivered. */
  cpuPerGb?: number;
  note?: string;
}

interface Row {
  scenario: string;
  name: string;
  kind: 'dwcp' | 'baseline' | 'js';
  samples: Sample[];
  meanMbit: number;
  minMbit: number;
  maxMbit: number;
  cpuPerGb: number;
}

async function dwcpRun(
  ids: string,
  port: number,
  kind: 'tcp' | 'quic',
  extra: string[],
  bytes?: number,
): Promise<Sample> {
  const receiver = inNs(NS_B, process.execPath, [
    PEER,
    'receive',
    '--kind',
    kind,
    '--port',
    String(port),
    '--identity',
    join(ids, 'node-b'),
    // The receiving end runs the same path as the sender, so a JS run is JS at both ends.
    ...(extra.includes('js') ? ['--path', 'js'] : []),
  ]);
  const rx = lines(receiver);
  await nextJson(rx); // listening
  const limit =
    bytes === undefined
      ? ['--seconds', String(BASELINE_SECONDS)]
      : ['--bytes', String(bytes), '--seed', String(port)];
  const args = [
    PEER,
    'send',
    '--kind',
    kind,
    '--host',
    ADDR_B,
    '--port',
    String(port),
    '--identity',
    join(ids, 'node-a'),
  ];
  const sender = inNs(NS_A, process.execPath, [...args, ...limit, ...extra]);
  let sent: Record<string, unknown>;
  let got: Record<string, unknown>;
  try {
    sent = await nextJson(lines(sender));
    got = await nextJson(rx);
  } finally {
    sender.kill();
    receiver.kill();
  }
  await Promise.all([exited(sender), exited(receiver)]);
  // A time-limited run ends by cancelling, so only a byte-limited one must complete.
  if (bytes !== undefined && got.complete === false)
    throw new Error(`receiver: ${String(got.error)} after ${String(got.bytes)} bytes`);
  if (typeof sent.error === 'string') throw new Error(`sender: ${sent.error} ${String(sent.message)}`);
  const sample: Sample = {
    bytes: Number(sent.bytes),
    seconds: Number(sent.seconds),
    mbit: (Number(sent.bytes) * 8) / Number(sent.seconds) / 1e6,
    cpuPerGb: (Number(sent.cpuSeconds) + Number(got.cpuSeconds)) / (Number(sent.bytes) / 1e9),
    note: `max ${String(sent.maxStreams)} streams, ${String(sent.resent)} frames resent`,
  };
  if (typeof sent.sha256 === 'string') {
    if (got.sha256 !== sent.sha256)
      throw new Error(`JS path: received SHA-256 ${String(got.sha256)} != sent ${sent.sha256}`);
    sample.note += ', SHA-256 verified';
  } else if (bytes !== undefined) {
    const expected = await syntheticBlake3(bytes, port);
    if (got.blake3 !== expected || got.bytes !== bytes) {
      throw new Error(
        `received stream differs: ${String(got.bytes)} bytes, blake3 ${String(got.blake3)} != ${expected}`,
      );
    }
    sample.note += ', BLAKE3 verified';
  }
  return sample;
}

async function iperf(cc: 'cubic' | 'bbr', port: number): Promise<Sample> {
  const server = inNs(NS_B, 'iperf3', ['-s', '-1', '-p', String(port)]);
  // A fresh one-shot server per run: a long-lived one keeps the previous client's -C setting.
  for (let i = 0; i < 50; i++) {
    const listening = sh('ip', ['netns', 'exec', NS_B, 'ss', '-Hltn', `sport = :${port}`]).trim();
    if (listening !== '') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = inNs(NS_A, 'iperf3', [
    '-c',
    ADDR_B,
    '-p',
    String(port),
    '-t',
    String(BASELINE_SECONDS),
    '-C',
    cc,
    '-J',
  ]);
  let json = '';
  client.stdout?.on('data', (d: Buffer) => {
    json += d.toString();
  });
  await exited(client);
  server.kill();
  const r = JSON.parse(json) as {
    end?: {
      sum_received?: { bits_per_second: number; bytes: number; seconds: number };
      cpu_utilization_percent?: { host_total: number; remote_total: number };
    };
  };
  const sum = r.end?.sum_received;
  if (!sum) throw new Error(`iperf3 ${cc} gave no result: ${json.slice(0, 200)}`);
  const cpu = r.end?.cpu_utilization_percent;
  const cpuSeconds = cpu ? ((cpu.host_total + cpu.remote_total) / 100) * sum.seconds : Number.NaN;
  return {
    mbit: sum.bits_per_second / 1e6,
    bytes: sum.bytes,
    seconds: sum.seconds,
    cpuPerGb: cpuSeconds / (sum.bytes / 1e9),
    note: `iperf3 -C ${cc}`,
  };
}

function cases(ids: string): Case[] {
  const bytes = MIB * 2 ** 20;
  return [
    { name: 'TCP cubic, 1 stream (iperf3)', kind: 'baseline', run: (p) => iperf('cubic', p) },
    { name: 'TCP bbr, 1 stream (iperf3)', kind: 'baseline', run: (p) => iperf('bbr', p) },
    {
      name: 'QUIC, 1 connection (quinn cubic)',
      kind: 'baseline',
      run: (p) => dwcpRun(ids, p, 'quic', ['--streams', '1']),
    },
    {
      name: 'DWCP-TCP, 8 streams (bbr)',
      kind: 'dwcp',
      run: (p) => dwcpRun(ids, p, 'tcp', ['--streams', '8', '--congestion', 'bbr'], bytes),
    },
    {
      name: 'DWCP-QUIC, 8 streams (quinn bbr)',
      kind: 'dwcp',
      run: (p) => dwcpRun(ids, p, 'quic', ['--streams', '8', '--congestion', 'bbr'], bytes),
    },
    {
      name: 'DWCP-adaptive (TCP bbr, 1..16 streams)',
      kind: 'dwcp',
      run: (p) => dwcpRun(ids, p, 'tcp', ['--congestion', 'bbr'], bytes),
    },
    {
      name: 'pure-JS path (node:tls, 8 streams, kernel default bbr)',
      kind: 'js',
      run: (p) => dwcpRun(ids, p, 'tcp', ['--streams', '8', '--path', 'js'], bytes),
    },
  ];
}

function summarize(scenario: string, c: Case, samples: Sample[]): Row {
  const ok = samples.filter((s) => !Number.isNaN(s.mbit));
  const mbits = ok.length > 0 ? ok.map((s) => s.mbit) : [Number.NaN];
  return {
    scenario,
    name: c.name,
    kind: c.kind,
    samples,
    meanMbit: mbits.reduce((a, b) => a + b, 0) / mbits.length,
    minMbit: Math.min(...mbits),
    maxMbit: Math.max(...mbits),
    cpuPerGb: ok.reduce((a, s) => a + (s.cpuPerGb ?? Number.NaN), 0) / Math.max(1, ok.length),
  };
}

function loadMarkdown(load: Load): string {
  const s = load.samples;
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return [
    `- load average at start (1/5/15 min): ${load.atStart.map((l) => l.toFixed(2)).join(' / ')}; 1-min load during the run (every 10 s): mean ${mean.toFixed(2)}, max ${Math.max(...s, 0).toFixed(2)} (the bench's own peers and emulator count too)`,
    ...(NOTE ? [`- conditions: ${NOTE}`] : []),
  ].join('\n');
}

function markdown(rows: Row[], emulators: Record<string, string>, load: Load): string {
  const out = [
    '# WAN benchmark: DWCP goodput against single-stream baselines',
    '',
    'Generated by `npm run bench:wan` (bench/src/wan.bench.ts). Do not edit by hand; rerun it.',
    '',
    machineMarkdown(machineInfo()),
    loadMarkdown(load),
    `- path: two network namespaces joined by bench/wan's user-space TUN emulator (delay, jitter, loss, token-bucket rate cap)`,
    `- DWCP runs move ${MIB} MiB of incompressible data each and check the receiver's BLAKE3; baselines run ${BASELINE_SECONDS} s each`,
    `- each case repeated ${REPS}×; Mbit/s are 10^6 bits of payload per second`,
    '- CPU s/GB: CPU seconds of sender plus receiver (every thread) per 10^9 bytes delivered; for iperf3, from its own host+remote utilisation',
    '- sender and receiver share the 2 cores with the emulator, so at high rates CPU, not the path, can be the limit',
    '',
  ];
  for (const scenario of scenarios) {
    const rs = rows.filter((r) => r.scenario === scenario);
    if (rs.length === 0) continue;
    const link = LINK_MBIT[scenario] ?? Number.NaN;
    out.push(
      `## ${scenario} (link ${link} Mbit/s)`,
      '',
      '| case | mean Mbit/s | min | max | % of link | CPU s/GB (both ends) | runs |',
      '|---|---:|---:|---:|---:|---:|---|',
    );
    for (const r of rs) {
      out.push(
        `| ${r.name} | ${r.meanMbit.toFixed(1)} | ${r.minMbit.toFixed(1)} | ${r.maxMbit.toFixed(1)} | ${((100 * r.meanMbit) / link).toFixed(0)}% | ${r.cpuPerGb.toFixed(1)} | ${r.samples.map((s) => s.note ?? '').join('; ')} |`,
      );
    }
    const best = Math.max(...rs.filter((r) => r.kind === 'dwcp').map((r) => r.meanMbit));
    const cubic = rs.find((r) => r.name.startsWith('TCP cubic'))?.meanMbit ?? Number.NaN;
    const bbr = rs.find((r) => r.name.startsWith('TCP bbr'))?.meanMbit ?? Number.NaN;
    out.push(
      '',
      !Number.isFinite(best)
        ? 'No native DWCP case in this run.'
        : `Best DWCP: ${best.toFixed(1)} Mbit/s = ${((100 * best) / link).toFixed(0)}% of the link, ${(best / cubic).toFixed(1)}× one cubic stream, ${(best / bbr).toFixed(2)}× one bbr stream, ${(best / Math.max(cubic, bbr)).toFixed(2)}× the better single TCP stream.`,
      '',
      `Emulator stats: \`${emulators[scenario] ?? 'n/a'}\``,
      '',
    );
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:wan needs root for network namespaces');
  // iperf3 runs the TCP baselines, ss waits for its listener; as root the installer brings what is missing.
  try {
    sh(join(REPO, 'test', 'tools', 'install.sh'), ['iperf3', 'ss', 'ip']);
  } catch {
    throw new Error(
      'bench:wan needs iperf3, ss and ip (iproute2), and test/tools/install.sh could not install them',
    );
  }
  const load: Load = { atStart: loadavg(), samples: [] };
  const sampler = setInterval(() => load.samples.push(loadavg()[0] ?? Number.NaN), 10_000);
  buildEmulator();
  namespacesUp();
  const ids = writePeerIdentities('wan-bench');
  const rows: Row[] = [];
  const emulators: Record<string, string> = {};
  let port = 20000;
  try {
    for (const scenario of scenarios) {
      const { emulator } = await withEmulator(scenario, async () => {
        for (const c of cases(ids).filter((c) => !ONLY || ONLY.some((o) => c.name.includes(o)))) {
          const samples: Sample[] = [];
          for (let i = 0; i < REPS; i++) {
            // A failed run is reported as such, and the benchmark goes on.
            const s = await c.run(port++).catch(
              (e: unknown): Sample => ({
                mbit: Number.NaN,
                bytes: 0,
                seconds: 0,
                note: `FAILED: ${(e as Error).message}`,
              }),
            );
            process.stderr.write(
              `${scenario.padEnd(13)} ${c.name.padEnd(40)} ${s.mbit.toFixed(1).padStart(8)} Mbit/s  ${s.note ?? ''}\n`,
            );
            samples.push(s);
          }
          rows.push(summarize(scenario, c, samples));
        }
      });
      emulators[scenario] = emulator.trim().split('\n').at(-1) ?? '';
    }
  } finally {
    clearInterval(sampler);
    namespacesDown();
  }
  const dir = join(REPO, 'docs', 'benchmarks');
  mkdirSync(dir, { recursive: true });
  const md = markdown(rows, emulators, load);
  writeFileSync(join(dir, `${REPORT}.md`), md);
  writeFileSync(
    join(dir, `${REPORT}.json`),
    `${JSON.stringify({ machine: machineInfo(), load, note: NOTE, mib: MIB, reps: REPS, rows, emulators }, null, 2)}\n`,
  );
  process.stdout.write(`${md}\nwrote ${join(dir, `${REPORT}.md`)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:wan failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

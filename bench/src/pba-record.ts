/**
 * `npm run bench:pba:record`: records bench:pba's `emulator` trace set. Each recording is one real
 * AMST transfer (TCP+TLS, mutual TLS, adaptive streams, bbr) from namespace dwcp-a to dwcp-b
 * through bench/wan's emulator, on a named scenario or with the rate following a schedule
 * (`--rate-trace`). The sender's acknowledged bytes, what a migration feeds PBA, are sampled every
 * 100 ms (the addon refreshes them every 250 ms) and written as `seconds Mbit/s` lines to bench/traces/emulator/<name>.txt, with a README.
 * Needs root.
 *
 * Environment: DWCP_PBA_RECORD_ONLY (comma list of recording names; the README is then left
 * alone), DWCP_PBA_RECORD_SECONDS (one duration for every recording, for a quick try),
 * DWCP_WAN_NS_A/_B (another namespace pair, to run beside another WAN bench).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { type MachineInfo, machineInfo, machineMarkdown } from './machine';
import { SHIPPED_TRACES } from './pba-traces';
import { writePeerIdentities } from './peer-identities';
import {
  ADDR_B,
  buildEmulator,
  exited,
  inNs,
  lines,
  NS_A,
  NS_B,
  namespacesDown,
  namespacesUp,
  nextJson,
  REPO,
  type ScenarioPath,
  scenarioPaths,
  withEmulator,
} from './wan-path';

const PEER = join(REPO, 'bench', 'dist', 'wan-peer.js');
const OUT_DIR = join(SHIPPED_TRACES, 'emulator');
const SAMPLE_MS = 100;
/** How often the addon refreshes a sender's counters (native/crates/transport send.rs `stats_interval`). */
const COUNTER_REFRESH_MS = 250;
const ONLY = process.env.DWCP_PBA_RECORD_ONLY?.split(',').filter((s) => s !== '');
const SECONDS = process.env.DWCP_PBA_RECORD_SECONDS;

type Schedule = Array<[seconds: number, mbit: number]>;

interface Recording {
  name: string;
  scenario: string;
  seconds: number;
  /** The bottleneck rate over time (emulator clock), replacing the scenario's fixed rate. */
  schedule?: { about: string; steps: Schedule };
}

/**
 * The first `seconds` (plus a margin, since the transfer starts after the emulator) of a held-out
 * public trace, times `scale`, as a rate schedule. An evaluation trace, never a tuning one.
 */
function publicSchedule(file: string, seconds: number, scale: number): Schedule {
  const points = readFileSync(join(SHIPPED_TRACES, file), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(/\s+/).map(Number) as [number, number]);
  const t0 = (points[0] as [number, number])[0];
  const window = points.filter(([t]) => t - t0 <= seconds + 15);
  if (window.some(([, mbit]) => !(mbit > 0)))
    throw new Error(`${file}: an outage (0 Mbit/s) is not emulated`);
  return window.map(([t, mbit]) => [Number((t - t0).toFixed(3)), Number((mbit * scale).toFixed(3))]);
}

function recordings(): Recording[] {
  const s = (d: number): number => (SECONDS === undefined ? d : Number(SECONDS));
  const fcc = 'fcc/evaluation/test_fcc_trace_27175_http---www.amazon.com_720_0';
  const hsdpa = 'hsdpa/evaluation/ferry.nesoddtangen-oslo-report.2011-01-29_1800CET.log';
  return [
    { name: 'internet', scenario: 'internet', seconds: s(90) },
    { name: 'regional', scenario: 'regional', seconds: s(60) },
    { name: 'bad-internet', scenario: 'bad-internet', seconds: s(90) },
    {
      name: 'internet-rate-halves',
      scenario: 'internet',
      seconds: s(90),
      schedule: {
        about: '100 Mbit/s, then 50 from 45 s',
        steps: [
          [0, 100],
          [45, 50],
        ],
      },
    },
    {
      name: 'internet-rate-steps',
      scenario: 'internet',
      seconds: s(90),
      schedule: {
        about: '100 Mbit/s, 30 from 20 s, 70 from 40 s, 15 from 55 s, 100 from 70 s',
        steps: [
          [0, 100],
          [20, 30],
          [40, 70],
          [55, 15],
          [70, 100],
        ],
      },
    },
    {
      name: 'internet-fcc-amazon',
      scenario: 'internet',
      seconds: s(90),
      schedule: {
        about: `the first seconds of ${fcc} (held out), as published`,
        steps: publicSchedule(fcc, s(90), 1),
      },
    },
    {
      name: 'internet-hsdpa-ferry-x10',
      scenario: 'internet',
      seconds: s(90),
      schedule: {
        about: `the first seconds of ${hsdpa} (held out), 10× its rate`,
        steps: publicSchedule(hsdpa, s(90), 10),
      },
    },
  ];
}

interface PeerResult {
  startedAtMs: number;
  samples: Array<[number, number]>;
  maxStreams: number;
  resent: number;
  bytes: number;
}

async function transfer(ids: string, port: number, seconds: number): Promise<PeerResult> {
  const receiver = inNs(NS_B, process.execPath, [
    PEER,
    'receive',
    '--kind',
    'tcp',
    '--port',
    String(port),
    '--identity',
    join(ids, 'node-b'),
  ]);
  const sender = await nextJson(lines(receiver)).then(() =>
    inNs(NS_A, process.execPath, [
      PEER,
      'record',
      '--kind',
      'tcp',
      '--host',
      ADDR_B,
      '--port',
      String(port),
      '--identity',
      join(ids, 'node-a'),
      '--seconds',
      String(seconds),
      '--sample-ms',
      String(SAMPLE_MS),
      '--congestion',
      'bbr',
    ]),
  );
  try {
    const r = await nextJson(lines(sender));
    if (typeof r.error === 'string') throw new Error(`sender: ${r.error} ${String(r.message)}`);
    return r as unknown as PeerResult;
  } finally {
    sender.kill();
    receiver.kill();
    await Promise.all([exited(sender), exited(receiver)]);
  }
}

/**
 * `seconds Mbit/s` lines from cumulative `[seconds, bytes]` samples: each line's rate is the bytes
 * acknowledged until the next sample, so a 1 s bin of the file is exactly the bytes of that second.
 * Time 0 is the last sample before the first acknowledged byte (the handshakes are left out).
 */
export function traceLines(samples: Array<[number, number]>): string[] {
  const first = samples.findIndex(([, bytes]) => bytes > 0);
  if (first < 0) throw new Error('no byte was acknowledged');
  const from = first === 0 ? [[0, 0] as [number, number], ...samples] : samples.slice(first - 1);
  const points = from.filter((p, i) => i === 0 || p[0] > (from[i - 1] as [number, number])[0]);
  const t0 = (points[0] as [number, number])[0];
  const out: string[] = [];
  let mbit = 0;
  for (let i = 0; i < points.length; i++) {
    const [t, bytes] = points[i] as [number, number];
    const next = points[i + 1];
    if (next !== undefined) mbit = ((next[1] - bytes) * 8) / (next[0] - t) / 1e6;
    out.push(`${(t - t0).toFixed(3)} ${mbit.toFixed(3)}`);
  }
  return out;
}

interface Recorded {
  recording: Recording;
  path: ScenarioPath;
  file: string;
  seconds: number;
  meanMbit: number;
  maxStreams: number;
  resent: number;
  /** When the transfer started on the emulator's clock (the schedule's). */
  startOffsetSec: number;
  /** The emulator's drop-tail queue, sized from the first step's rate (bench/wan/README.md). */
  queueBytes: number;
  loadAfter: number;
}

function pathText(p: ScenarioPath, r: Recording): string {
  const rate = r.schedule ? `rate schedule: ${r.schedule.about}` : `${p.rate_mbit} Mbit/s`;
  const jitter = p.jitter_ms > 0 ? ` ± ${p.jitter_ms} ms jitter` : '';
  return `${2 * p.delay_ms} ms RTT${jitter}, ${100 * p.loss} % loss each way, ${rate}`;
}

/** The command as run, with the environment that changed what it did. */
function command(): string {
  const env = ['DWCP_WAN_NS_A', 'DWCP_WAN_NS_B', 'DWCP_PBA_RECORD_SECONDS'].flatMap((k) =>
    process.env[k] ? [`${k}=${process.env[k]}`] : [],
  );
  return [...env, 'npm run bench:pba:record'].join(' ');
}

function readme(machine: MachineInfo, done: Recorded[], minutes: number): string {
  return [
    '# Goodput recorded on the WAN emulator',
    '',
    "The project's own traces, recorded by `npm run bench:pba:record` (bench/src/pba-record.ts) as root;",
    "this file is written by that command. They are under the repository's licence (Apache-2.0, package.json).",
    '',
    "Each file is one real transfer with the product's transport: AMST over TCP+TLS 1.3 with mutual TLS",
    "(the napi addon's `AmstSender`, adaptive stream count, bbr; bench/src/wan-peer.ts `record`) from network",
    `namespace ${NS_A} to ${NS_B} through bench/wan's user-space emulator (TUN), sending incompressible data for`,
    `the whole recording. The sender's acknowledged bytes (\`bytesAcked\`, the counter a migration feeds PBA)`,
    `were sampled every ${SAMPLE_MS} ms; the addon refreshes them every ${COUNTER_REFRESH_MS} ms, so the lines are ${COUNTER_REFRESH_MS} ms apart.`,
    'Each `seconds Mbit/s` line is the rate until the next line, so a whole second of a file holds exactly the',
    'bytes acknowledged in it. Time 0 is the last sample before the first acknowledged byte (the TCP and TLS',
    'handshakes are left out). `#` lines at the top of each file say how it was made.',
    '',
    "A rate schedule (`--rate-trace`) runs on the emulator's clock, which starts a little before the transfer",
    '(the offset column): a step at 45 s shows near 45 s minus the offset in the file. The bottleneck queue is',
    "100 ms of the first step's rate and keeps that size, so a schedule that starts low (the FCC one) runs",
    'behind a queue of a few packets. The public traces used as schedules are evaluation (held-out) traces of',
    'bench/traces/fcc and hsdpa.',
    '',
    "bench:pba reports this set as held out: PBA's model was fitted on the public sets' tuning halves only",
    '(bench/src/pba-fit.ts), and this set has no tuning half.',
    '',
    '| file | emulated path | bottleneck queue | recorded | mean Mbit/s | max streams | frames resent | transfer start on the emulator clock | 1-min load after |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...done.map(
      (d) =>
        `| ${d.file} | \`${d.recording.scenario}\`: ${pathText(d.path, d.recording)} | ${(d.queueBytes / 1000).toFixed(1)} kB | ${d.seconds.toFixed(1)} s | ` +
        `${d.meanMbit.toFixed(1)} | ${d.maxStreams} | ${d.resent} | ${d.startOffsetSec.toFixed(2)} s | ${d.loadAfter.toFixed(2)} |`,
    ),
    '',
    '## Machine',
    '',
    `- command: \`${command()}\` as root`,
    machineMarkdown(machine),
    `- the whole run took ${minutes.toFixed(1)} min; the machine's 2 cores are shared with other work (other`,
    '  sessions, builds), and the sender, the receiver and the emulator share them too, so CPU, not only the',
    '  emulated path, can shape a recording (most on `regional`, 1 Gbit/s)',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench:pba:record needs root for network namespaces');
  const started = Date.now();
  const todo = recordings().filter((r) => !ONLY || ONLY.includes(r.name));
  if (todo.length === 0) throw new Error(`no recording named ${String(ONLY)}`);
  buildEmulator();
  const paths = scenarioPaths();
  namespacesUp();
  const ids = writePeerIdentities('pba-record');
  mkdirSync(OUT_DIR, { recursive: true });
  const machine = machineInfo();
  const done: Recorded[] = [];
  let port = 21000;
  try {
    for (const r of todo) {
      const path = paths.get(r.scenario);
      if (path === undefined) throw new Error(`the emulator has no scenario ${r.scenario}`);
      const flags: string[] = [];
      if (r.schedule) {
        const file = join(tmpdir(), `dwcp-pba-${r.name}.trace`);
        writeFileSync(file, `${r.schedule.steps.map(([t, mbit]) => `${t} ${mbit}`).join('\n')}\n`);
        flags.push('--rate-trace', file);
      }
      const emulatorStartedAt = Date.now();
      const { result, emulator } = await withEmulator(
        r.scenario,
        () => transfer(ids, port++, r.seconds),
        flags,
      );
      const startLine = emulator.split('\n').find((l) => l.includes('"event":"start"'));
      if (startLine === undefined) throw new Error(`the emulator printed no start line: ${emulator}`);
      const queueBytes = Number(
        (JSON.parse(startLine) as { config: { queue_bytes: number } }).config.queue_bytes,
      );
      const body = traceLines(result.samples);
      const last = body.at(-1)?.split(' ')[0];
      const seconds = Number(last);
      const file = `${r.name}.txt`;
      const header = [
        `# recorded by npm run bench:pba:record on ${machine.date.slice(0, 10)}, commit ${machine.commit}; see README.md`,
        `# AMST TCP+TLS, adaptive streams, bbr; the sender's bytesAcked as the addon refreshes it (every ${COUNTER_REFRESH_MS} ms)`,
        `# emulator --scenario ${r.scenario}: ${pathText(path, r)}; queue ${queueBytes} B`,
      ];
      writeFileSync(join(OUT_DIR, file), `${[...header, ...body].join('\n')}\n`);
      const firstAcked = result.samples.find(([, b]) => b > 0)?.[0] ?? 0;
      const d: Recorded = {
        recording: r,
        path,
        file,
        seconds,
        meanMbit: (result.bytes * 8) / Math.max(1e-9, seconds) / 1e6,
        maxStreams: result.maxStreams,
        resent: result.resent,
        startOffsetSec: (result.startedAtMs - emulatorStartedAt) / 1000,
        queueBytes,
        loadAfter: loadavg()[0] ?? Number.NaN,
      };
      done.push(d);
      process.stderr.write(
        `${r.name.padEnd(26)} ${seconds.toFixed(1)} s, mean ${d.meanMbit.toFixed(1)} Mbit/s, max ${d.maxStreams} streams, ` +
          `first ack at ${firstAcked.toFixed(2)} s, start at ${d.startOffsetSec.toFixed(2)} s on the emulator clock\n`,
      );
    }
  } finally {
    namespacesDown();
  }
  const minutes = (Date.now() - started) / 60_000;
  if (ONLY) {
    process.stderr.write(
      `DWCP_PBA_RECORD_ONLY is set: ${relative(REPO, OUT_DIR)}/README.md left as it was\n`,
    );
  } else {
    writeFileSync(join(OUT_DIR, 'README.md'), readme(machine, done, minutes));
  }
  process.stderr.write(
    `wrote ${done.length} traces to ${relative(REPO, OUT_DIR)} in ${minutes.toFixed(1)} min\n`,
  );
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench:pba:record failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}

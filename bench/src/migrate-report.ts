/** The methods bench:migrate compares, one run's measurements, and the report it writes (docs/benchmarks/migration.{md,json}). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MigrationPath, MigrationStats } from '@novacron/cluster-state';
import type { MigrationProgress } from '@novacron/hypervisor';
import { machineInfo, machineMarkdown } from './machine';
import type { IntactReport } from './migrate-guest';
import { DEFAULT_GUEST, DIRTY_HEAVY_GUEST, guestAbout, UNIQUE_PER_BOOT_BYTES } from './migrate-guest';
import { NS_A, NS_B, REPO, type ScenarioPath } from './wan-path';

/** `dwcp`: the node's own migration, asked over its API; `tcp`: QEMU alone (migrateWithQemuAlone). */
export type Transport = 'dwcp' | 'tcp';

export interface MultifdSetting {
  channels: number;
  compression: 'zstd' | 'none';
}

export type MethodId = 'dwcp' | 'qemu-bbr-default' | 'qemu-bbr' | 'qemu-cubic' | 'qemu-multifd-zstd';

export interface MigrationMethod {
  id: MethodId;
  label: string;
  transport: Transport;
  /** The sender's TCP congestion control (net.ipv4.tcp_congestion_control in dwcp-a). */
  congestion: 'kernel-default' | 'bbr' | 'cubic';
  /** QEMU max-bandwidth: chooseParameters' (DWCP), QEMU's own default, or far above the link. */
  bandwidth: 'chosen' | 'default' | 'uncapped';
  multifd?: MultifdSetting;
}

export const METHODS: MigrationMethod[] = [
  { id: 'dwcp', label: 'DWCP', transport: 'dwcp', congestion: 'kernel-default', bandwidth: 'chosen' },
  {
    id: 'qemu-bbr-default',
    label: 'QEMU TCP, bbr, default max-bandwidth',
    transport: 'tcp',
    congestion: 'bbr',
    bandwidth: 'default',
  },
  {
    id: 'qemu-bbr',
    label: 'QEMU TCP, bbr, uncapped',
    transport: 'tcp',
    congestion: 'bbr',
    bandwidth: 'uncapped',
  },
  {
    id: 'qemu-cubic',
    label: 'QEMU TCP, cubic, uncapped',
    transport: 'tcp',
    congestion: 'cubic',
    bandwidth: 'uncapped',
  },
  {
    id: 'qemu-multifd-zstd',
    label: 'QEMU multifd 8× zstd, bbr, uncapped',
    transport: 'tcp',
    congestion: 'bbr',
    bandwidth: 'uncapped',
    multifd: { channels: 8, compression: 'zstd' },
  },
];

/** One migration as measured. Times in s or ms as named, bytes in bytes. */
/** One poll of a DWCP migration's record: where the run was, and what PBA saw and chose then. */
export interface RecordPoint {
  /** ms since the POST. */
  tMs: number;
  phase: string;
  bytesIn?: number;
  bytesOnWire?: number;
  measuredBytesPerSec?: number;
  predictedBytesPerSec?: number;
  maxBandwidthBytesPerSec?: number;
  bufferBytes?: number;
  downtimeLimitMs?: number;
  streams?: number;
  codec?: string;
}

export interface RunSample {
  scenario: string;
  /** The guest profile (bench/src/migrate-guest.ts): `default` or `dirty-heavy`. */
  guest: string;
  method: MethodId;
  label: string;
  run: 'first' | 'second';
  congestion: string;
  /** os.loadavg() when the run began. */
  loadavg: number[];
  status: string;
  intact: boolean;
  notes: string[];
  accelerator?: string;
  /** QEMU-alone runs: the source's migration parameters as it ran with them. */
  parameters?: Record<string, unknown>;
  qemu?: MigrationProgress;
  /** DWCP runs: the node's migration record, as node 1's API gave it at the end. */
  dwcp?: { migrationId: string; stats: MigrationStats; path?: MigrationPath; timeline?: RecordPoint[] };
  intactReport?: IntactReport;
  destinationConsole?: string[];
  seqAtStart?: number;
  /** QEMU alone: `migrate` sent → destination RESUME; DWCP: the record's totalMs (request → done). */
  totalS?: number;
  /** QEMU's own total-time on the source. */
  qemuTotalS?: number;
  transferS?: number;
  qemuDowntimeMs?: number;
  /** Source STOP → destination RESUME, by QEMU's event timestamps. */
  pauseMs?: number;
  wireBytes?: number;
  /** Of wireBytes, those that crossed after the source's STOP: the stream still in buffers then. */
  wireBytesAfterStop?: number;
  ackBytes?: number;
  deliveredBytes?: number;
  utilisation?: number;
  /** [ms since `migrate`, dwcp-a wan0 tx, rx, dwcp-b wan0 rx, tx] every 100 ms. */
  counters?: number[][];
}

export interface ReportInput {
  samples: RunSample[];
  paths: Map<string, ScenarioPath>;
  scenarios: string[];
  capS: number;
  memoryMiB: number;
  startLoad: number[];
  kernelCc: string;
  /** What the bench changed on the host for the run (and restored). */
  hostChanges: string | undefined;
  /** The emulator's start line per scenario: the resolved path and its random seed. */
  emulators: Record<string, string>;
  /** The native addon build each scenario's children loaded. */
  addons: Record<string, string>;
  /** `qemu-system-x86_64 --version`'s first line. */
  qemuVersion: string;
}

const f = (x: number | undefined, digits: number): string =>
  x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);

function command(): string {
  const set = [
    'DWCP_MIGRATE_SCENARIOS',
    'DWCP_MIGRATE_METHODS',
    'DWCP_MIGRATE_CAP_S',
    'DWCP_MIGRATE_MEMORY_MIB',
    'DWCP_MIGRATE_GUESTS',
    'DWCP_MIGRATE_HEAVY_SCENARIOS',
    'DWCP_MIGRATE_REPORT',
  ]
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]}`);
  return [...set, 'npm run bench:migrate'].join(' ');
}

/** What a guest that did not check out left on the destination, in a line. */
function whatWentWrong(s: RunSample): string {
  const r = s.intactReport;
  const seen =
    r?.firstSeq === undefined
      ? 'no heartbeat after the resume'
      : `heartbeat ${r.firstSeq} (source's last before the migration: ${s.seqAtStart ?? '?'}), integrity readings [${r.readings.join(', ')}]`;
  const panic = s.destinationConsole?.find((l) => l.includes('Kernel panic'));
  const status = s.destinationConsole?.[0] ?? '';
  return `${seen}; ${panic ? `the guest kernel: ${panic.replace(/^\[[ \d.]+\] /, '')}` : `QEMU ${status}`}`;
}

function note(s: RunSample): string {
  const parts = [...s.notes];
  if (s.status === 'completed' && !s.intact) parts.unshift(`not intact: ${whatWentWrong(s)}`);
  const st = s.dwcp?.stats;
  if (st) {
    parts.push(
      `node record: ${f((st.bytesIn ?? Number.NaN) / 1e6, 1)} MB from QEMU → ${f((st.bytesOnWire ?? Number.NaN) / 1e6, 1)} MB sent, dedup ratio ${f(st.dedupRatio, 2)}`,
    );
  } else if (s.qemu && s.status === 'completed') {
    parts.push(`QEMU counts ${f(s.qemu.transferredBytes / 1e6, 1)} MB transferred`);
  }
  if (s.wireBytesAfterStop !== undefined && s.status === 'completed') {
    parts.push(`${f(s.wireBytesAfterStop / 1e6, 1)} MB on the wire after the source's STOP`);
  }
  const bw = s.parameters?.['max-bandwidth'];
  if (typeof bw === 'number')
    parts.push(`max-bandwidth ${bw >= 2 ** 40 ? 'uncapped' : `${f(bw / 2 ** 20, 1)} MiB/s`}`);
  if (s.congestion) parts.push(s.congestion);
  return parts.join('; ');
}

function row(s: RunSample): string {
  const wire = s.wireBytes === undefined ? undefined : s.wireBytes / 1e6;
  const finished = s.status === 'completed';
  return `| ${s.label} | ${s.run} | ${finished ? f(s.totalS, 1) : '–'} | ${f(s.transferS, 1)} | ${finished ? `${f(s.qemuDowntimeMs, 0)} / ${f(s.pauseMs, 0)}` : '–'} | ${f(wire, 1)} | ${f((s.utilisation ?? Number.NaN) * 100, 0)} | ${finished ? (s.intact ? 'yes' : 'NO') : '–'} | ${note(s)} |`;
}

function verdict(ok: boolean | undefined): string {
  return ok === undefined ? 'n/a' : ok ? 'met' : 'MISSED';
}

/** Which completed migrations left the guest intact, and what the others left behind. */
function survival(samples: RunSample[]): string[] {
  const completed = samples.filter((s) => s.status === 'completed');
  const broken = completed.filter((s) => !s.intact);
  const out = [
    '## Guest survival',
    '',
    `${completed.length - broken.length} of ${completed.length} completed migrations left the guest intact.`,
  ];
  if (broken.length === 0) return [...out, ''];
  out.push(
    '',
    '| scenario | method | run | real pause ms | what the destination showed | the stream |',
    '|---|---|---|---:|---|---|',
  );
  for (const s of broken) {
    const stream = s.dwcp
      ? "DWCP's (every chunk BLAKE3-verified by the node's sink)"
      : "QEMU's own (its TCP checksums only)";
    out.push(
      `| ${s.scenario} (${s.guest ?? 'default'} guest) | ${s.label} | ${s.run} | ${f(s.pauseMs, 0)} | ${whatWentWrong(s)} | ${stream} |`,
    );
  }
  out.push(
    '',
    "Each such guest's last console lines and QEMU's state are in the JSON (`destinationConsole`).",
    '',
  );
  return out;
}

type Verdict = boolean | undefined;

/** Issue 12's targets ("Done means"), each from this run's samples. */
function targets(samples: RunSample[], capS: number): string[] {
  const get = (scenario: string, method: MethodId, guest = 'default', run: 'first' | 'second' = 'first') =>
    samples.find((s) => s.scenario === scenario && s.guest === guest && s.method === method && s.run === run);
  const done = (s: RunSample | undefined): boolean => s?.status === 'completed';
  const rows: string[] = [];
  const add = (target: string, measured: string, ok: Verdict) =>
    rows.push(`| ${target} | ${measured} | ${verdict(ok)} |`);
  const s1 = (x: number | undefined) => `${f(x, 1)} s`;
  const ms = (x: number | undefined) => `${f(x, 0)} ms`;
  /** DWCP's total against a baseline's, as a ratio; a baseline that did not finish counts as capS. */
  const ratio = (d: RunSample, q: RunSample | undefined, name: string, limit: number, what: string) => {
    if (!q) return;
    if (!done(d)) return add(what, `DWCP did not complete (${d.status})`, false);
    if (!done(q))
      return add(
        what,
        `${name} did not finish in ${capS} s; DWCP ${s1(d.totalS)}, so the ratio is < ${f((d.totalS ?? 0) / capS, 2)}`,
        (d.totalS ?? Number.POSITIVE_INFINITY) <= capS * limit,
      );
    const r = (d.totalS ?? Number.NaN) / (q.totalS ?? Number.NaN);
    add(what, `DWCP ${s1(d.totalS)} / ${name} ${s1(q.totalS)} = ${f(r, 2)}`, r <= limit);
  };
  const qemuMethods: [MethodId, string][] = [
    ['qemu-bbr', 'QEMU TCP bbr (uncapped)'],
    ['qemu-bbr-default', 'QEMU TCP bbr (default max-bandwidth)'],
    ['qemu-cubic', 'QEMU TCP cubic (uncapped)'],
    ['qemu-multifd-zstd', 'QEMU multifd 8× zstd'],
  ];
  const bestQemuPause = (scenario: string, guest = 'default') => {
    const paused = qemuMethods
      .map(([id, name]) => ({ s: get(scenario, id, guest), name }))
      .filter((x): x is { s: RunSample; name: string } => done(x.s) && x.s?.pauseMs !== undefined);
    return paused.sort((a, b) => (a.s.pauseMs ?? 0) - (b.s.pauseMs ?? 0))[0];
  };

  const internet = get('internet', 'dwcp');
  if (internet) {
    ratio(
      internet,
      get('internet', 'qemu-bbr'),
      'QEMU TCP bbr (uncapped)',
      1 / 3,
      'internet: DWCP total ≤ 1/3 of QEMU TCP bbr',
    );
    ratio(
      internet,
      get('internet', 'qemu-multifd-zstd'),
      'QEMU multifd 8× zstd',
      0.7,
      'internet: DWCP total ≤ 0.7 × QEMU multifd 8× zstd',
    );
    const pause = done(internet) ? internet.pauseMs : undefined;
    add(
      'internet: real pause ≤ 500 ms',
      done(internet) ? `DWCP ${ms(pause)}` : `DWCP ${internet.status}`,
      pause === undefined ? false : pause <= 500,
    );
    const best = bestQemuPause('internet');
    if (best)
      add(
        "internet: real pause ≤ the best QEMU method's",
        `DWCP ${ms(pause)}; best QEMU: ${best.name} ${ms(best.s.pauseMs)}`,
        pause === undefined ? false : pause <= (best.s.pauseMs ?? 0),
      );
    const u = internet.utilisation;
    add(
      'internet: link use during the transfer ≥ 85 %',
      `DWCP ${f((u ?? Number.NaN) * 100, 0)} % (${f((internet.wireBytes ?? 0) / 1e6, 1)} MB in ${s1(internet.transferS)} on 100 Mbit/s)`,
      done(internet) && u !== undefined ? u >= 0.85 : false,
    );
    const mf = get('internet', 'qemu-multifd-zstd');
    if (mf) {
      const r = (internet.wireBytes ?? Number.NaN) / (mf.wireBytes ?? Number.NaN);
      add(
        'internet: first migration ≥ 30 % fewer wire bytes than QEMU multifd 8× zstd',
        `DWCP ${f((internet.wireBytes ?? 0) / 1e6, 1)} MB / multifd ${f((mf.wireBytes ?? 0) / 1e6, 1)} MB = ${f(r, 2)}${done(mf) ? '' : ` (multifd ${mf.status})`}`,
        done(internet) && done(mf) ? r <= 0.7 : undefined,
      );
    }
    const second = get('internet', 'dwcp', 'default', 'second');
    if (second) {
      const r = (second.wireBytes ?? Number.NaN) / (internet.wireBytes ?? Number.NaN);
      const st = second.dwcp?.stats;
      const floor = UNIQUE_PER_BOOT_BYTES / (internet.wireBytes ?? Number.NaN);
      add(
        "internet (earlier target): a second VM of the same image ≤ 20 % of the first's wire bytes",
        `${f((second.wireBytes ?? 0) / 1e6, 1)} MB / ${f((internet.wireBytes ?? 0) / 1e6, 1)} MB = ${f(r * 100, 0)} %${
          st
            ? `; dedup ratio ${f(st.dedupRatio, 2)}. Each boot writes ${f(UNIQUE_PER_BOOT_BYTES / 1e6, 1)} MB of fresh random data (init.sh) no store holds: ${f(floor * 100, 0)} % of the first run's wire bytes`
            : ''
        }`,
        done(internet) && done(second) ? r <= 0.2 : undefined,
      );
    }
  }
  const dc = get('datacenter', 'dwcp');
  if (dc) {
    for (const [id, name] of [
      ['qemu-bbr', 'QEMU TCP bbr (uncapped)'],
      ['qemu-bbr-default', 'QEMU TCP bbr (default max-bandwidth)'],
      ['qemu-multifd-zstd', 'QEMU multifd 8× zstd'],
    ] as const) {
      ratio(dc, get('datacenter', id), name, 1, `datacenter: DWCP total ≤ ${name}'s`);
    }
    const pause = done(dc) ? dc.pauseMs : undefined;
    add(
      'datacenter: real pause ≤ 150 ms',
      done(dc) ? `DWCP ${ms(pause)}` : `DWCP ${dc.status}`,
      pause === undefined ? false : pause <= 150,
    );
  }
  const heavy = get('internet', 'dwcp', 'dirty-heavy');
  if (heavy) {
    const pause = done(heavy) ? heavy.pauseMs : undefined;
    add(
      'internet, dirty-heavy guest: DWCP completes with a real pause ≤ 1 s',
      done(heavy)
        ? `DWCP ${s1(heavy.totalS)}, pause ${ms(pause)}`
        : `DWCP ${heavy.status}: ${heavy.notes.join('; ')}`,
      pause === undefined ? false : pause <= 1000,
    );
    ratio(
      heavy,
      get('internet', 'qemu-bbr', 'dirty-heavy'),
      'QEMU TCP bbr (uncapped)',
      1,
      'internet, dirty-heavy guest: DWCP in less time than QEMU plain',
    );
  }
  if (rows.length === 0) return [];
  return [
    '## Targets (issue 12, first runs unless named)',
    '',
    '| target | measured | |',
    '|---|---|---|',
    ...rows,
    '',
  ];
}

/** One line when every scenario ran the same addon build, else one per scenario. */
function addonLines(r: ReportInput): string[] {
  const builds = r.scenarios.filter((s) => r.addons[s] !== undefined).map((s) => [s, r.addons[s]]);
  if (new Set(builds.map(([, b]) => b)).size <= 1) return [`- native addon: ${builds[0]?.[1] ?? 'n/a'}`];
  return [
    '- native addon: **rebuilt by other work while the bench ran**; each scenario used the build its children loaded:',
    ...builds.map(([s, b]) => `  - ${s}: ${b}`),
  ];
}

export function markdown(r: ReportInput): string {
  const loads = r.samples.map((s) => s.loadavg[0] ?? Number.NaN);
  const accel = [...new Set(r.samples.map((s) => s.accelerator).filter((a) => a !== undefined))].join(', ');
  const defaults = r.samples.find((s) => s.method === 'qemu-bbr-default')?.parameters ?? {};
  const defaultBw = Number(defaults['max-bandwidth']);
  const out = [
    '# Live migration over the emulated WAN: DWCP against QEMU',
    '',
    'Generated by `npm run bench:migrate` (bench/src/migrate.bench.ts). Do not edit by hand; rerun it.',
    '',
    `Command (as root): \`${command()}\``,
    '',
    machineMarkdown(machineInfo()),
    `- load average (1 min) at the start ${f(r.startLoad[0], 2)}; at the start of each run between ${f(Math.min(...loads), 2)} and ${f(Math.max(...loads), 2)} (each run's in the JSON). The machine has 2 cores, and the load averages say how much else ran on them; source QEMU, destination QEMU, both node processes, the emulator and the data path all run on them too`,
    ...addonLines(r),
    `- QEMU: ${r.qemuVersion}, ${accel || 'n/a'} (QemuDriver's accelerator choice); each table names its guest`,
    `- path: namespaces ${NS_A} (node 1 and its source QEMU; the QEMU-alone source) and ${NS_B} (node 2 and its destination QEMU; the QEMU-alone destination) joined by bench/wan's user-space TUN emulator. Node 1 and node 2 form one two-voter Raft cluster (@novacron/local-cluster), Raft and mutual TLS over the emulated path`,
    ...(r.hostChanges ? [`- host: ${r.hostChanges}`] : []),
    `- each run is capped at ${r.capS} s: one that has not completed by then is cancelled (migrate_cancel) and reported as not finished`,
    '',
    '## How each column is measured',
    '',
    "- **total s**: QEMU alone: `migrate` sent to the source QEMU → the destination QEMU's RESUME event (QEMU's event timestamps, both on this host's clock). DWCP: the node's own `totalMs` in the migration record, from the request to done, so it also includes starting the destination QEMU, the data path's drain and destroying the source.",
    "- **transfer s**: dwcp-a's wan0 counters are read every 100 ms (/proc/PID/net/dev of the process in the namespace); from the last reading before the first busy 100 ms (≥ 50 kB sent: the cluster's own Raft traffic never is) to the end of the last busy one before the resume. So it is ±0.1 s, too coarse for the sub-second transfers of datacenter and regional, whose utilisation is only indicative.",
    "- **downtime ms**: QEMU = `downtime` from query-migrate on the source (QEMU-alone runs only; a different measure, shown for reference); real pause = source STOP event → destination RESUME event, the same for every method: for QEMU alone measured by migrateWithQemuAlone (libs/hypervisor), for DWCP by the node's MigrationRun, whose record's `downtimeMs` is that pause.",
    "- **wire MB**: dwcp-a's wan0 tx_bytes from before the migration to the destination's resume (10^6 bytes): every IP packet the source side put on the path, with TCP/TLS headers and retransmissions; the same counter for every method. The JSON also has what dwcp-b received and the acks. The notes give the part of it that crossed after the source's STOP (from the last reading before STOP to the resume, so also ±0.1 s): stream QEMU had already handed over but that was still in buffers when the guest paused. For DWCP the bench does not see the QMP events, so it takes as STOP the `updatedAt` of the record's switching-over phase (committed once the source QEMU completed, which is its STOP plus its own few-ms stop-and-copy plus a Raft commit) and as the end the record's done; so DWCP's after-STOP bytes are a slight underestimate.",
    '- **utilisation %**: wire bytes × 8 ÷ link rate ÷ transfer s.',
    "- **intact**: on the destination the heartbeat continues past the source's last one, and two DWCP-INTEGRITY readings in a row pass with the checksum the guest printed when ready (a reading straddling the switchover was once misreported, so one is not trusted; up to three are read).",
    "- **runs**: first = a freshly booted VM migrated to node 2, whose chunk store is empty; second (default guest only) = another VM booted from the same image on node 1 and migrated to the same node 2, whose store holds the first VM's chunks (cross-VM dedup). The QEMU methods run once. The dirty-heavy guest runs on the scenarios in DWCP_MIGRATE_HEAVY_SCENARIOS (default `internet`).",
    `- **QEMU methods**: migrateWithQemuAlone (libs/hypervisor, the helper the demo uses too): \`migrate tcp:10.77.0.2:PORT\` into a destination started with \`-incoming defer\` + \`migrate-incoming tcp:10.77.0.2:PORT\`, followed with followMigration; congestion control set with sysctl in dwcp-a (this kernel's default: ${r.kernelCc}); QEMU's default downtime-limit (${String(defaults['downtime-limit'] ?? '?')} ms). QEMU's default max-bandwidth, read from query-migrate-parameters, is ${f(defaultBw / 2 ** 20, 0)} MiB/s (${f((defaultBw * 8) / 1e6, 0)} Mbit/s), not 32 MiB/s; "uncapped" sets 2^40 B/s. The default-capped run is bbr only: cubic is the same cap on a slower sender.`,
    "- **multifd**: capability multifd, multifd-channels 8, multifd-compression zstd on both ends (this QEMU has zstd for multifd). The destination gets them from `-global migration.x-multifd=on -global migration.multifd-channels=8 -global migration.multifd-compression=zstd`, because QemuDriver sends `migrate-incoming` as soon as QEMU is up and multifd set after that makes QEMU reset the source's channels.",
    "- **DWCP**: the product: `POST /v1/migrations {vmId, targetNodeId}` on node 1's REST API, then `GET /v1/migrations/:id` every 100 ms until done. Node 1's MigrationRun: QEMU → unix socket → MigrationSource (HDE: FastCDC chunks, BLAKE3, zstd) → AMST over TCP+TLS connections (kernel default congestion control) → node 2's sink → its QEMU. The parameters are the node's own choice, as in any real migration: chooseParameters from what PBA knows of the path (before any transfer, Raft's RTT), then the source's probe over its own connections before QEMU starts and PBA's samples during the transfer (docs/pba.md); the bench tells it nothing about the link. Each run's record timeline (phase, PBA's measured and predicted goodput, buffer, downtime-limit) is in the JSON (`dwcp.timeline`).",
    '',
  ];
  for (const scenario of r.scenarios) {
    for (const guest of [...new Set(r.samples.map((s) => s.guest ?? 'default'))]) {
      const rows = r.samples.filter((s) => s.scenario === scenario && (s.guest ?? 'default') === guest);
      if (rows.length === 0) continue;
      const p = r.paths.get(scenario);
      const profile =
        guest === DIRTY_HEAVY_GUEST.id ? DIRTY_HEAVY_GUEST : { ...DEFAULT_GUEST, memoryMiB: r.memoryMiB };
      out.push(
        `## ${scenario}, ${guest} guest: ${p?.about ?? ''}`,
        '',
        `Guest: ${guestAbout(profile)}.`,
        '',
        '| method | run | total s | transfer s | downtime ms (QEMU / real pause) | wire MB | utilisation % | intact | note |',
        '|---|---|---:|---:|---:|---:|---:|---|---|',
        ...rows.map(row),
        '',
      );
    }
  }
  out.push(...survival(r.samples), ...targets(r.samples, r.capS));
  return out.join('\n');
}

export function writeReport(name: string, r: ReportInput): void {
  const dir = join(REPO, 'docs', 'benchmarks');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.md`), markdown(r));
  const json = {
    machine: machineInfo(),
    command: command(),
    capS: r.capS,
    memoryMiB: r.memoryMiB,
    startLoad: r.startLoad,
    kernelCongestionControl: r.kernelCc,
    hostChanges: r.hostChanges,
    scenarios: r.scenarios.map((s) => r.paths.get(s)),
    emulators: r.emulators,
    addons: r.addons,
    qemuVersion: r.qemuVersion,
    samples: r.samples,
  };
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(json)}\n`);
}

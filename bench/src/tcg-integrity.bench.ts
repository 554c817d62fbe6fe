/**
 * `npm run bench:tcg`: does the destination guest get every write the source guest made, when
 * QEMU (the one on PATH: 7.2 lost writes, 10.0 does not) runs it under TCG? QEMU alone is paced four ways (no DWCP in the path); DWCP's native
 * data path runs twice, with QEMU capped as DWCP used to cap it and with the node's own choice.
 * Each round is a freshly booted test guest. QEMU alone migrates into a destination started with
 * `-S`, so both RAMs can be saved (`pmemsave`) and compared page by page before the destination
 * runs; then every destination's console is watched for two good integrity checks and for trouble.
 * Writes docs/benchmarks/tcg-integrity-qemu-<major.minor>.md and .json, one report per QEMU version.
 *
 * Environment: DWCP_TCG_ROUNDS (rounds per case, default 6), DWCP_TCG_CASES (comma list of case
 * ids, default all).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type MigrationProgress, QemuDriver, type VmHandle, waitForLine } from '@novacron/hypervisor';
import {
  IncomingMigration,
  type MigrationHypervisor,
  MigrationRun,
  type MigrationRunOptions,
} from '@novacron/migration';
import { testDataPaths } from './data-paths';
import { LoopbackLink } from './loopback-link';
import { type MachineInfo, machineInfo, machineMarkdown } from './machine';
import {
  type ConsoleWatch,
  ensureGuestBuilt,
  GUEST_ABOUT,
  guestSpec,
  HEARTBEAT,
  READY,
  watchConsole,
} from './migrate-guest';
import { StreamTap, type TapReading, tappedSink, tappedSource } from './stream-tap';
import { REPO, sh } from './wan-path';

const ROUNDS = Number(process.env.DWCP_TCG_ROUNDS ?? 6);
const ONLY = process.env.DWCP_TCG_CASES?.split(',').filter((c) => c !== '');
const MEMORY_MIB = 128;
const PAGE = 4096;
/** The slow link and the old cap: 12 MB/s. */
const LINK = 12_000_000;
/** QEMU's max-bandwidth when QEMU alone runs uncapped: far above anything here. */
const UNCAPPED = 2 ** 40;
/** How long a migration may take before it is cancelled. */
const CAP_MS = 180_000;
const PAGES_LISTED = 16;

type Case =
  | {
      id: string;
      what: string;
      method: 'qemu';
      maxBandwidthBytesPerSec: number;
      /** The stream goes through a unix-socket link this slow, when set. */
      linkBytesPerSec?: number;
      downtimeLimitMs: number;
    }
  | { id: string; what: string; method: 'dwcp'; options: MigrationRunOptions };

const CASES: Case[] = [
  {
    id: 'qemu-loopback',
    what: 'QEMU alone, uncapped, unix socket at full speed (control), downtime-limit 300 ms',
    method: 'qemu',
    maxBandwidthBytesPerSec: UNCAPPED,
    downtimeLimitMs: 300,
  },
  {
    id: 'qemu-link-300',
    what: 'QEMU alone, uncapped, through a 12 MB/s link, downtime-limit 300 ms',
    method: 'qemu',
    maxBandwidthBytesPerSec: UNCAPPED,
    linkBytesPerSec: LINK,
    downtimeLimitMs: 300,
  },
  {
    id: 'qemu-capped-300',
    what: 'QEMU alone, max-bandwidth 12 MB/s, downtime-limit 300 ms (what DWCP did before)',
    method: 'qemu',
    maxBandwidthBytesPerSec: LINK,
    downtimeLimitMs: 300,
  },
  {
    id: 'qemu-link-40',
    what: 'QEMU alone, uncapped, through a 12 MB/s link, downtime-limit 40 ms',
    method: 'qemu',
    maxBandwidthBytesPerSec: UNCAPPED,
    linkBytesPerSec: LINK,
    downtimeLimitMs: 40,
  },
  {
    id: 'dwcp-capped',
    what: 'DWCP native data path over a 12 MB/s link, max-bandwidth 12 MB/s passed in (the old capped behaviour)',
    method: 'dwcp',
    options: { measured: { bandwidthBytesPerSec: LINK, rttMs: 1 }, maxBandwidthBytesPerSec: LINK },
  },
  {
    id: 'dwcp-chosen',
    what: "DWCP native data path over a 12 MB/s link, the node's own choice from the measured path",
    method: 'dwcp',
    options: { measured: { bandwidthBytesPerSec: LINK, rttMs: 1 } },
  },
];

interface RoundResult {
  case: string;
  round: number;
  /** os.loadavg() when the round began (before the guest booted). */
  loadavg: number[];
  /** QEMU's final status on the source (QEMU alone) or MigrationRun's phase (DWCP). */
  status: string;
  reason?: string;
  /** Precopy rounds QEMU synced the dirty bitmap for, from the source's last query-migrate. */
  dirtySyncCount?: number;
  pauseMs?: number;
  /** `STOP→RESUME` (QMP timestamps) or `QEMU downtime` (with -S the resume is ours, so QEMU's own figure). */
  pauseIs: 'STOP→RESUME' | 'QEMU downtime';
  /** From `migrate` (or `run()`) until both sides were done, ms. */
  totalMs: number;
  /** QEMU's parameters as set: max-bandwidth, downtime-limit (and, for DWCP, MigrationRun's basis). */
  maxBandwidthBytesPerSec: number;
  downtimeLimitMs: number;
  basis?: string;
  /** 4 KiB pages whose content differs between source and destination RAM (QEMU alone only). */
  pagesDiffering?: number;
  /** Guest-physical addresses of the first differing pages. */
  differingPages?: string[];
  integrityOk: number;
  trouble?: string;
  /** The destination QEMU's run state once its console was watched (`exited` when it is gone). */
  destinationAfter?: string;
  /** The taps at both ends of DWCP's data path; `equal` when the destination QEMU got what the source wrote. */
  stream?: { source: TapReading; sink: TapReading; equal: boolean };
  /** Connections and bytes the 12 MB/s link carried. */
  link?: { connections: number; bytes: number };
  /** The guest was not well afterwards: trouble, fewer than two good checks, or no migration. */
  broken: boolean;
  /** The migration's log lines (DWCP) and, when broken, the console's last lines. */
  log: string[];
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A fresh test guest, once it has filled its memory; `md5` is the checksum it printed then. */
async function bootGuest(driver: QemuDriver, name: string): Promise<{ vm: VmHandle; md5: string }> {
  const vm = await driver.launch(guestSpec(name, MEMORY_MIB));
  const lines = driver.serialLines(vm, { replay: true });
  try {
    const md5 = (await waitForLine(lines, READY, { timeoutMs: 90_000, what: 'DWCP-READY' }))[1] as string;
    await waitForLine(lines, HEARTBEAT, { timeoutMs: 15_000, what: 'a heartbeat' });
    return { vm, md5 };
  } finally {
    await lines.return?.();
  }
}

/** A qemu-system-x86_64 that starts paused (`-S`): an incoming guest stays stopped after the migration. */
function pausedQemu(dir: string): string {
  const path = join(dir, 'qemu-paused');
  writeFileSync(path, '#!/bin/sh\nexec qemu-system-x86_64 "$@" -S\n');
  chmodSync(path, 0o755);
  return path;
}

const SETTLED = new Set(['completed', 'failed', 'cancelled']);

/** query-migrate until the migration settled on this side, or undefined when QEMU stopped answering. */
async function settled(
  driver: QemuDriver,
  vm: VmHandle,
  deadline: number,
): Promise<MigrationProgress | undefined> {
  for (;;) {
    let progress: MigrationProgress;
    try {
      progress = await driver.queryMigrate(vm);
    } catch {
      return undefined;
    }
    if (SETTLED.has(progress.status) || performance.now() > deadline) return progress;
    await sleep(100);
  }
}

/** Both guests' RAM saved by QEMU and compared: the 4 KiB pages that differ. */
async function differingPages(
  source: { driver: QemuDriver; vm: VmHandle },
  destination: { driver: QemuDriver; vm: VmHandle },
  dir: string,
): Promise<number[]> {
  const size = MEMORY_MIB * 2 ** 20;
  const images: Buffer[] = [];
  for (const [i, side] of [source, destination].entries()) {
    const filename = join(dir, `ram-${i}`);
    await side.driver.qmp(side.vm).execute('pmemsave', { val: 0, size, filename });
    images.push(readFileSync(filename));
    rmSync(filename);
  }
  const [a, b] = images as [Buffer, Buffer];
  const pages: number[] = [];
  for (let at = 0; at < size; at += PAGE) {
    if (a.compare(b, at, at + PAGE, at, at + PAGE) !== 0) pages.push(at);
  }
  return pages;
}

async function qemuAloneRound(
  c: Extract<Case, { method: 'qemu' }>,
  round: number,
  drivers: { source: QemuDriver; paused: QemuDriver },
  dir: string,
): Promise<RoundResult> {
  const load = loadavg();
  const name = `${c.id}-${round}`;
  const { vm, md5 } = await bootGuest(drivers.source, name);
  const socket = join(dir, `${name}.sock`);
  const destination = await drivers.paused.prepareIncoming(
    guestSpec(`${name}-in`, MEMORY_MIB),
    `unix:${socket}`,
  );
  const link =
    c.linkBytesPerSec === undefined ? undefined : new StreamTap(`${socket}.link`, socket, c.linkBytesPerSec);
  await link?.listen();
  const result: RoundResult = {
    case: c.id,
    round,
    loadavg: load,
    status: 'none',
    pauseIs: 'QEMU downtime',
    totalMs: 0,
    maxBandwidthBytesPerSec: c.maxBandwidthBytesPerSec,
    downtimeLimitMs: c.downtimeLimitMs,
    integrityOk: 0,
    broken: true,
    log: [],
  };
  try {
    await drivers.source.setMigrationCapabilities(vm, { autoConverge: true });
    await drivers.source.setMigrationParameters(vm, {
      maxBandwidthBytesPerSec: c.maxBandwidthBytesPerSec,
      downtimeLimitMs: c.downtimeLimitMs,
    });
    const started = performance.now();
    const deadline = started + CAP_MS;
    await drivers.source.migrate(vm, `unix:${link?.path ?? socket}`);
    const final = await settled(drivers.source, vm, deadline);
    const incoming = await settled(drivers.paused, destination, deadline + 10_000);
    result.totalMs = Math.round(performance.now() - started);
    result.status = final?.status ?? 'source gone';
    if (final?.dirtySyncCount !== undefined) result.dirtySyncCount = final.dirtySyncCount;
    if (final?.downtimeMs !== undefined) result.pauseMs = final.downtimeMs;
    if (final?.status !== 'completed' || incoming?.status !== 'completed') {
      result.reason = `source ${final?.status ?? 'gone'}${final?.errorDesc ? ` (${final.errorDesc})` : ''}, destination ${incoming?.status ?? 'gone'}`;
      if (final?.status === 'active') await drivers.source.cancelMigration(vm).catch(() => undefined);
      return result;
    }
    const pages = await differingPages(
      { driver: drivers.source, vm },
      { driver: drivers.paused, vm: destination },
      dir,
    );
    result.pagesDiffering = pages.length;
    result.differingPages = pages.slice(0, PAGES_LISTED).map((at) => `0x${at.toString(16)}`);
    const lines = drivers.paused.serialLines(destination, { replay: true });
    await drivers.paused.cont(destination);
    judge(result, await watchConsole(lines, md5));
    result.destinationAfter = await stateOf(drivers.paused, destination);
    return result;
  } finally {
    await link?.close();
    await drivers.paused.destroy(destination);
    await drivers.source.destroy(vm);
  }
}

/** The source driver as MigrationRun sees it, keeping the last query-migrate reading the run took. */
function keepingProgress(driver: QemuDriver): {
  hypervisor: MigrationHypervisor;
  last: () => MigrationProgress | undefined;
} {
  let last: MigrationProgress | undefined;
  const hypervisor: MigrationHypervisor = {
    status: (vm) => driver.status(vm),
    cont: (vm) => driver.cont(vm),
    destroy: (vm) => driver.destroy(vm),
    setMigrationParameters: (vm, p) => driver.setMigrationParameters(vm, p),
    setMigrationCapabilities: (vm, c) => driver.setMigrationCapabilities(vm, c),
    migrate: (vm, uri) => driver.migrate(vm, uri),
    queryMigrate: async (vm) => {
      last = await driver.queryMigrate(vm);
      return last;
    },
    cancelMigration: (vm) => driver.cancelMigration(vm),
    events: (vm) => driver.events(vm),
  };
  return { hypervisor, last: () => last };
}

async function dwcpRound(
  c: Extract<Case, { method: 'dwcp' }>,
  round: number,
  driver: QemuDriver,
  dir: string,
): Promise<RoundResult> {
  const load = loadavg();
  const id = `${c.id}-${round}`;
  const { vm, md5 } = await bootGuest(driver, id);
  // A fresh chunk store each round: rounds stay alike, with nothing deduped against an earlier guest.
  const roundDir = join(dir, id);
  mkdirSync(roundDir);
  const { sinkPath, sourcePath } = testDataPaths(roundDir, `tcg-${id}`);
  const runLog: string[] = [];
  const logger = { log: (m: string) => runLog.push(m), warn: (m: string) => runLog.push(`WARN ${m}`) };
  const taps: { source?: StreamTap; sink?: StreamTap } = {};
  const link = new LoopbackLink(LINK);
  const port = await link.listen();
  const incoming = new IncomingMigration({
    id,
    spec: guestSpec(`${id}-in`, MEMORY_MIB),
    driver,
    dataPath: tappedSink(sinkPath, (t) => {
      taps.sink = t;
    }),
    logger,
  });
  const source = keepingProgress(driver);
  const run = new MigrationRun({
    id,
    source: {
      driver: source.hypervisor,
      vm,
      dataPath: tappedSource(sourcePath, (t) => {
        taps.source = t;
      }),
    },
    destination: link.carrying(incoming, port),
    onPhase: async () => {},
    options: c.options,
    logger,
  });
  const result: RoundResult = {
    case: c.id,
    round,
    loadavg: load,
    status: 'none',
    pauseIs: 'STOP→RESUME',
    totalMs: 0,
    maxBandwidthBytesPerSec: run.parameters.maxBandwidthBytesPerSec,
    downtimeLimitMs: run.parameters.downtimeLimitMs,
    basis: run.parameters.basis,
    integrityOk: 0,
    broken: true,
    log: runLog,
  };
  try {
    const started = performance.now();
    const outcome = await run.run();
    result.totalMs = Math.round(performance.now() - started);
    result.status = outcome.phase;
    if (outcome.reason !== undefined) result.reason = outcome.reason;
    if (outcome.stats.downtimeMs !== undefined) result.pauseMs = outcome.stats.downtimeMs;
    const dirtySyncCount = source.last()?.dirtySyncCount;
    if (dirtySyncCount !== undefined) result.dirtySyncCount = dirtySyncCount;
    const sent = await taps.source?.reading();
    const fed = await taps.sink?.reading();
    if (sent && fed) {
      const equal = fed.connections === 1 && fed.bytes === sent.bytes && fed.sha256 === sent.sha256;
      result.stream = { source: sent, sink: fed, equal };
    }
    result.link = { connections: link.connections, bytes: link.bytes };
    if (outcome.phase !== 'done' || incoming.vm === undefined) return result;
    judge(result, await watchConsole(driver.serialLines(incoming.vm, { replay: true }), md5));
    result.destinationAfter = await stateOf(driver, incoming.vm);
    if (result.stream?.equal !== true) result.broken = true;
    return result;
  } finally {
    await link.close();
    if (incoming.vm) await driver.destroy(incoming.vm);
    await driver.destroy(vm);
  }
}

async function stateOf(driver: QemuDriver, vm: VmHandle): Promise<string> {
  return (await driver.status(vm).catch(() => ({ state: 'gone' }))).state;
}

/** The guest's verdict from its console; the last lines are kept when it is not well. */
function judge(result: RoundResult, watch: ConsoleWatch): void {
  result.integrityOk = watch.integrityOk;
  if (watch.trouble !== undefined) result.trouble = watch.trouble;
  result.broken = watch.trouble !== undefined || watch.integrityOk < 2;
  if (result.broken) result.log.push(...watch.seen.slice(-30));
}

interface Report {
  machine: MachineInfo;
  qemu: string;
  /** Files changed in the working tree but not committed when the run began (others work in it too). */
  uncommitted: string[];
  startLoad: number[];
  rounds: number;
  cases: { id: string; what: string; loadavg: number[] }[];
  results: RoundResult[];
}

const fmt = (x: number | undefined, digits = 0) => (x === undefined ? '–' : x.toFixed(digits));
const loads = (l: number[]) => l.map((x) => x.toFixed(2)).join(' / ');

function markdown(r: Report): string {
  const out = [
    '# TCG integrity: does the destination guest get every write?',
    '',
    'Generated by `npm run bench:tcg` (bench/src/tcg-integrity.bench.ts); do not edit by hand.',
    '',
    machineMarkdown(r.machine),
    `- uncommitted in the working tree at the start: ${r.uncommitted.length === 0 ? 'nothing' : r.uncommitted.map((l) => `\`${l.trim()}\``).join(', ')}`,
    `- ${r.qemu}, accelerator TCG (forced; this bench is about TCG)`,
    `- guest: ${GUEST_ABOUT}, ${MEMORY_MIB} MiB RAM, a freshly booted guest every round`,
    `- load average (1/5/15 min) at the start: ${loads(r.startLoad)}`,
    '',
    "QEMU alone migrates into a destination started with `-S`: once both sides' query-migrate say",
    'completed, both RAMs are saved with `pmemsave` (the source paused in postmigrate) and compared',
    "in 4 KiB pages, then the destination is sent `cont`. Its pause is QEMU's own `downtime` (the",
    'resume is our `cont`). DWCP runs MigrationRun and IncomingMigration in this process over the',
    'native data path, its AMST connections through one 12 MB/s proxy for all of them (towards the',
    'destination); its pause is source STOP to destination RESUME, and the taps at both ends of the',
    'data path say whether the destination QEMU was fed exactly what the source QEMU wrote (no',
    "`-S`, so no RAM comparison). Every destination's console is then watched ~10 s for two",
    '`DWCP-INTEGRITY ok` lines with the checksum the guest printed when ready, and for',
    '`Oops|BUG:|Kernel panic|general protection|Call Trace|segfault|DWCP-INTEGRITY FAIL`.',
    'Integrity ok 0 with no trouble means the console went quiet within the window; "destination',
    'after" says whether that QEMU still ran. The guest boots with `panic=-1` and QEMU with',
    '`-no-reboot`, so a guest that panics at once ends its QEMU: for DWCP that is the failure',
    '"the destination QEMU exited after its stream ended". Auto-converge is on in every case.',
    "Dirty syncs is QEMU's `dirty-sync-count` from the source's last query-migrate (3 when no",
    'precopy pass ran after the first full one).',
    '',
    '## Summary',
    '',
    '| case | rounds | guests broken | RAM pages differing per round |',
    '|---|---|---|---|',
  ];
  for (const c of r.cases) {
    const rs = r.results.filter((x) => x.case === c.id);
    const pages = rs.some((x) => x.pagesDiffering !== undefined)
      ? rs.map((x) => fmt(x.pagesDiffering)).join(', ')
      : 'not compared (no -S)';
    out.push(`| ${c.what} | ${rs.length} | ${rs.filter((x) => x.broken).length} | ${pages} |`);
  }
  for (const c of r.cases) {
    const rs = r.results.filter((x) => x.case === c.id);
    out.push('', `## ${c.id}: ${c.what}`, '', `Load average at the case's start: ${loads(c.loadavg)}.`);
    const first = rs[0];
    if (first) {
      out.push(
        '',
        `QEMU max-bandwidth ${first.maxBandwidthBytesPerSec} B/s, downtime-limit ${first.downtimeLimitMs} ms` +
          `${first.basis ? ` (MigrationRun's own choice, before any override: ${first.basis})` : ''}.`,
      );
    }
    out.push(
      '',
      '| round | load 1 min | result | dirty syncs | pause (ms) | total (s) | pages differing | integrity ok | trouble | destination after | stream equal |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const x of rs) {
      out.push(
        `| ${x.round} | ${fmt(x.loadavg[0], 2)} | ${x.status}${x.reason ? ` (${x.reason})` : ''}${x.broken ? ', **broken**' : ''} | ` +
          `${fmt(x.dirtySyncCount)} | ${fmt(x.pauseMs)} (${x.pauseIs}) | ${fmt(x.totalMs / 1000, 1)} | ` +
          `${x.pagesDiffering === undefined ? '–' : `${x.pagesDiffering}${x.pagesDiffering > 0 ? ` (${x.differingPages?.join(' ')})` : ''}`} | ` +
          `${x.integrityOk} | ${x.trouble ? `\`${x.trouble.replaceAll('|', '\\|')}\`` : '–'} | ${x.destinationAfter ?? '–'} | ` +
          `${x.stream ? `${x.stream.equal ? 'yes' : 'NO'}, ${x.stream.source.bytes} B, ${x.stream.source.sha256.slice(0, 12)}` : '–'} |`,
      );
    }
  }
  return `${out.join('\n')}\n`;
}

/** `tcg-integrity-qemu-10.0`: one report per QEMU version, so the versions can be set side by side. */
function reportName(qemu: string): string {
  const version = /version (\d+\.\d+)/.exec(qemu)?.[1] ?? 'unknown';
  return `tcg-integrity-qemu-${version}`;
}

function writeReport(r: Report): void {
  const dir = join(REPO, 'docs', 'benchmarks');
  mkdirSync(dir, { recursive: true });
  const name = reportName(r.qemu);
  writeFileSync(join(dir, `${name}.md`), markdown(r));
  writeFileSync(
    join(dir, `${name}.json`),
    `${JSON.stringify({ ...r, guest: GUEST_ABOUT, memoryMiB: MEMORY_MIB })}\n`,
  );
}

async function main(): Promise<void> {
  ensureGuestBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'dwcp-tcg-'));
  const logger = { log: (m: string) => log(m), warn: (m: string) => log(`WARN ${m}`) };
  const drivers = {
    source: new QemuDriver({ accelerator: 'tcg', logger }),
    paused: new QemuDriver({ accelerator: 'tcg', qemuBinary: pausedQemu(dir), logger }),
  };
  const report: Report = {
    machine: machineInfo(),
    qemu: sh('qemu-system-x86_64', ['--version']).split('\n')[0] ?? 'unknown',
    uncommitted: sh('git', ['-C', REPO, 'status', '--porcelain', '--untracked-files=no'])
      .split('\n')
      .filter((l) => l.trim() !== ''),
    startLoad: loadavg(),
    rounds: ROUNDS,
    cases: [],
    results: [],
  };
  try {
    for (const c of CASES.filter((x) => !ONLY || ONLY.includes(x.id))) {
      report.cases.push({ id: c.id, what: c.what, loadavg: loadavg() });
      for (let round = 1; round <= ROUNDS; round++) {
        const result =
          c.method === 'qemu'
            ? await qemuAloneRound(c, round, drivers, dir)
            : await dwcpRound(c, round, drivers.source, dir);
        report.results.push(result);
        log(
          `${c.id} round ${round}: ${result.status}${result.reason ? ` (${result.reason})` : ''}, ` +
            `${result.dirtySyncCount} dirty syncs, pause ${result.pauseMs} ms, pages differing ${result.pagesDiffering ?? '–'}, ` +
            `integrity ok ×${result.integrityOk}${result.trouble ? `, TROUBLE ${result.trouble}` : ''}` +
            `${result.stream ? `, stream ${result.stream.equal ? 'equal' : 'DIFFERS'}` : ''}${result.broken ? ', BROKEN' : ''}`,
        );
        if (c.method === 'dwcp' && round === 1) log(result.log[0] ?? '');
      }
      writeReport(report);
    }
  } finally {
    await drivers.source.close();
    await drivers.paused.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench:tcg failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);

/**
 * `dwcp demo` (`npm run demo`): starts a 3-node DWCP cluster on this machine, boots the test guest on
 * node 2 and live-migrates it to node 3, over the emulated internet (100 ms RTT, 1 % loss,
 * 100 Mbit/s) when this machine allows network namespaces, over loopback otherwise; then a second VM
 * from the same image, and QEMU's own migration of the same guest on the same path for comparison.
 * It prints what it chose and why, the live progress, and a report. Nothing is simulated unless it
 * says so: without QEMU the nodes run the simulated hypervisor, and the report says that too.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MigrationRecord, VmRecord } from '@novacron/cluster-state';
import { migrateWithQemuAlone, type QemuAloneResult } from '@novacron/hypervisor';
import { freePort, LocalCluster, type NodeProcess, until } from '@novacron/local-cluster';
import { ApiClient } from '../api-client';
import type { CliIo } from '../cli-io';
import { followMigration } from '../migration-follow';
import { summaryLines } from '../migration-progress';
import { formatBytes, formatDuration, formatFactor, table } from '../text-output';
import { chooseHypervisor, chooseLink, IMAGE, imageSpec, installImage, REPO } from './environment';

export interface ClusterDemoOptions {
  link: 'auto' | 'internet' | 'loopback';
  hypervisor: 'auto' | 'qemu' | 'simulated';
  dataDir: string;
  memoryMib: number;
  /** Also run QEMU's own migration for comparison (real QEMU only). */
  compare: boolean;
  /** Internal: this process already runs inside namespace A, under the emulator. */
  inNamespaces?: boolean;
}

const NS_A = 'dwcp-demo-a';
const NS_B = 'dwcp-demo-b';
const ADDR_A = '10.77.0.1';
const ADDR_B = '10.77.0.2';
const HEARTBEAT = /DWCP-HEARTBEAT seq=(\d+)/;
const READY = /DWCP-READY/;
const INTEGRITY = /DWCP-INTEGRITY (ok|FAIL)/;
const PLAIN_CAP_MS = 300_000;

type Link = 'internet' | 'loopback';
type Hypervisor = 'qemu' | 'simulated';

export async function runClusterDemo(o: ClusterDemoOptions, io: CliIo): Promise<number> {
  const say = (line = '') => io.out(`${line}\n`);
  if (o.inNamespaces) return runDemo({ ...o, link: 'internet', hypervisor: o.hypervisor as Hypervisor }, io);
  say('== DWCP demo: a 3-node cluster live-migrates a running VM from node 2 to node 3');
  const hv = chooseHypervisor(o.hypervisor, say);
  say(
    hv.value === 'qemu'
      ? `hypervisor: real QEMU (${hv.why})`
      : `hypervisor: SIMULATED: the VMs exist only in memory, nothing about them is real (${hv.why})`,
  );
  const link = chooseLink(o.link);
  say(
    link.value === 'internet'
      ? `link to node 3: emulated internet, 100 ms RTT, 1 % loss, 100 Mbit/s (${link.why})`
      : `link to node 3: plain loopback, NOT an emulated WAN (${link.why})`,
  );
  if (link.value === 'internet') return runUnderEmulator(o, hv.value, io);
  return runDemo({ ...o, link: 'loopback', hypervisor: hv.value }, io);
}

/** Runs this demo again inside namespace A, with bench/wan's emulator joining it to namespace B. */
async function runUnderEmulator(o: ClusterDemoOptions, hypervisor: Hypervisor, io: CliIo): Promise<number> {
  const wan = join(REPO, 'bench', 'wan');
  const down = () => {
    try {
      execFileSync('bash', [join(wan, 'netns.sh'), 'down', NS_A, NS_B], { stdio: 'ignore' });
    } catch {}
  };
  down();
  io.out('starting the WAN emulator (bench/wan/run.sh internet; the first run builds it with cargo)...\n');
  const inner = [
    process.execPath,
    resolve(REPO, 'apps', 'cli', 'dist', 'main.js'),
    'demo',
    '--in-namespaces',
    '--hypervisor',
    hypervisor,
    '--data-dir',
    resolve(o.dataDir),
    '--memory-mib',
    String(o.memoryMib),
    ...(o.compare ? [] : ['--no-compare']),
  ];
  const child = spawn(
    'bash',
    [join(wan, 'run.sh'), 'internet', '--', 'ip', 'netns', 'exec', NS_A, ...inner],
    {
      stdio: 'inherit',
      env: { ...process.env, NS_A, NS_B },
    },
  );
  const stop = io.onInterrupt(() => child.kill('SIGINT'));
  try {
    return await new Promise<number>((res) => child.once('exit', (code) => res(code ?? 1)));
  } finally {
    stop();
    down();
  }
}

interface Placed {
  node: NodeProcess;
  id: string;
  /** Runs `fetch` where the node's loopback API is (its namespace). */
  get<T>(path: string, token: string): Promise<T | undefined>;
}

async function startCluster(
  cluster: LocalCluster,
  link: Link,
  say: (line: string) => void,
): Promise<[Placed, Placed, Placed]> {
  const internet = link === 'internet';
  const n1 = await cluster.add(internet ? { peerHost: ADDR_A } : {});
  n1.start();
  await until(
    'node 1 to lead its new cluster',
    async () => (await cluster.statusOf(n1))?.role === 'leader',
    60_000,
  );
  const n2 = await cluster.add(internet ? { peerHost: ADDR_A } : {});
  n2.start({ url: n1.apiUrl, token: cluster.joinToken });
  await until('node 2 to join', async () => (await cluster.statusOf(n2))?.voters.length === 2, 60_000);
  const n3 = await cluster.add(internet ? { prefix: ['ip', 'netns', 'exec', NS_B], peerHost: ADDR_B } : {});
  if (internet) {
    // Node 3 cannot reach node 1's loopback API across the namespaces: it is admitted from here.
    await cluster.provision(n3, n1, `${ADDR_B}:${n3.peerPort}`);
    n3.start();
  } else {
    n3.start({ url: n1.apiUrl, token: cluster.joinToken });
  }
  const get3 = <T>(path: string, token: string) => n3.getWhereItRuns<T>(path, token);
  const status3 = await until(
    'node 3 to join',
    async () => {
      const s = await get3<{ nodeId: string; voters: number[]; leaderRaftId: number | null }>(
        '/v1/cluster/status',
        cluster.adminToken,
      );
      return s && s.voters.length === 3 && s.leaderRaftId !== null ? s : undefined;
    },
    90_000,
  );
  const id = async (n: NodeProcess) => (await cluster.statusOf(n))?.nodeId ?? '';
  say(
    `cluster up: n1 (leader) and n2${internet ? ` in namespace ${NS_A}` : ''}, n3${internet ? ` in ${NS_B}` : ''}`,
  );
  return [
    { node: n1, id: await id(n1), get: (p, t) => n1.getWhereItRuns(p, t) },
    { node: n2, id: await id(n2), get: (p, t) => n2.getWhereItRuns(p, t) },
    { node: n3, id: status3.nodeId, get: get3 },
  ];
}

const heartbeats = (lines: string[]) => lines.flatMap((l) => HEARTBEAT.exec(l)?.[1] ?? []).map(Number);

async function consoleOf(at: Placed, vmId: string, token: string): Promise<string[]> {
  return (await at.get<{ lines: string[] }>(`/v1/vms/${vmId}/console?tail=500`, token))?.lines ?? [];
}

interface DemoRun {
  link: Link;
  hypervisor: Hypervisor;
  dataDir: string;
  memoryMib: number;
  compare: boolean;
}

async function runDemo(o: DemoRun, io: CliIo): Promise<number> {
  const say = (line = '') => io.out(`${line}\n`);
  const dataDir = resolve(o.dataDir);
  rmSync(dataDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const images = join(dataDir, 'images');
  installImage(images, o.hypervisor);
  const cluster = new LocalCluster(
    ['--hypervisor-driver', o.hypervisor, '--hypervisor-images-dir', images],
    join(dataDir, 'nodes'),
  );
  say(`starting 3 nodes (data in ${dataDir})...`);
  try {
    const [n1, n2, n3] = await startCluster(cluster, o.link, say);
    const api = new ApiClient({ url: new URL(n1.node.apiUrl), token: cluster.adminToken, timeoutMs: 30_000 });
    const token = cluster.adminToken;

    const boot = async (name: string): Promise<VmRecord> => {
      const vm = await api.post<VmRecord>('/v1/vms', {
        name,
        image: IMAGE,
        vcpus: 1,
        memoryMiB: o.memoryMib,
        nodeId: n2.id,
      });
      await api.post(`/v1/vms/${vm.id}/start`);
      say(`booting ${name} (${vm.id}, ${o.memoryMib} MiB) on n2...`);
      await until(
        `${name} to boot`,
        async () => {
          const lines = await consoleOf(n2, vm.id, token);
          const ready = o.hypervisor === 'simulated' || lines.some((l) => READY.test(l));
          return ready && heartbeats(lines).length > 0 ? true : undefined;
        },
        120_000,
      );
      return vm;
    };

    const migrate = async (vm: VmRecord): Promise<MigrationRecord> => {
      const lastBeat = heartbeats(await consoleOf(n2, vm.id, token)).at(-1) ?? 0;
      say(`migrating ${vm.name} n2 -> n3 (last heartbeat on n2: ${lastBeat})`);
      const created = await api.post<MigrationRecord>('/v1/migrations', { vmId: vm.id, targetNodeId: n3.id });
      const done = await followMigration(api, created, io, { json: false });
      for (const line of summaryLines(done)) say(line);
      if (done.phase !== 'done') return done;
      // The guest beats every second and checks its memory every 2 s: wait for both on n3.
      const checks = await until(
        `${vm.name} to beat on n3`,
        async () => {
          const lines = await consoleOf(n3, vm.id, token);
          const beat = heartbeats(lines).at(-1);
          const checked = o.hypervisor === 'simulated' || lines.some((l) => INTEGRITY.test(l));
          return beat !== undefined && beat > lastBeat && checked ? { beat, lines } : undefined;
        },
        30_000,
      ).catch(() => undefined);
      if (checks === undefined) {
        say(`  ${vm.name}: no heartbeat seen on n3 after the migration`);
      } else {
        const integrity = checks.lines.flatMap((l) => INTEGRITY.exec(l)?.[1] ?? []);
        say(
          `  ${vm.name} runs on n3: heartbeat ${checks.beat}` +
            (o.hypervisor === 'qemu'
              ? `, guest integrity checks: ${integrity.slice(-2).join(', ') || 'none yet'}`
              : ''),
        );
      }
      return done;
    };

    const firstVm = await boot('demo-vm');
    const first = await migrate(firstVm);
    const secondVm = await boot('demo-vm-2');
    const second = await migrate(secondVm);

    let plain: QemuAloneResult | undefined;
    let plainWhy = '';
    if (o.hypervisor !== 'qemu') plainWhy = 'not possible: QEMU does not run here';
    else if (!o.compare) plainWhy = 'skipped (--no-compare)';
    else {
      say(
        `QEMU's own migration of the same guest over one TCP connection on the same path (cap ${PLAIN_CAP_MS / 1000} s)...`,
      );
      // The destination QEMU runs where node 3 runs; this process already runs where node 2 does.
      plain = await migrateWithQemuAlone({
        spec: imageSpec(images, 'demo-plain', o.memoryMib),
        host: o.link === 'internet' ? ADDR_B : '127.0.0.1',
        port: await freePort(),
        ...(o.link === 'internet' ? { destinationNamespace: NS_B } : {}),
        ready: READY,
        capMs: PLAIN_CAP_MS,
      });
    }
    report(o, [first, second], plain, plainWhy, say);
    api.close();
    return first.phase === 'done' && second.phase === 'done' ? 0 : 7;
  } catch (e) {
    say(`the demo failed: ${e instanceof Error ? e.message : String(e)}`);
    for (const n of cluster.nodes) {
      say(`-- the last lines ${n.name} logged:`);
      for (const line of n.log.trim().split('\n').slice(-15)) say(`   ${line}`);
    }
    return 1;
  } finally {
    say('stopping the nodes (each destroys its VMs)...');
    for (const n of cluster.nodes) if (n.running) await n.signal('SIGTERM');
  }
}

function report(
  o: DemoRun,
  [first, second]: MigrationRecord[],
  plain: QemuAloneResult | undefined,
  plainWhy: string,
  say: (line?: string) => void,
): void {
  const row = (what: string, m: MigrationRecord | undefined): string[] => {
    const s = m?.stats ?? {};
    const reduction = s.bytesIn && s.bytesOnWire ? s.bytesIn / s.bytesOnWire : undefined;
    return [
      what,
      m?.phase ?? '',
      formatDuration(s.totalMs),
      formatDuration(s.downtimeMs),
      'n/a',
      formatBytes(s.bytesIn),
      formatBytes(s.bytesOnWire),
      formatFactor(reduction),
    ];
  };
  const rows = [row('DWCP, first VM', first), row('DWCP, second VM (same image)', second)];
  const plainDone = plain?.status === 'completed' && plain.pauseMs !== undefined;
  if (plain) {
    rows.push([
      'QEMU, one TCP connection',
      plainDone ? 'done' : (plain.note ?? 'did not finish'),
      formatDuration(plain.totalMs),
      formatDuration(plain.pauseMs),
      formatDuration(plain.final.downtimeMs),
      formatBytes(plain.final.transferredBytes),
      formatBytes(plain.final.transferredBytes),
      formatFactor(1),
    ]);
  }
  say();
  say('== report');
  say(
    `link: ${o.link === 'internet' ? 'emulated internet (100 ms RTT, 1 % loss, 100 Mbit/s)' : 'loopback (no WAN emulated)'}; ` +
      `hypervisor: ${o.hypervisor === 'qemu' ? 'real QEMU' : 'SIMULATED'}; VM: ${o.memoryMib} MiB of RAM`,
  );
  for (const line of table(
    ['migration', 'result', 'time', 'real pause', "QEMU's downtime", 'from QEMU', 'on the wire', 'reduction'],
    rows,
  ))
    say(line);
  const f = first?.stats;
  const s = second?.stats;
  if (f?.bytesOnWire && s?.bytesOnWire) {
    say(
      `second VM: ${((s.bytesOnWire / f.bytesOnWire) * 100).toFixed(0)} % of the first one's bytes on the wire (its chunks were already on n3)`,
    );
  }
  if (plain && plainDone && f?.totalMs && f.bytesOnWire) {
    say(
      `DWCP against QEMU alone: ${(plain.totalMs / f.totalMs).toFixed(1)}× the speed, ` +
        `${(plain.final.transferredBytes / f.bytesOnWire).toFixed(1)}× fewer bytes on the wire` +
        (f.downtimeMs !== undefined && plain.pauseMs !== undefined
          ? `, ${(f.downtimeMs / plain.pauseMs).toFixed(1)}× QEMU's real pause`
          : ''),
    );
  } else {
    say(`QEMU alone: ${plain ? (plain.note ?? 'did not finish') : plainWhy}`);
  }
  say(
    "times: DWCP's from the request to done (the destination QEMU's start included), QEMU's from `migrate` to the destination's RESUME; " +
      "real pause: the guest's, from the source QEMU's STOP event to the destination's RESUME event, for both; " +
      "QEMU's downtime: QEMU's own figure from query-migrate, a different measure; " +
      "bytes: what each wrote to its connections (DWCP's after dedup and zstd), not counting TCP/TLS headers.",
  );
}

/**
 * Real DWCP node processes, for the demo, the e2e tests in test/ and bench:raft: each node is
 * `dwcp node start` (apps/cli/dist, so `npm run build` first) with its own data dir and ports, on
 * loopback unless a node is given a command prefix (e.g. `ip netns exec NS`) and its own flags.
 * Faults are real: SIGKILL, SIGSTOP/SIGCONT, restart from the same data dir. A node's VMs outlive
 * it only if the cluster asks (`vmsOutliveNodes`); either way `stop()` kills every QEMU left in a
 * node's `<dataDir>/vms`, by its pidfile.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { type AdmitResponse, ClusterFiles } from '@novacron/consensus';

const CLI = resolve(__dirname, '..', '..', '..', 'apps', 'cli', 'dist', 'main.js');

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function until<T>(
  what: string,
  f: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 20_000,
): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

/** One node process. Its data dir and ports survive restarts. */
export class NodeProcess {
  proc: ChildProcess | undefined;
  log = '';
  /** Between SIGSTOP and SIGCONT: the process exists but answers nothing. */
  paused = false;

  constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly apiPort: number,
    readonly peerPort: number,
    readonly grpcPort: number,
    private readonly extraArgs: string[],
    /** How to run it elsewhere: a command prefix (e.g. `ip netns exec NS`) and the peer port's host. */
    private readonly placement: { prefix?: string[]; peerHost?: string } = {},
  ) {}

  get apiUrl(): string {
    return `http://127.0.0.1:${this.apiPort}`;
  }

  start(join?: { url: string; token: string }): void {
    const args = [
      CLI,
      'node',
      'start',
      '--data-dir',
      this.dataDir,
      '--node-name',
      this.name,
      '--api-port',
      String(this.apiPort),
      '--peer-port',
      String(this.peerPort),
      '--grpc-api-port',
      String(this.grpcPort),
      '--log-level',
      'warn',
      ...(this.placement.peerHost ? ['--peer-host', this.placement.peerHost] : []),
      ...(join ? ['--join', join.url, '--join-token', join.token] : []),
      ...this.extraArgs,
    ];
    const [command, ...rest] = [...(this.placement.prefix ?? []), process.execPath, ...args] as [
      string,
      ...string[],
    ];
    const proc = spawn(command, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => this.append(d));
    proc.stderr?.on('data', (d: Buffer) => this.append(d));
    this.proc = proc;
  }

  private append(d: Buffer): void {
    this.log = (this.log + d.toString()).slice(-20_000);
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Running and not paused: it should answer requests. */
  get live(): boolean {
    return this.running && !this.paused;
  }

  /** Sends a signal; for SIGKILL/SIGTERM, waits for the exit. */
  async signal(sig: NodeJS.Signals): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill(sig);
    if (sig === 'SIGSTOP') this.paused = true;
    if (sig === 'SIGCONT' || sig === 'SIGKILL') this.paused = false;
    if (sig === 'SIGKILL' || sig === 'SIGTERM') await exited;
  }

  /**
   * The pids of the QEMUs in this node's `<dataDir>/vms` that still run: each pidfile's process whose
   * command line names its runtime dir (a pid reused by another process is not one).
   */
  qemuPids(): number[] {
    const root = join(this.dataDir, 'vms');
    if (!existsSync(root)) return [];
    return readdirSync(root).flatMap((name) => {
      const dir = join(root, name);
      try {
        const pid = Number(readFileSync(join(dir, 'qemu.pid'), 'utf8').trim());
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${dir}/`) ? [pid] : [];
      } catch {
        return [];
      }
    });
  }

  /** SIGKILLs every QEMU left in this node's data dir (qemuPids). */
  killQemus(): void {
    for (const pid of this.qemuPids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }

  /** Resolves with the exit code once the process has exited (null if a signal ended it). */
  exited(): Promise<number | null> {
    const p = this.proc;
    if (!p) return Promise.resolve(null);
    if (!this.running) return Promise.resolve(p.exitCode);
    return new Promise((r) => p.once('exit', (code) => r(code)));
  }

  /** The sum of a Prometheus series over its labels, from this node's /metrics. */
  async metric(name: string): Promise<number> {
    const res = await fetch(`${this.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
    let sum = 0;
    for (const line of (await res.text()).split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.split(' ').pop());
    }
    return sum;
  }

  /** A request with a body sent as-is (for malformed JSON and the like). */
  async apiRaw<T = unknown>(
    method: string,
    path: string,
    token: string | undefined,
    body: string,
    contentType = 'application/json',
  ): Promise<ApiResponse<T>> {
    const res = await fetch(`${this.apiUrl}${path}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': contentType },
      body,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  /**
   * A GET where the node runs: through its command prefix (e.g. into its network namespace, whose
   * loopback its API listens on) when it has one, else directly. Undefined unless it answers 200.
   */
  async getWhereItRuns<T>(path: string, token: string): Promise<T | undefined> {
    const prefix = this.placement.prefix;
    if (!prefix || prefix.length === 0) {
      const r = await this.api<T>('GET', path, token).catch(() => undefined);
      return r?.status === 200 ? r.body : undefined;
    }
    const script = `fetch(${JSON.stringify(`${this.apiUrl}${path}`)},{headers:{authorization:${JSON.stringify(`Bearer ${token}`)}},signal:AbortSignal.timeout(10000)}).then(async r=>{if(r.ok)process.stdout.write(await r.text())}).catch(()=>{})`;
    const [command = process.execPath, ...rest] = [...prefix, process.execPath, '-e', script];
    return new Promise((res) => {
      const child = spawn(command, rest, { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.once('exit', () => {
        try {
          res(out ? (JSON.parse(out) as T) : undefined);
        } catch {
          res(undefined);
        }
      });
    });
  }

  async api<T = unknown>(
    method: string,
    path: string,
    token: string | undefined,
    body?: unknown,
    timeoutMs = 10_000,
  ): Promise<ApiResponse<T>> {
    const res = await fetch(`${this.apiUrl}${path}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }
}

export interface ClusterStatusBody {
  nodeId: string;
  raftId: number;
  role: string;
  leaderRaftId: number | null;
  term: number;
  voters: number[];
}

/** A cluster of node processes: the first bootstraps, the rest join through it. */
export class LocalCluster {
  readonly nodes: NodeProcess[] = [];
  /** Holds every node's data dir: a fresh temp dir unless given. */
  readonly root: string;
  adminToken = '';
  joinToken = '';

  private readonly extraArgs: string[];

  /**
   * `extraArgs` go to every node. Unless `vmsOutliveNodes`, a node stops its VMs when it shuts down
   * (SIGTERM), as tests written before VMs outlived their node expect; a SIGKILLed node's VMs live on.
   */
  constructor(extraArgs: string[] = [], root?: string, options: { vmsOutliveNodes?: boolean } = {}) {
    this.extraArgs = options.vmsOutliveNodes
      ? extraArgs
      : ['--hypervisor-stop-vms-on-shutdown', 'true', ...extraArgs];
    this.root = root ?? mkdtempSync(join(tmpdir(), 'dwcp-cluster-'));
  }

  /** A new node (not started); `placement` runs it elsewhere, e.g. in another network namespace. */
  async add(placement: ConstructorParameters<typeof NodeProcess>[6] = {}): Promise<NodeProcess> {
    const i = this.nodes.length + 1;
    const node = new NodeProcess(
      `n${i}`,
      join(this.root, `n${i}`),
      await freePort(),
      await freePort(),
      await freePort(),
      this.extraArgs,
      placement,
    );
    this.nodes.push(node);
    return node;
  }

  /** Starts `size` nodes and waits until every one sees all voters and a leader. */
  async start(size: number): Promise<void> {
    const seed = await this.add();
    seed.start();
    await until('the seed serves', async () => (await this.statusOf(seed))?.role === 'leader', 30_000);
    for (let i = 1; i < size; i++) {
      const n = await this.add();
      n.start({ url: seed.apiUrl, token: this.joinToken });
      await until(`${n.name} joins`, async () => (await this.statusOf(n))?.voters.length === i + 1, 30_000);
    }
    await this.waitStable();
  }

  /**
   * Admits `n` through `via` before it starts, for a node that cannot reach `via`'s API itself (it
   * runs behind an emulated link, say): the same join request and the same files a joining node
   * writes, made from here. `n` then starts as a member, without --join.
   */
  async provision(n: NodeProcess, via: NodeProcess, peerAddr: string): Promise<void> {
    this.loadTokens();
    const request = {
      nodeName: n.name,
      peerAddr,
      apiUrl: n.apiUrl,
      capacity: { vcpus: cpus().length, memoryMiB: Math.floor(totalmem() / 1024 / 1024) },
    };
    // A cluster that just grew may not answer a linearizable read yet (503/504): ask again, up to a
    // minute. Any other refusal is final.
    let a: AdmitResponse | undefined;
    for (const end = Date.now() + 60_000; a === undefined; ) {
      const r = await via.api<AdmitResponse>('POST', '/v1/cluster/join', this.joinToken, request, 30_000);
      if (r.status === 200 || r.status === 201) a = r.body;
      else if ((r.status !== 503 && r.status !== 504) || Date.now() > end) {
        throw new Error(`admitting ${n.name}: ${r.status} ${JSON.stringify(r.body)}`);
      } else await new Promise((res) => setTimeout(res, 500));
    }
    new ClusterFiles(n.dataDir).adopt(
      {
        clusterName: a.clusterName,
        nodeId: a.nodeId,
        nodeName: n.name,
        raftId: a.raftId,
        bootstrap: false,
        seeds: a.members,
      },
      { caPem: a.caPem, certPem: a.certPem, keyPem: a.keyPem },
    );
  }

  /** Reads the seed's tokens once they exist (the seed writes them at init). */
  private loadTokens(): void {
    if (this.adminToken) return;
    const dir = join(this.root, 'n1', 'cluster');
    this.adminToken = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
    this.joinToken = readFileSync(join(dir, 'join.token'), 'utf8').trim();
  }

  /** A file of a node's `<dataDir>/cluster` (CA, certificates, tokens). */
  clusterFile(n: NodeProcess, name: string): string {
    return readFileSync(join(n.dataDir, 'cluster', name), 'utf8');
  }

  /** `method path` on `n` as admin; the body of an answer with the `expected` status, else an error naming what came. */
  async adminCall<T>(
    n: NodeProcess,
    method: string,
    path: string,
    body?: unknown,
    expected = 200,
  ): Promise<T> {
    const r = await n.api<T>(method, path, this.adminToken, body);
    if (r.status !== expected) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Creates an API token of `role` through `via` (as admin) and returns the token. */
  async createToken(role: 'viewer' | 'operator' | 'admin', via: NodeProcess, name = `t-${role}`) {
    const r = await via.api<{ token: string }>('POST', '/v1/tokens', this.adminToken, { name, role });
    if (r.status !== 201) throw new Error(`POST /v1/tokens: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.token;
  }

  /** Creates a small VM through `via`; the response says whether the write was acknowledged. */
  createVm(via: NodeProcess, name: string, timeoutMs = 10_000): Promise<ApiResponse<{ id: string }>> {
    return via.api('POST', '/v1/vms', this.adminToken, vmBody(name), timeoutMs);
  }

  /** The VM names `n` holds, read linearizably (undefined if the read fails). */
  async vmNames(n: NodeProcess): Promise<string[] | undefined> {
    const r = await n.api<{ items: { name: string }[] }>('GET', '/v1/vms', this.adminToken);
    return r.status === 200 ? r.body.items.map((v) => v.name).sort() : undefined;
  }

  /**
   * `n`'s VM names from its first linearizable read that succeeds. Only failed reads are retried:
   * a read that answers must already be up to date, so a stale answer fails the test.
   */
  readVmNames(n: NodeProcess, ms = 30_000): Promise<string[]> {
    return until(`a linearizable read on ${n.name}`, () => this.vmNames(n), ms);
  }

  async statusOf(n: NodeProcess): Promise<ClusterStatusBody | undefined> {
    this.loadTokens();
    const r = await n.api<ClusterStatusBody>('GET', '/v1/cluster/status', this.adminToken, undefined, 2000);
    return r.status === 200 ? r.body : undefined;
  }

  /** Waits until every running node agrees on one leader that is itself running. */
  async waitStable(ms = 30_000): Promise<NodeProcess> {
    return until(
      'a stable leader',
      async () => {
        const live = this.nodes.filter((n) => n.live);
        const statuses = await Promise.all(live.map((n) => this.statusOf(n).catch(() => undefined)));
        const leaders = new Set(statuses.map((s) => s?.leaderRaftId ?? null));
        if (leaders.size !== 1 || leaders.has(null)) return undefined;
        const leader = live.find((_, i) => statuses[i]?.role === 'leader');
        return leader;
      },
      ms,
    );
  }

  async leader(): Promise<NodeProcess> {
    return this.waitStable();
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.running) {
          await n.signal('SIGCONT');
          await n.signal('SIGKILL');
        }
        n.killQemus();
      }),
    );
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A VM that fits anywhere: placement reserves memory, so 1 MiB lets a test create hundreds. */
export function vmBody(name: string) {
  return { name, image: 'debian', vcpus: 1, memoryMiB: 1 };
}

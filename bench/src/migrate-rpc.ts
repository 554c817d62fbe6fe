/**
 * How bench:migrate talks to the two ends of a migration, each a child process inside its network
 * namespace: one JSON request per line on the child's stdin, one JSON reply per line on its stdout
 * (logs go to stderr). Also the messages both sides agree on.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { HypervisorLogger, MigrationProgress } from '@novacron/hypervisor';
import type { MigrationSinkReport, MigrationSourceReport, NodeIdentity } from '@novacron/native';
import type { IntactReport } from './migrate-guest';
import { exited } from './wan-path';

/** `dwcp`: QEMU → unix socket → MigrationSource → AMST → MigrationSink → QEMU; `tcp`: QEMU's own TCP. */
export type Transport = 'dwcp' | 'tcp';

export interface MultifdSetting {
  channels: number;
  compression: 'zstd' | 'none';
}

export interface BootRequest {
  name: string;
  memoryMiB: number;
}

export interface BootReply {
  md5: string;
  accelerator: string;
  /** Parameters QEMU starts with (query-migrate-parameters), to report its defaults. */
  defaults: Record<string, unknown>;
}

export interface MigrateRequest {
  name: string;
  transport: Transport;
  host: string;
  port: number;
  /** Unset keeps QEMU's default. */
  maxBandwidthBytesPerSec?: number;
  downtimeLimitMs?: number;
  multifd?: MultifdSetting;
  dwcp?: { streams: number; zstdLevel: number; serverName: string; inventoryBase64?: string };
  capMs: number;
}

export interface MigrateReply {
  /** Wall clock (ms since the epoch) when `migrate` was sent to QEMU. */
  startedAtMs: number;
  /** The last query-migrate reading. */
  final: MigrationProgress;
  /** Cancelled (migrate_cancel) after capMs. */
  didNotFinish: boolean;
  /** The source's STOP event (QEMU's timestamp, wall clock ms). */
  stopAtMs: number | undefined;
  /** The guest's latest heartbeat when the migration began. */
  seqAtStart: number;
  /** query-migrate-parameters as the migration ran with them (a subset). */
  parameters: Record<string, unknown>;
  capabilities: string[];
  source?: MigrationSourceReport;
  sourceError?: string;
}

export interface PrepareRequest {
  name: string;
  memoryMiB: number;
  transport: Transport;
  port: number;
  multifd?: MultifdSetting;
}

export interface FinishRequest {
  name: string;
  md5: string;
  timeoutMs: number;
}

export interface FinishReply {
  /** The destination's RESUME event (QEMU's timestamp, wall clock ms). */
  resumeAtMs: number | undefined;
  /** Why it never resumed. */
  failure?: string;
  sink?: MigrationSinkReport;
  sinkError?: string;
  intact?: IntactReport;
  /** The destination's last console lines and QEMU's stderr, when the guest did not check out. */
  console?: string[];
}

export interface InventoryReply {
  chunks: number;
  inventoryBase64?: string;
}

/** Reads what writePeerIdentities wrote for one node. */
export function readIdentity(dir: string): NodeIdentity {
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return { caPem: read('ca.pem'), certPem: read('node.pem'), keyPem: read('node.key') };
}

export function stderrLogger(prefix: string): HypervisorLogger {
  return {
    log: (m) => process.stderr.write(`${prefix} ${m}\n`),
    warn: (m) => process.stderr.write(`${prefix} WARN ${m}\n`),
  };
}

type Handler = (args: Record<string, unknown>) => Promise<unknown>;

/**
 * The child's side: answers requests concurrently until stdin ends or a signal comes, then runs
 * `shutdown` (which must destroy every QEMU it started) and exits.
 */
export function serveRequests(handlers: Record<string, Handler>, shutdown: () => Promise<void>): void {
  let closing = false;
  const close = async (code: number) => {
    if (closing) return;
    closing = true;
    await shutdown().catch((e: unknown) => process.stderr.write(`shutdown: ${String(e)}\n`));
    process.exit(code);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void close(130));
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => {
    const { id, op, args } = JSON.parse(line) as { id: number; op: string; args: Record<string, unknown> };
    const handler = handlers[op];
    const reply = (body: object) => process.stdout.write(`${JSON.stringify({ id, ...body })}\n`);
    if (handler === undefined) {
      reply({ error: `unknown op ${op}` });
      return;
    }
    handler(args).then(
      (result) => reply({ result }),
      (e: unknown) => reply({ error: (e as Error).stack ?? String(e) }),
    );
  });
  input.on('close', () => void close(0));
}

/** The parent's side: one child started with `ip netns exec NS node SCRIPT ARGS`. */
export class NamespaceChild {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(
    readonly ns: string,
    script: string,
    args: string[],
  ) {
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      let msg: { id?: number; result?: unknown; error?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        process.stderr.write(`[${ns} stdout] ${line}\n`);
        return;
      }
      const waiter = msg.id === undefined ? undefined : this.pending.get(msg.id);
      if (waiter === undefined) return;
      this.pending.delete(msg.id as number);
      if (msg.error !== undefined) waiter.reject(new Error(`${ns}: ${msg.error}`));
      else waiter.resolve(msg.result);
    });
    this.child.once('exit', (code, signal) => {
      for (const w of this.pending.values()) w.reject(new Error(`${ns} child exited (${signal ?? code})`));
      this.pending.clear();
    });
  }

  /** The child's pid: `ip netns exec` execs node, so it is the process inside the namespace. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  request<T>(op: string, args: object = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        reject(new Error(`${this.ns} child is gone`));
        return;
      }
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin?.write(`${JSON.stringify({ id, op, args })}\n`);
    });
  }

  /** Ends stdin (the child destroys its VMs and exits); SIGKILL if it takes longer than 20 s. */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await exited(this.child);
    clearTimeout(timer);
  }
}

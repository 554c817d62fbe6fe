/**
 * One hypervisor process this Node started: spawned, its output cut into lines or written to a log
 * file, its exit awaited, and ended with SIGTERM then SIGKILL. Every process still alive when Node
 * exits is SIGKILLed, so a crashed or interrupted test run leaves no QEMU behind (a SIGKILLed Node
 * cannot do this; see docs/hypervisor.md), except a detached one, which is meant to outlive Node.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { HypervisorError } from './errors';
import { LineSplitter } from './serial-console';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A VM's hypervisor process, whether this Node started it or took it over (AdoptedProcess). */
export interface VmProcess {
  readonly pid: number;
  /** Resolves once the process has exited. */
  readonly exited: Promise<ProcessExit>;
  readonly exitStatus: ProcessExit | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  terminate(graceMs: number): Promise<ProcessExit>;
}

/** Where a process's stdout and stderr go: cut into lines, or appended to a file nobody needs to read. */
export type ProcessOutput = { onLine: (line: string) => void } | { logFile: string };

export interface SpawnOptions {
  /** Killed when this process dies, even by SIGKILL (`setpriv --pdeathsig KILL`, util-linux). */
  dieWithParent?: boolean;
  /**
   * Its own session and process group, not killed when this process exits, and no handle of it keeps
   * Node's event loop alive: it outlives this process. Needs a `logFile` output.
   */
  detached?: boolean;
}

const alive = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of alive) c.kill('SIGKILL');
    });
  }
  alive.add(child);
}

const STDERR_KEEP_BYTES = 8192;

export class QemuProcess implements VmProcess {
  /** Resolves once the process has exited and its output has been read to the end. */
  readonly exited: Promise<ProcessExit>;
  private exit: ProcessExit | undefined;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    onLine: (line: string) => void = () => {},
  ) {
    const splitter = new LineSplitter();
    child.stdout?.on('data', (chunk: Buffer) => {
      for (const line of splitter.push(chunk)) onLine(line);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-STDERR_KEEP_BYTES);
    });
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exit) return;
        for (const line of splitter.flush()) onLine(line);
        alive.delete(child);
        this.exit = { code, signal };
        resolve(this.exit);
      };
      // 'close' waits for stdout and stderr to end, which a grandchild holding them open (the shell
      // of an exec: migration URI) can delay past QEMU's own exit, so 'exit' also ends it, a little later.
      child.once('close', finish);
      child.once('exit', (code, signal) => setTimeout(() => finish(code, signal), 500).unref());
    });
  }

  /** Starts `binary`, its output going to `output`. */
  static async spawn(
    binary: string,
    args: readonly string[],
    output: ProcessOutput,
    options: SpawnOptions = {},
  ): Promise<QemuProcess> {
    if (options.detached && !('logFile' in output)) {
      throw HypervisorError.invalidArgument('output', 'a detached process writes to a log file');
    }
    const logFd = 'logFile' in output ? openSync(output.logFile, 'a') : undefined;
    const stdio =
      logFd === undefined ? (['ignore', 'pipe', 'pipe'] as const) : (['ignore', logFd, logFd] as const);
    // setpriv sets the parent-death signal and execs QEMU, so the process is QEMU itself.
    const [command, argv] = options.dieWithParent
      ? ['setpriv', ['--pdeathsig', 'KILL', '--', binary, ...args]]
      : [binary, [...args]];
    let child: ChildProcess;
    try {
      child = spawn(command, argv, { stdio: [...stdio], detached: options.detached ?? false });
    } finally {
      if (logFd !== undefined) closeSync(logFd);
    }
    if (child.pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new HypervisorError('ERR_HV_LAUNCH_FAILED', `could not start ${binary}: ${error.message}`, {
        cause: error,
      });
    }
    if (options.detached) child.unref();
    else track(child);
    return new QemuProcess(child, child.pid, 'onLine' in output ? output.onLine : undefined);
  }

  /** How it ended, once it has. */
  get exitStatus(): ProcessExit | undefined {
    return this.exit;
  }

  /** The last few KiB QEMU wrote to stderr (piped output only): its reasons, when it refuses to start or dies. */
  get stderrTail(): string {
    return this.stderr.trim();
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async terminate(graceMs: number): Promise<ProcessExit> {
    if (this.exit) return this.exit;
    this.child.kill(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
    let timer: NodeJS.Timeout | undefined;
    const lingering = new Promise<'lingering'>((resolve) => {
      timer = setTimeout(() => resolve('lingering'), graceMs);
    });
    const first = await Promise.race([this.exited, lingering]);
    clearTimeout(timer);
    if (first !== 'lingering') return first;
    this.child.kill('SIGKILL');
    return this.exited;
  }
}

/**
 * One hypervisor process: spawned, its stdout cut into lines, its exit awaited, and ended with
 * SIGTERM then SIGKILL. Every process still alive when Node exits is SIGKILLed, so a crashed or
 * interrupted test run leaves no QEMU behind (a SIGKILLed Node cannot do this; see docs/hypervisor.md).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { HypervisorError } from './errors';
import { LineSplitter } from './serial-console';

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
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

export class QemuProcess {
  /** Resolves once the process has exited and its output has been read to the end. */
  readonly exited: Promise<ProcessExit>;
  private exit: ProcessExit | undefined;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    onLine: (line: string) => void,
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

  /** Starts `binary`; `onLine` gets each line it writes to stdout (the guest's serial console). */
  static async spawn(
    binary: string,
    args: readonly string[],
    onLine: (line: string) => void,
    options: { dieWithParent?: boolean } = {},
  ): Promise<QemuProcess> {
    // setpriv sets the parent-death signal and execs QEMU, so the process is QEMU itself.
    const child = options.dieWithParent
      ? spawn('setpriv', ['--pdeathsig', 'KILL', '--', binary, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        })
      : spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) {
      const error = await new Promise<Error>((resolve) => child.once('error', resolve));
      throw new HypervisorError('ERR_HV_LAUNCH_FAILED', `could not start ${binary}: ${error.message}`, {
        cause: error,
      });
    }
    track(child);
    return new QemuProcess(child, child.pid, onLine);
  }

  /** How it ended, once it has. */
  get exitStatus(): ProcessExit | undefined {
    return this.exit;
  }

  /** The last few KiB QEMU wrote to stderr: its reasons, when it refuses to start or dies. */
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

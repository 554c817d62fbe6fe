/**
 * A hypervisor process this Node did not start (an earlier node daemon did), known by its pid only:
 * there is no exit status to wait for, so its exit is noticed (its QMP socket closed) and then
 * confirmed by the pid going away.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { ProcessExit, VmProcess } from './qemu-process';

/** Whether `pid` names a live process (a zombie counts as gone: only its parent can reap it). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return true;
}

/** Polls only after a signal or a closed socket said it is going: a process exits within moments then. */
async function goneWithin(pid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (processAlive(pid)) {
    if (performance.now() > end) return false;
    await sleep(20);
  }
  return true;
}

/** How an adopted process ended: its code and signal belong to the parent that reaped it. */
const UNKNOWN_EXIT: ProcessExit = { code: null, signal: null };

export class AdoptedProcess implements VmProcess {
  readonly exited: Promise<ProcessExit>;
  private exit: ProcessExit | undefined;
  private resolveExit!: (exit: ProcessExit) => void;

  constructor(readonly pid: number) {
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
  }

  get exitStatus(): ProcessExit | undefined {
    return this.exit;
  }

  /** Something said the process is ending (its QMP socket closed): resolves `exited` once it is gone. */
  async noticeEnding(graceMs = 5_000): Promise<void> {
    if (this.exit) return;
    if (await goneWithin(this.pid, graceMs)) this.finish();
  }

  async terminate(graceMs: number): Promise<ProcessExit> {
    if (this.exit) return this.exit;
    this.signal(graceMs > 0 ? 'SIGTERM' : 'SIGKILL');
    if (!(await goneWithin(this.pid, graceMs))) {
      this.signal('SIGKILL');
      await goneWithin(this.pid, 10_000);
    }
    this.finish();
    return this.exited;
  }

  private signal(signal: NodeJS.Signals): void {
    try {
      process.kill(this.pid, signal);
    } catch {
      // Already gone.
    }
  }

  private finish(): void {
    if (this.exit) return;
    this.exit = UNKNOWN_EXIT;
    this.resolveExit(UNKNOWN_EXIT);
  }
}

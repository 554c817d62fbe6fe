/**
 * `dwcp node stop`: asks the node daemon running on a data dir to shut down, by its pidfile, and
 * waits until it has. Its VMs keep running (the node takes them over when it starts again) unless
 * `--stop-vms`.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, EXIT } from './exit-codes';

export interface NodeStopOptions {
  dataDir: string;
  stopVms?: boolean;
  /** How long to wait for the daemon to exit. */
  timeoutMs?: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function nodeStop(opts: NodeStopOptions, line: (text: string) => void): Promise<void> {
  const { nodePidFile, STOP_VMS_SIGNAL } = await import('@novacron/node');
  const file = nodePidFile(opts.dataDir);
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').trim());
  } catch {
    throw new CliError('ERR_NOT_FOUND', `no node runs on ${opts.dataDir} (no ${file})`, EXIT.notFound);
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || !alive(pid)) {
    throw new CliError(
      'ERR_NOT_FOUND',
      `no node runs on ${opts.dataDir} (${file} names no live process)`,
      EXIT.notFound,
    );
  }
  process.kill(pid, opts.stopVms ? STOP_VMS_SIGNAL : 'SIGTERM');
  const end = Date.now() + (opts.timeoutMs ?? 60_000);
  while (alive(pid)) {
    if (Date.now() > end) {
      throw new CliError('ERR_TIMEOUT', `the node (pid ${pid}) is still shutting down`, EXIT.unavailable);
    }
    await sleep(100);
  }
  line(`node stopped (pid ${pid})${opts.stopVms ? ', its VMs stopped' : '; its VMs keep running'}`);
}

/**
 * A VM's runtime directory: QEMU's QMP socket, pidfile, serial console file and log, together in one
 * place that outlives the process that started QEMU, and how a later process tells whether the QEMU
 * a pidfile names is still there and is that VM's (not a reused pid).
 */

import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

const TAIL_BYTES = 8192;

export class QemuRuntimeDir {
  constructor(readonly path: string) {}

  /** `<root>/<name>`, where a later driver over the same root finds it again. */
  static async at(root: string, name: string): Promise<QemuRuntimeDir> {
    const dir = new QemuRuntimeDir(join(root, name));
    await mkdir(dir.path, { recursive: true });
    return dir;
  }

  /** A fresh directory under `root`, for a VM nobody will take over. */
  static async unique(root: string, name: string): Promise<QemuRuntimeDir> {
    return new QemuRuntimeDir(await mkdtemp(join(root, `dwcp-vm-${name}-`)));
  }

  /** The names of the runtime directories under `root`. */
  static async namesUnder(root: string): Promise<string[]> {
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  get qmpSocket(): string {
    return join(this.path, 'qmp.sock');
  }

  get pidFile(): string {
    return join(this.path, 'qemu.pid');
  }

  get consoleFile(): string {
    return join(this.path, 'console.log');
  }

  /** QEMU's stdout and stderr. */
  get logFile(): string {
    return join(this.path, 'qemu.log');
  }

  get exists(): boolean {
    return existsSync(this.path);
  }

  /** The pid QEMU wrote, or undefined when there is no (readable) pidfile. */
  readPid(): number | undefined {
    try {
      const pid = Number(readFileSync(this.pidFile, 'utf8').trim());
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** The last few KiB of QEMU's log: its reasons, when it refuses to start or dies. */
  logTail(): string {
    let fd: number;
    try {
      fd = openSync(this.logFile, 'r');
    } catch {
      return '';
    }
    try {
      const { size } = fstatSync(fd);
      const length = Math.min(size, TAIL_BYTES);
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, size - length);
      return buffer.toString('utf8').trim();
    } finally {
      closeSync(fd);
    }
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true });
  }
}

/** What a pidfile's pid turned out to be. */
export type QemuIdentity = 'ours' | 'no-pidfile' | 'process-gone' | 'foreign-process';

/**
 * Whether the process `pid` is the QEMU of VM `name` whose runtime directory is `dir`, from its
 * command line (`undefined` once the process is gone): pids are reused, so a live pid alone says nothing.
 */
export function identifyQemu(
  pid: number | undefined,
  cmdline: readonly string[] | undefined,
  name: string,
  dir: string,
): QemuIdentity {
  if (pid === undefined) return 'no-pidfile';
  if (cmdline === undefined || cmdline.length === 0) return 'process-gone';
  const named = cmdline.some((arg, i) => arg === '-name' && cmdline[i + 1] === name);
  const here = cmdline.some((arg) => arg.startsWith(`${dir}/`));
  return named && here ? 'ours' : 'foreign-process';
}

/** A process's command line from /proc, or undefined when it is gone (a zombie's is empty). */
export async function readCmdline(pid: number): Promise<string[] | undefined> {
  const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (raw === undefined || raw === '') return undefined;
  return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
}

/** Facts about the machine a benchmark ran on, written beside every result. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';

export interface MachineInfo {
  date: string;
  commit: string;
  cpu: string;
  cores: number;
  /** The CPU flags say it runs under a hypervisor (its cores may be shared with other guests). */
  virtualMachine: boolean;
  memoryGiB: number;
  node: string;
  rustc: string;
  kernel: string;
}

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

function cpuFlags(): string[] {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return line?.split(':')[1]?.trim().split(/\s+/) ?? [];
  } catch {
    return [];
  }
}

export function machineInfo(): MachineInfo {
  return {
    date: new Date().toISOString(),
    commit: run('git', ['rev-parse', '--short', 'HEAD']),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    virtualMachine: cpuFlags().includes('hypervisor'),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    rustc: run('rustc', ['--version']),
    kernel: run('uname', ['-sr']),
  };
}

export function machineMarkdown(m: MachineInfo): string {
  return [
    `- date: ${m.date}, commit ${m.commit}`,
    `- CPU: ${m.cpu}, ${m.cores} cores${m.virtualMachine ? ' (a virtual machine)' : ''}, ${m.memoryGiB} GiB RAM, ${m.kernel}`,
    `- ${m.rustc}, Node ${m.node}`,
  ].join('\n');
}

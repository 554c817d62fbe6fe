/**
 * Benchmark inputs. "vm-like" is a real QEMU migration stream of the test guest when QEMU is
 * installed (captured once by bench/datasets/capture-qemu-stream.sh and cached under .dwcp/),
 * otherwise the documented generator in libs/hde/src/sample-data.ts. The report says which.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes, vmLikeData } from '@novacron/hde';

export interface Dataset {
  name: string;
  source: string;
  data: Buffer;
}

const REPO = resolve(__dirname, '..', '..');

function hasQemu(): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function qemuVersion(): string {
  try {
    const line = execFileSync('qemu-system-x86_64', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
    return `QEMU ${/version ([0-9.]+)/.exec(line)?.[1] ?? 'unknown'}`;
  } catch {
    return 'QEMU';
  }
}

function qemuStream(memMib: number): Buffer | null {
  const out = join(REPO, '.dwcp', 'bench', `qemu-stream-${memMib}.bin`);
  if (!existsSync(out)) {
    if (!hasQemu()) return null;
    process.stderr.write(`capturing a QEMU migration stream of a ${memMib} MiB test guest...\n`);
    execFileSync('bash', [join(REPO, 'bench', 'datasets', 'capture-qemu-stream.sh'), out, String(memMib)], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
  return readFileSync(out);
}

export function loadDatasets(sizeMib: number): Dataset[] {
  const random: Dataset = {
    name: 'random',
    source: `xorshift32 random bytes, ${sizeMib} MiB`,
    data: randomBytes(sizeMib * 2 ** 20, 12345),
  };
  const stream = process.env.DWCP_BENCH_NO_QEMU ? null : qemuStream(256);
  const vmLike: Dataset = stream
    ? {
        name: 'vm-like',
        source: `real ${qemuVersion()} migration stream of the 256 MiB test guest (${(stream.length / 2 ** 20).toFixed(1)} MiB)`,
        data: stream,
      }
    : {
        name: 'vm-like',
        source: `generator (libs/hde/src/sample-data.ts): zero/library/text/random pages, ${sizeMib} MiB`,
        data: vmLikeData(sizeMib * 2 ** 20, 42),
      };
  return [random, vmLike];
}

/**
 * `--disk SIZE[,image=NAME][,format=qcow2|raw]`, repeatable: the VM's disks in order (the guest's vda,
 * vdb, ...). SIZE is a whole number with a unit (M, G or T, binary: 4G is 4 GiB).
 * A bad value is commander's usage error (exit 2) naming the option; the API judges the rest.
 */
import { InvalidArgumentError } from 'commander';

export interface DiskRequest {
  sizeBytes: number;
  format?: string;
  image?: string;
}

const UNIT: Record<string, number> = { M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
const KEYS = new Set(['image', 'format']);

export function parseSize(text: string): number {
  const m = /^(\d+)([MGT])(i?B)?$/i.exec(text.trim());
  const unit = m ? UNIT[(m[2] ?? '').toUpperCase()] : undefined;
  const n = m ? Number(m[1]) * (unit ?? 0) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidArgumentError(`size "${text}" must be a whole number with M, G or T (e.g. 4G)`);
  }
  return n;
}

/** Commander's reducer: appends one disk to those given before. */
export function diskOption(value: string, previous: DiskRequest[] = []): DiskRequest[] {
  const [size = '', ...pairs] = value.split(',');
  const disk: DiskRequest = { sizeBytes: parseSize(size) };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = pair.slice(0, eq);
    if (eq <= 0 || !KEYS.has(key)) {
      throw new InvalidArgumentError(`"${pair}" is not image=NAME or format=qcow2|raw`);
    }
    disk[key as 'image' | 'format'] = pair.slice(eq + 1);
  }
  return [...previous, disk];
}

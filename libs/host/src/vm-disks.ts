/**
 * The disk files of this node's VMs: `<disksDir>/<vmId>/<diskId>.<format>`, made the first time the
 * VM launches here and kept across stops, restarts of the node and of its QEMU, and removed once the
 * VM's record is gone. A disk on a base image starts from that image's `disk.qcow2` or `disk.raw`: a
 * qcow2 disk as an overlay (`qemu-img create -b`), a raw one as a whole copy; any other starts blank.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DomainError, type VmDiskRecord, type VmRecord } from '@novacron/cluster-state';
import type { VmDisk } from '@novacron/hypervisor';
import type { ImageCatalog } from './image-catalog';

const run = promisify(execFile);
const VM_ID = /^vm-[a-z0-9]{1,32}$/;

export interface VmDisksOptions {
  /** `qemu-img`, by default from PATH. */
  qemuImg?: string;
}

export class VmDisks {
  constructor(
    readonly dir: string,
    private readonly images: ImageCatalog,
    private readonly options: VmDisksOptions = {},
  ) {}

  /** The files of `vm`'s disks, in order, made where missing; ERR_NOT_FOUND names a base image this node lacks. */
  async prepare(vm: Pick<VmRecord, 'id' | 'disks'>): Promise<VmDisk[]> {
    const disks = vm.disks ?? [];
    if (disks.length === 0) return [];
    const dir = join(this.dir, vm.id);
    await mkdir(dir, { recursive: true });
    const files: VmDisk[] = [];
    for (const disk of disks) {
      const path = join(dir, `${disk.id}.${disk.format}`);
      if (!existsSync(path)) await this.create(path, disk);
      files.push({ id: disk.id, path, format: disk.format });
    }
    return files;
  }

  /** Removes the disks of the VMs `deleted` (never one in `keep`); returns those it found. */
  async remove(deleted: readonly string[], keep: ReadonlySet<string>): Promise<string[]> {
    const found = deleted.filter((id) => VM_ID.test(id) && !keep.has(id) && existsSync(join(this.dir, id)));
    for (const id of found) await rm(join(this.dir, id), { recursive: true, force: true });
    return found;
  }

  private async create(path: string, disk: VmDiskRecord): Promise<void> {
    // Made under a temporary name and renamed, so a crash never leaves a half-made disk to boot from.
    const partial = `${path}.partial`;
    const base = disk.image === undefined ? undefined : this.images.baseDisk(disk.image);
    const size = String(disk.sizeBytes);
    try {
      if (disk.format === 'qcow2') {
        const backing = base === undefined ? [] : ['-b', base.path, '-F', base.format];
        await this.qemuImg(['create', '-q', '-f', 'qcow2', ...backing, partial, size]);
      } else if (base === undefined) {
        await writeFile(partial, '');
        await truncate(partial, disk.sizeBytes);
      } else {
        // A raw disk on a base is a whole copy of it (sparse where the base is), grown to its size.
        await this.qemuImg(['convert', '-q', '-f', base.format, '-O', 'raw', base.path, partial]);
        await this.qemuImg(['resize', '-q', '-f', 'raw', partial, size]);
      }
    } catch (e) {
      await rm(partial, { force: true });
      throw e;
    }
    await rename(partial, path);
  }

  private async qemuImg(args: string[]): Promise<void> {
    try {
      await run(this.options.qemuImg ?? 'qemu-img', args);
    } catch (e) {
      const why = (e as { stderr?: string }).stderr?.trim() || (e instanceof Error ? e.message : String(e));
      throw new DomainError('ERR_UNAVAILABLE', `qemu-img ${args[0]}: ${why}`, 'disks');
    }
  }
}

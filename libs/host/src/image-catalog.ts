/**
 * VM images on this node: `<imagesDir>/<image>/vmlinux` (a kernel for direct boot), optionally
 * `initramfs.cpio.gz` and a `cmdline` file. A VM record names its image; this turns the record into
 * the VmSpec the hypervisor launches. Every node that may host the VM needs the same image.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DomainError, type VmRecord } from '@novacron/cluster-state';
import type { VmSpec } from '@novacron/hypervisor';

const IMAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export class ImageCatalog {
  constructor(readonly dir: string) {}

  /** The kernel of some image here (for the KVM probe), if there is one. */
  anyKernel(): string | undefined {
    if (!existsSync(this.dir)) return undefined;
    for (const name of readdirSync(this.dir).sort()) {
      const kernel = join(this.dir, name, 'vmlinux');
      if (existsSync(kernel)) return kernel;
    }
    return undefined;
  }

  /** The disk of image `name` that VM disks overlay: `disk.qcow2` or `disk.raw` in its directory; ERR_NOT_FOUND without one. */
  baseDisk(name: string): { path: string; format: 'qcow2' | 'raw' } {
    if (!IMAGE_NAME.test(name))
      throw new DomainError('ERR_INVALID_ARGUMENT', `bad image name ${name}`, 'disks');
    for (const format of ['qcow2', 'raw'] as const) {
      const path = resolve(this.dir, name, `disk.${format}`);
      if (existsSync(path)) return { path, format };
    }
    throw new DomainError(
      'ERR_NOT_FOUND',
      `image ${name} has no disk on this node (no disk.qcow2 or disk.raw in ${join(this.dir, name)})`,
      'disks',
    );
  }

  /** The spec for `vm` on this node; ERR_NOT_FOUND (naming the image) when this node lacks the image. */
  specFor(vm: Pick<VmRecord, 'id' | 'image' | 'vcpus' | 'memoryMiB'>, name: string = vm.id): VmSpec {
    if (!IMAGE_NAME.test(vm.image))
      throw new DomainError('ERR_INVALID_ARGUMENT', `bad image name ${vm.image}`);
    const dir = join(this.dir, vm.image);
    const kernel = join(dir, 'vmlinux');
    if (!existsSync(kernel)) {
      throw new DomainError('ERR_NOT_FOUND', `image ${vm.image} is not on this node (no ${kernel})`, 'image');
    }
    const spec: VmSpec = { name, memoryMiB: vm.memoryMiB, cpus: vm.vcpus, kernel };
    const initrd = join(dir, 'initramfs.cpio.gz');
    if (existsSync(initrd)) spec.initrd = initrd;
    const cmdline = join(dir, 'cmdline');
    if (existsSync(cmdline)) spec.cmdline = readFileSync(cmdline, 'utf8').trim();
    return spec;
  }
}

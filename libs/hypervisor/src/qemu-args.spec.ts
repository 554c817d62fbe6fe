import { describe, expect, it } from 'vitest';
import { HypervisorError } from './errors';
import { buildQemuArgs } from './qemu-args';

const files = { consoleFile: '/run/vm/console.log', pidFile: '/run/vm/qemu.pid' };

const guest = {
  name: 'vm-1',
  memoryMiB: 128,
  kernel: '/g/vmlinux',
  initrd: '/g/initrd.gz',
  cmdline: 'console=ttyS0',
};

describe('buildQemuArgs', () => {
  it('builds a headless, default-free kernel boot with QMP on a socket, the console in a file and a pidfile', () => {
    const args = buildQemuArgs(guest, {
      accelerator: 'tcg',
      qmpSocket: '/run/vm/qmp.sock',
      incoming: false,
      ...files,
    });
    expect(args).toEqual([
      '-name',
      'vm-1',
      '-accel',
      'tcg',
      '-m',
      '128',
      '-smp',
      '1',
      '-nodefaults',
      '-display',
      'none',
      '-no-reboot',
      '-qmp',
      'unix:/run/vm/qmp.sock,server=on,wait=off',
      '-chardev',
      'file,id=console0,path=/run/vm/console.log',
      '-serial',
      'chardev:console0',
      '-pidfile',
      '/run/vm/qemu.pid',
      '-kernel',
      '/g/vmlinux',
      '-initrd',
      '/g/initrd.gz',
      '-append',
      'console=ttyS0',
    ]);
  });

  it('makes a destination wait for migrate-incoming', () => {
    const args = buildQemuArgs(guest, { accelerator: 'kvm', qmpSocket: '/q', incoming: true, ...files });
    expect(args.slice(-2)).toEqual(['-incoming', 'defer']);
    expect(args).toContain('kvm');
  });

  it('attaches disks as named block nodes on virtio-blk, in order, and doubles commas inside option values', () => {
    const spec = {
      name: 'd',
      memoryMiB: 256,
      cpus: 2,
      disks: [
        { id: 'vda', path: '/img/a,b.qcow2', format: 'qcow2' as const },
        { id: 'vdb', path: '/img/c.raw', format: 'raw' as const },
      ],
    };
    const args = buildQemuArgs(spec, {
      accelerator: 'tcg',
      qmpSocket: '/s,1/qmp',
      incoming: false,
      ...files,
    });
    const blockdevs = args.flatMap((a, i) => (args[i - 1] === '-blockdev' ? [JSON.parse(a)] : []));
    expect(blockdevs).toEqual([
      { driver: 'qcow2', 'node-name': 'disk-vda', file: { driver: 'file', filename: '/img/a,b.qcow2' } },
      { driver: 'raw', 'node-name': 'disk-vdb', file: { driver: 'file', filename: '/img/c.raw' } },
    ]);
    const devices = args.filter((_, i) => args[i - 1] === '-device');
    expect(devices).toEqual([
      'virtio-blk-pci,drive=disk-vda,id=dev-vda,serial=vda',
      'virtio-blk-pci,drive=disk-vdb,id=dev-vdb,serial=vdb',
    ]);
    expect(args).toContain('unix:/s,,1/qmp,server=on,wait=off');
    expect(args[args.indexOf('-smp') + 1]).toBe('2');
    expect(args).not.toContain('-kernel');
  });

  it.each([
    [{ ...guest, name: 'a b' }, 'name'],
    [{ ...guest, memoryMiB: 8 }, 'memoryMiB'],
    [{ ...guest, cpus: 0 }, 'cpus'],
    [{ name: 'x', memoryMiB: 64 }, 'kernel'],
    [
      { name: 'x', memoryMiB: 64, disks: [{ id: 'vda', path: '/d', format: 'raw' as const }], initrd: '/i' },
      'initrd',
    ],
    [{ ...guest, disks: [{ id: 'vd a', path: '/d', format: 'raw' as const }] }, 'disks'],
    [
      {
        ...guest,
        disks: [
          { id: 'vda', path: '/d', format: 'raw' as const },
          { id: 'vda', path: '/e', format: 'raw' as const },
        ],
      },
      'disks',
    ],
  ])('refuses a bad spec and names the field (%#)', (spec, field) => {
    try {
      buildQemuArgs(spec, { accelerator: 'tcg', qmpSocket: '/q', incoming: false, ...files });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(HypervisorError);
      expect(error).toMatchObject({ code: 'ERR_HV_INVALID_ARGUMENT', field });
    }
  });
});

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureGuestBuilt, guestSpec, HEARTBEAT, isAlive, qemuSkipReason } from '../../../test/guest/guest';
import { describeUnless } from '../../../test/tools';
import { QemuDriver } from './qemu-driver';
import { identifyQemu } from './qemu-runtime';
import { waitForLine } from './serial-console';

describe('identifyQemu', () => {
  const dir = '/data/vms/vm-1';
  const qemu = ['qemu-system-x86_64', '-name', 'vm-1', '-pidfile', `${dir}/qemu.pid`];

  it('knows its QEMU by the VM name and the runtime directory on its command line', () => {
    expect(identifyQemu(42, qemu, 'vm-1', dir)).toBe('ours');
  });

  it('tells a missing pidfile, a dead process and a reused pid apart', () => {
    expect(identifyQemu(undefined, undefined, 'vm-1', dir)).toBe('no-pidfile');
    expect(identifyQemu(42, undefined, 'vm-1', dir)).toBe('process-gone');
    expect(identifyQemu(42, [], 'vm-1', dir)).toBe('process-gone');
    expect(identifyQemu(42, ['/usr/bin/sleep', '100'], 'vm-1', dir)).toBe('foreign-process');
    // Another VM's QEMU, or this VM's name under another node's data dir.
    expect(identifyQemu(42, qemu, 'vm-2', '/data/vms/vm-2')).toBe('foreign-process');
    expect(identifyQemu(42, qemu, 'vm-1', '/other/vms/vm-1')).toBe('foreign-process');
  });
});

const quiet = { log: () => undefined, warn: () => undefined };
const describeQemu = describeUnless(qemuSkipReason());

describeQemu('a detached QemuDriver: VMs outlive it and a later driver takes them over', () => {
  let root: string;
  const drivers: QemuDriver[] = [];
  const driver = () => {
    const d = new QemuDriver({ accelerator: 'tcg', runtimeRoot: root, detached: true, logger: quiet });
    drivers.push(d);
    return d;
  };

  beforeAll(async () => {
    await ensureGuestBuilt();
    root = await mkdtemp(join(tmpdir(), 'dwcp-adopt-'));
  }, 620_000);

  afterAll(async () => {
    for (const d of drivers) await d.close();
    await rm(root, { recursive: true, force: true });
  });

  it('release leaves QEMU running; adopt finds the same pid, its console from the file, and destroy ends it', async () => {
    const first = driver();
    const vm = await first.launch(guestSpec('adoptee'));
    const before = Number(
      (await waitForLine(first.serialLines(vm, { replay: true }), HEARTBEAT, { timeoutMs: 60_000 }))[1],
    );
    await first.release();
    expect(isAlive(vm.pid)).toBe(true);

    const second = driver();
    expect(await second.leftovers()).toEqual(['adoptee']);
    const adopted = await second.adopt('adoptee');
    expect(adopted.pid).toBe(vm.pid);
    expect((await second.status(adopted)).state).toBe('running');
    // The console read back from the file holds the heartbeats printed while nobody watched, in order.
    const lines = second.serialLines(adopted, { replay: true });
    const seen: number[] = [];
    for (;;) {
      const seq = Number((await waitForLine(lines, HEARTBEAT, { timeoutMs: 10_000 }))[1]);
      seen.push(seq);
      if (seq > before + 2) break;
    }
    expect(seen).toContain(before);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(seen.slice(seen.indexOf(before))).toEqual(
      seen.slice(seen.indexOf(before)).map((_, i) => before + i),
    );

    await expect(second.adopt('adoptee')).rejects.toMatchObject({ code: 'ERR_HV_ADOPT_FAILED' });
    await second.destroy(adopted);
    expect(isAlive(vm.pid)).toBe(false);
    expect(existsSync(adopted.runtimeDir as string)).toBe(false);
  }, 120_000);

  it('refuses a dead QEMU and a reused pid with their reasons; discard kills only its own QEMU', async () => {
    const d = driver();
    const stale = join(root, 'stale');
    await mkdir(stale);
    await writeFile(join(stale, 'qemu.pid'), '999999999\n');
    await expect(d.adopt('stale')).rejects.toMatchObject({ reason: 'process-gone' });

    const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
    const foreign = join(root, 'foreign');
    await mkdir(foreign);
    await writeFile(join(foreign, 'qemu.pid'), `${stranger.pid}\n`);
    await expect(d.adopt('foreign')).rejects.toMatchObject({ reason: 'foreign-process' });
    await expect(d.adopt('never')).rejects.toMatchObject({ reason: 'no-runtime-dir' });

    await d.discard('stale');
    await d.discard('foreign');
    expect(isAlive(stranger.pid)).toBe(true);
    expect(existsSync(stale) || existsSync(foreign)).toBe(false);
    stranger.kill('SIGKILL');
  });
});

import { describe, expect, it, vi } from 'vitest';
import { followMigration } from './migration-watch';
import { SimulatedDriver } from './simulated-driver';

const spec = { name: 'sim', memoryMiB: 64, kernel: '/nowhere/vmlinux' };

describe('SimulatedDriver (no hypervisor: a stand-in, not evidence about QEMU)', () => {
  it('warns at construction and marks every handle simulated', async () => {
    const warn = vi.fn();
    const driver = new SimulatedDriver({ logger: { log: vi.fn(), warn }, heartbeatIntervalMs: 0 });
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/SIMULATED/));
    const vm = await driver.launch(spec);
    expect(vm).toMatchObject({ simulated: true, pid: undefined, accelerator: 'simulated' });
    await driver.close();
  });

  it('models stop/cont and a migration paced by max-bandwidth that hands over to the destination', async () => {
    let now = 1_000_000;
    const driver = new SimulatedDriver({
      logger: { log: vi.fn(), warn: vi.fn() },
      now: () => now,
      heartbeatIntervalMs: 0,
    });
    const source = await driver.launch(spec);
    await driver.stop(source);
    expect(await driver.status(source)).toEqual({ state: 'paused', running: false });
    await driver.cont(source);
    const destination = await driver.prepareIncoming(spec, 'unix:/tmp/sim.sock');
    expect((await driver.status(destination)).state).toBe('inmigrate');
    await driver.setMigrationParameters(source, { maxBandwidthBytesPerSec: 32 * 1024 * 1024 });
    await driver.migrate(source, 'unix:/tmp/sim.sock');
    now += 1000;
    expect(await driver.queryMigrate(source)).toMatchObject({
      status: 'active',
      transferredBytes: 32 * 1024 * 1024,
    });
    now += 1000;
    const readings = [];
    for await (const progress of followMigration(driver, source, { intervalMs: 1 })) readings.push(progress);
    expect(readings.at(-1)).toMatchObject({ status: 'completed', remainingBytes: 0, totalTimeMs: 2000 });
    expect((await driver.status(source)).state).toBe('postmigrate');
    expect((await driver.status(destination)).state).toBe('running');
    await driver.close();
  });
});

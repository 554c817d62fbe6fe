import { createServer } from 'node:net';
import { beforeAll, expect, it } from 'vitest';
import { ensureGuestBuilt, guestSpec, HEARTBEAT, qemuSkipReason, READY } from '../../../test/guest/guest';
import { describeUnless } from '../../../test/tools';
import { migrateWithQemuAlone } from './qemu-alone';
import { waitForLine } from './serial-console';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

describeUnless(qemuSkipReason())('QEMU-alone migration with real QEMU and the test guest', () => {
  beforeAll(() => ensureGuestBuilt(), 620_000);

  for (const multifd of [undefined, { channels: 2, compression: 'zstd' } as const]) {
    it(`${multifd ? 'multifd 2x zstd' : 'one TCP connection'}: the guest's real pause is STOP→RESUME and it beats on the destination`, async () => {
      let beatAfter: string | undefined;
      const r = await migrateWithQemuAlone({
        spec: guestSpec(`alone-${multifd ? 'multifd' : 'tcp'}`),
        host: '127.0.0.1',
        port: await freePort(),
        ...(multifd ? { multifd } : {}),
        ready: READY,
        capMs: 120_000,
        afterResume: async (destination, vm) => {
          const beat = await waitForLine(destination.serialLines(vm), HEARTBEAT, {
            timeoutMs: 15_000,
            what: 'a heartbeat on the destination',
          });
          beatAfter = beat[0];
        },
      });
      expect(r.status).toBe('completed');
      expect(r.stopAtMs).toBeGreaterThanOrEqual(r.startedAtMs - 1000);
      expect(r.resumeAtMs).toBeGreaterThanOrEqual(r.stopAtMs ?? Number.POSITIVE_INFINITY);
      expect(r.pauseMs).toBe((r.resumeAtMs ?? 0) - (r.stopAtMs ?? 0));
      expect(r.pauseMs).toBeLessThan(r.totalMs);
      expect(r.final.transferredBytes).toBeGreaterThan(16 * 1024 * 1024);
      expect(beatAfter).toMatch(HEARTBEAT);
    }, 240_000);
  }
});

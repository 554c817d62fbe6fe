/**
 * The baseline the demo compares against: QEMU's own live migration of the same guest over one TCP
 * connection on the same path (the emulated link, or loopback), with QEMU's default parameters, the
 * way an operator without DWCP would run it. The destination QEMU runs where node 3 runs.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuDriver, type VmSpec, waitForLine } from '@novacron/hypervisor';

export interface PlainQemuResult {
  finished: boolean;
  /** From `migrate` to completed (or the cap). */
  totalMs: number;
  /** QEMU's own figure. */
  downtimeMs?: number;
  /** Bytes QEMU wrote to the socket. */
  transferredBytes: number;
  note?: string;
}

export interface PlainQemuOptions {
  spec: VmSpec;
  /** Where the destination listens and the source connects. */
  host: string;
  port: number;
  /** Runs the destination QEMU in this network namespace. */
  destinationNamespace?: string;
  capMs: number;
}

const READY = /DWCP-READY/;

export async function plainQemuMigration(o: PlainQemuOptions): Promise<PlainQemuResult> {
  const dir = mkdtempSync(join(tmpdir(), 'dwcp-demo-qemu-'));
  const quiet = { log: () => undefined, warn: () => undefined };
  const source = new QemuDriver({ logger: quiet });
  let qemuBinary = 'qemu-system-x86_64';
  if (o.destinationNamespace) {
    // QMP and the console are unix sockets and pipes, so a QEMU inside the namespace is driven from here.
    qemuBinary = join(dir, 'qemu-in-namespace');
    writeFileSync(
      qemuBinary,
      `#!/bin/sh\nexec ip netns exec ${o.destinationNamespace} qemu-system-x86_64 "$@"\n`,
    );
    chmodSync(qemuBinary, 0o755);
  }
  const destination = new QemuDriver({ qemuBinary, logger: quiet });
  try {
    const vm = await source.launch({ ...o.spec, name: `${o.spec.name}-plain` });
    const lines = source.serialLines(vm, { replay: true });
    await waitForLine(lines, READY, { timeoutMs: 90_000, what: 'the guest to boot' });
    await lines.return?.();
    await destination.prepareIncoming(
      { ...o.spec, name: `${o.spec.name}-plain-in` },
      `tcp:${o.host}:${o.port}`,
    );
    const started = performance.now();
    await source.migrate(vm, `tcp:${o.host}:${o.port}`);
    const deadline = started + o.capMs;
    for (;;) {
      const p = await source.queryMigrate(vm);
      if (p.status === 'completed' || p.status === 'failed' || p.status === 'cancelled') {
        const totalMs = performance.now() - started;
        if (p.status !== 'completed') {
          return {
            finished: false,
            totalMs,
            transferredBytes: p.transferredBytes,
            note: `QEMU's migration ${p.status}`,
          };
        }
        return {
          finished: true,
          totalMs,
          transferredBytes: p.transferredBytes,
          ...(p.downtimeMs !== undefined ? { downtimeMs: p.downtimeMs } : {}),
        };
      }
      if (performance.now() > deadline) {
        await source.cancelMigration(vm);
        return {
          finished: false,
          totalMs: o.capMs,
          transferredBytes: p.transferredBytes,
          note: `did not finish in ${Math.round(o.capMs / 1000)} s`,
        };
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await Promise.allSettled([source.close(), destination.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

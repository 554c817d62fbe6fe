/**
 * QEMU's own live migration of a guest, with no DWCP in the path: the baseline the demo and
 * bench:migrate compare against. The pause is measured as it is for DWCP: the source's STOP event
 * to the destination's RESUME event, on QMP's timestamps, not QEMU's self-reported `downtime`.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HypervisorLogger, VmHandle, VmSpec } from './driver';
import type { VmEvent } from './events';
import type { MigrationProgress } from './migration';
import { followMigration } from './migration-watch';
import { QemuDriver } from './qemu-driver';
import { waitForLine } from './serial-console';

export interface QemuAloneOptions {
  /** The guest; the source boots it, the destination starts the same spec with `-incoming`. */
  spec: VmSpec;
  /** Where the destination listens and the source connects (`tcp:HOST:PORT`). */
  host: string;
  port: number;
  /** Runs the source or the destination QEMU in this network namespace (`ip netns exec`). */
  sourceNamespace?: string;
  destinationNamespace?: string;
  /** QEMU multifd: this many channels, with this compression. Omitted: one TCP connection. */
  multifd?: { channels: number; compression: 'none' | 'zlib' | 'zstd' };
  /** QEMU `max-bandwidth`, B/s; omitted: QEMU's default. */
  maxBandwidthBytesPerSec?: number;
  /** The guest is booted when a serial line matches this. */
  ready: RegExp;
  bootTimeoutMs?: number;
  /** Cancels the migration after this long. */
  capMs: number;
  logger?: HypervisorLogger;
  /** Called with both VMs once the guest has booted and the destination waits, before `migrate`. */
  beforeMigrate?: (vms: {
    source: QemuDriver;
    sourceVm: VmHandle;
    destination: QemuDriver;
    destinationVm: VmHandle;
  }) => Promise<void>;
  /** Called after the destination resumed, before both QEMUs are destroyed (e.g. to check the guest). */
  afterResume?: (destination: QemuDriver, vm: VmHandle) => Promise<void>;
}

export interface QemuAloneResult {
  /** QEMU's final status, or `did-not-finish` when the cap cancelled it. */
  status: MigrationProgress['status'] | 'did-not-finish';
  /** Wall clock (ms since the epoch) when `migrate` was issued. */
  startedAtMs: number;
  /** From `migrate` to the destination's RESUME (or to the end, when it never resumed). */
  totalMs: number;
  /** The source's STOP and the destination's RESUME, QMP timestamps (ms since the epoch). */
  stopAtMs?: number;
  resumeAtMs?: number;
  /** The guest's real pause: resumeAtMs − stopAtMs. */
  pauseMs?: number;
  /** The last query-migrate reading on the source (its `downtimeMs` is QEMU's own figure). */
  final: MigrationProgress;
  note?: string;
}

/** A qemu-system-x86_64 that runs in `namespace` and, for a multifd destination, starts with multifd on. */
function wrapper(
  dir: string,
  name: string,
  namespace?: string,
  multifd?: QemuAloneOptions['multifd'],
): string | undefined {
  if (namespace === undefined && multifd === undefined) return undefined;
  // A destination must have multifd before `migrate-incoming` opens its listener, and the driver
  // issues that as soon as QEMU is up: `-global migration.*` sets it from the command line instead.
  const globals = multifd
    ? ` -global migration.x-multifd=on -global migration.multifd-channels=${multifd.channels} -global migration.multifd-compression=${multifd.compression}`
    : '';
  const ns = namespace ? `ip netns exec ${namespace} ` : '';
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\nexec ${ns}qemu-system-x86_64 "$@"${globals}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** The time of the first event of `type`, or undefined when the events end or `timeoutMs` passes. */
async function eventAt(
  events: AsyncIterator<VmEvent>,
  type: 'stop' | 'resume',
  timeoutMs: number,
): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((res) => {
    timer = setTimeout(() => res(undefined), timeoutMs);
    timer.unref();
  });
  try {
    for (;;) {
      const next = await Promise.race([events.next(), timeout]);
      if (next === undefined || next.done) return undefined;
      if (next.value.type === type) return next.value.atMs;
      if (next.value.type === 'exit') return undefined;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Boots `spec` on a source QEMU, migrates it with QEMU alone to a destination QEMU, and measures it. */
export async function migrateWithQemuAlone(o: QemuAloneOptions): Promise<QemuAloneResult> {
  const dir = mkdtempSync(join(tmpdir(), 'dwcp-qemu-alone-'));
  const logger = o.logger ?? { log: () => undefined, warn: () => undefined };
  const sourceBinary = wrapper(dir, 'qemu-source', o.sourceNamespace);
  const destinationBinary = wrapper(dir, 'qemu-destination', o.destinationNamespace, o.multifd);
  const source = new QemuDriver({
    logger,
    dieWithParent: true,
    ...(sourceBinary ? { qemuBinary: sourceBinary } : {}),
  });
  const destination = new QemuDriver({
    logger,
    dieWithParent: true,
    ...(destinationBinary ? { qemuBinary: destinationBinary } : {}),
  });
  try {
    const vm = await source.launch({ ...o.spec, name: `${o.spec.name}-src` });
    const lines = source.serialLines(vm, { replay: true });
    await waitForLine(lines, o.ready, { timeoutMs: o.bootTimeoutMs ?? 90_000, what: 'the guest to boot' });
    await lines.return?.();
    const uri = `tcp:${o.host}:${o.port}` as const;
    const incoming = await destination.prepareIncoming({ ...o.spec, name: `${o.spec.name}-dst` }, uri);
    if (o.multifd) {
      const qmp = source.qmp(vm);
      await qmp.execute('migrate-set-capabilities', {
        capabilities: [{ capability: 'multifd', state: true }],
      });
      await qmp.execute('migrate-set-parameters', {
        'multifd-channels': o.multifd.channels,
        'multifd-compression': o.multifd.compression,
      });
    }
    if (o.maxBandwidthBytesPerSec !== undefined) {
      await source.setMigrationParameters(vm, { maxBandwidthBytesPerSec: o.maxBandwidthBytesPerSec });
    }
    await o.beforeMigrate?.({ source, sourceVm: vm, destination, destinationVm: incoming });
    const sourceEvents = source.events(vm);
    const destinationEvents = destination.events(incoming);
    // Both are read from the start, so no event is missed; they end with their iterators.
    const stopped = eventAt(sourceEvents, 'stop', o.capMs + 30_000);
    const resumed = eventAt(destinationEvents, 'resume', o.capMs + 30_000);
    const startedAtMs = Date.now();
    const started = performance.now();
    await source.migrate(vm, uri);
    let final: MigrationProgress | undefined;
    let didNotFinish = false;
    for await (const p of followMigration(source, vm)) {
      final = p;
      if (!didNotFinish && performance.now() - started > o.capMs) {
        didNotFinish = true;
        await source.cancelMigration(vm);
      }
    }
    const last = final as MigrationProgress;
    const result: QemuAloneResult = {
      status: didNotFinish ? 'did-not-finish' : last.status,
      startedAtMs,
      totalMs: performance.now() - started,
      final: last,
    };
    if (last.status !== 'completed') {
      await Promise.allSettled([sourceEvents.return?.(), destinationEvents.return?.()]);
      result.note = didNotFinish
        ? `did not finish in ${Math.round(o.capMs / 1000)} s`
        : `QEMU's migration ${last.status}${last.errorDesc ? `: ${last.errorDesc}` : ''}`;
      return result;
    }
    const [stopAtMs, resumeAtMs] = await Promise.all([stopped, resumed]);
    await Promise.allSettled([sourceEvents.return?.(), destinationEvents.return?.()]);
    if (stopAtMs !== undefined) result.stopAtMs = stopAtMs;
    if (resumeAtMs !== undefined) {
      result.resumeAtMs = resumeAtMs;
      result.totalMs = resumeAtMs - startedAtMs;
      if (stopAtMs !== undefined) result.pauseMs = resumeAtMs - stopAtMs;
      await o.afterResume?.(destination, incoming);
    } else {
      result.note = 'the destination never resumed';
    }
    return result;
  } finally {
    await Promise.allSettled([source.close(), destination.close()]);
    rmSync(dir, { recursive: true, force: true });
  }
}

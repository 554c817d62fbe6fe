/**
 * What a MigrationRun needs from the outside, as narrow interfaces: unit tests hand it fakes, the
 * node and the QEMU tests hand it QemuDriver and the native data path.
 */
import type { MigrationPhase, MigrationStats } from '@novacron/cluster-state';
import type { HypervisorDriver } from '@novacron/hypervisor';

/** The driver calls a migration makes, on either end. */
export type MigrationHypervisor = Pick<
  HypervisorDriver,
  | 'prepareIncoming'
  | 'status'
  | 'cont'
  | 'destroy'
  | 'setMigrationParameters'
  | 'migrate'
  | 'queryMigrate'
  | 'cancelMigration'
  | 'events'
>;

/** The counters of `MigrationSource.stats()` a run reads. */
export interface SourceCounters {
  bytesFromQemu: number;
  wireBytes: number;
  compressionRatio: number;
  inventoryDedupBytes: number;
  streamDedupBytes: number;
}

/** The counters of `MigrationSink.stats()` a run reads. */
export interface SinkCounters {
  bytesToQemu: number;
  wireBytes: number;
}

/** One end of the data path; `finished` may be called once. */
export interface DataPathEnd<S> {
  stats(): S;
  finished(): Promise<{ stats: S }>;
  cancel(): void;
}

export interface DataPathSink extends DataPathEnd<SinkCounters> {
  /** Where the source sends (AMST's listener). */
  readonly port: number;
}

/** Unix socket paths for one migration, in a directory of their own. */
export interface MigrationSockets {
  /** The destination QEMU listens here (`migrate-incoming`); the sink connects. */
  sink: string;
  /** The source binds here; the source QEMU's `migrate` connects. */
  source: string;
  release(): Promise<void>;
}

/** The native data path QEMU → HDE → AMST → HDE → QEMU (`MigrationSource`/`MigrationSink`). */
export interface MigrationDataPath {
  sockets(migrationId: string): Promise<MigrationSockets>;
  openSink(socketPath: string): Promise<DataPathSink>;
  startSource(options: {
    socketPath: string;
    sinkPort: number;
    streams: number;
    zstdLevel: number;
  }): DataPathEnd<SourceCounters>;
}

/** Replicated stats plus what only a live progress report carries (the node keeps the former in Raft). */
export interface MigrationRunStats extends MigrationStats {
  /** Bytes of QEMU's stream still to send, as QEMU estimates them. */
  remainingBytes?: number;
  dirtyRateBytesPerSec?: number;
  /** Time left at QEMU's current rate, when it has measured one. */
  etaMs?: number;
}

/**
 * Told about every phase change and every progress report (the same phase again, new stats). The
 * node maps it to the `migration.phase` command; if it throws before `done`, the run fails.
 */
export type PhaseSink = (phase: MigrationPhase, stats: MigrationRunStats, reason?: string) => Promise<void>;

export interface MigrationLogger {
  log(message: string): void;
  warn(message: string): void;
}

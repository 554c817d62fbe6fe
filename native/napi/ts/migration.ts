/**
 * The migration data path through the addon: QEMU's stream goes source → HDE → AMST → HDE →
 * destination natively. JS starts both ends, reads their stats and cancels; no stream byte
 * crosses into JS.
 */
import * as binding from '../binding';
import { asBuffer, call, callAsync } from './errors';
import type { ChunkerOptions, ChunkStore, CodecOptions } from './hde';
import type { ListenOptions, ProbeResult, SendOptions } from './transport';

export interface MigrationSourceOptions {
  /** The unix socket to bind; QEMU's `migrate unix:<path>` connects to it. Must not exist yet. */
  socketPath: string;
  /** The sink's AMST listener (its `port`) and how to send there. */
  send: SendOptions;
  /** Codec of the chunks sent in full (default zstd level 1). */
  codec?: CodecOptions;
  chunker?: ChunkerOptions;
  /** The destination store's `ChunkStore.inventory()`: those chunks go out as 37-byte references. */
  inventory?: Uint8Array;
  /** Bytes asked of QEMU's socket per read (default 262144). */
  readSize?: number;
  /**
   * Bytes taken from QEMU and not yet acknowledged by the sink (default 8 MiB). QEMU cannot see
   * what sits here, so it adds to the real downtime: keep it near bandwidth × RTT.
   */
  bufferBytes?: number;
}

export interface MigrationSinkOptions {
  /** The destination QEMU's `migrate-incoming unix:<path>` socket; the sink connects, retrying. */
  socketPath: string;
  /**
   * The AMST listener; port 0 picks a free one (see `MigrationSink.port`). `windowFrames`
   * defaults to 128 here (8 MiB): a larger window hides a slow destination from QEMU.
   */
  listen: ListenOptions;
  /** How long to keep trying QEMU's socket once the transfer arrived (default 10000). */
  connectTimeoutMs?: number;
}

/**
 * A source's progress. `framesRejected` (AMST frames the sink found corrupt and had resent),
 * `connectionsFailed` and `connectionsOpened` are the transport's integrity counters, 0, 0 and the
 * stream count on a healthy path (docs/amst.md, Integrity).
 */
export type MigrationSourceStats = binding.BindingMigrationSourceStats;
export type MigrationSourceReport = binding.BindingMigrationSourceReport;
/**
 * A sink's progress. `framesRejected` (frames with a wrong CRC, dropped and asked for again) and
 * `connectionsCorrupted` (connections lost to a damaged TLS record, then replaced) stay 0 on a
 * healthy path; nothing they count ever reaches QEMU.
 */
export type MigrationSinkStats = binding.BindingMigrationSinkStats;
export type MigrationSinkReport = binding.BindingMigrationSinkReport;

/**
 * The sending side of one migration. `finished` resolves once QEMU closed its stream and the
 * sink's transport acknowledged every byte; it rejects with a `NativeError` (`ERR_MIGRATION_*`,
 * `ERR_AMST_*`, `ERR_HDE_*`) otherwise.
 */
export class MigrationSource {
  private constructor(private readonly handle: binding.MigrationSource) {}

  static start(options: MigrationSourceOptions): MigrationSource {
    const { inventory, ...rest } = options;
    const native = inventory === undefined ? rest : { ...rest, inventory: asBuffer(inventory) };
    return new MigrationSource(call(() => binding.MigrationSource.start(native)));
  }

  get socketPath(): string {
    return this.handle.socketPath;
  }

  stats(): MigrationSourceStats {
    return this.handle.stats();
  }

  finished(): Promise<MigrationSourceReport> {
    return callAsync(() => this.handle.finished());
  }

  /**
   * Probes the path to the sink over the migration's own AMST connections before QEMU's first
   * byte, for at most `maxMs` (1 to 60000). It ends early when goodput stops growing or when
   * QEMU's stream starts (which never waits on it); the connections stay up for the stream.
   * Rejects with `ERR_AMST_PROBE_FAILED` if the path is lost meanwhile; the migration goes on and
   * can be cancelled as usual.
   */
  probe(maxMs: number): Promise<ProbeResult> {
    return callAsync(() => this.handle.probe(maxMs));
  }

  /** Closes QEMU's socket (its migration fails, the VM keeps running) and drops AMST's connections. */
  cancel(): void {
    this.handle.cancel();
  }

  /**
   * Bounds AMST's send buffer (encoded bytes taken and not yet acknowledged) from now on: what
   * sits there is invisible to QEMU's downtime estimate. Under two frames is ignored.
   */
  setBufferBytes(bytes: number): void {
    this.handle.setBufferBytes(Math.max(0, Math.min(0xffff_ffff, Math.round(bytes))));
  }
}

/**
 * The receiving side of one migration: decodes into `store` (the node's one open ChunkStore;
 * a store directory is opened once per process, so the sink shares it rather than opening it by
 * path). `finished` resolves once every chunk was verified, the END record checked, and
 * everything written to QEMU.
 */
export class MigrationSink {
  private constructor(private readonly handle: binding.MigrationSink) {}

  static async start(options: MigrationSinkOptions, store: ChunkStore): Promise<MigrationSink> {
    return new MigrationSink(await callAsync(() => binding.MigrationSink.start(options, store.handle)));
  }

  /** The AMST listener's port, for the source's `send.port`. */
  get port(): number {
    return this.handle.port;
  }

  stats(): MigrationSinkStats {
    return this.handle.stats();
  }

  finished(): Promise<MigrationSinkReport> {
    return callAsync(() => this.handle.finished());
  }

  /** Closes AMST's connections and QEMU's socket. */
  cancel(): void {
    this.handle.cancel();
  }
}

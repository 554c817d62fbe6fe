/**
 * What a MigrationRun needs from the outside, as narrow interfaces: unit tests hand it fakes, the
 * node and the QEMU tests hand it QemuDriver and the native data path.
 */
import type { MigrationPath, MigrationPhase, MigrationStats } from '@novacron/cluster-state';
import type { HypervisorDriver } from '@novacron/hypervisor';

/**
 * The driver calls the source of a migration makes. Without `migrationParameters` the run cannot
 * tell whether QEMU takes a switchover bandwidth, and caps max-bandwidth instead.
 */
export type MigrationHypervisor = Pick<
  HypervisorDriver,
  | 'status'
  | 'cont'
  | 'destroy'
  | 'setMigrationParameters'
  | 'setMigrationCapabilities'
  | 'migrate'
  | 'queryMigrate'
  | 'cancelMigration'
  | 'events'
> &
  Partial<Pick<HypervisorDriver, 'migrationParameters'>>;

/** The driver calls the destination of a migration makes. */
export type IncomingHypervisor = Pick<HypervisorDriver, 'prepareIncoming' | 'status' | 'destroy' | 'events'> &
  Partial<Pick<HypervisorDriver, 'stderrTail'>>;

/** The counters of `MigrationSource.stats()` a run reads. */
export interface SourceCounters {
  bytesFromQemu: number;
  wireBytes: number;
  compressionRatio: number;
  inventoryDedupBytes: number;
  streamDedupBytes: number;
  /** The codec the encoder uses now (`zstd 1`, `lz4`, `none`); null or absent before QEMU connected. */
  codec?: string | null;
  /** How often the encoder's governor changed it. */
  codecChanges?: number;
  /** AMST's own counters of the transfer, the path samples' source; absent in some test doubles. */
  transfer?: TransferCounters;
}

/** What the native AMST sender reports of its transfer (a subset of its TransferStats). */
export interface TransferCounters {
  bytesWritten: number;
  bytesAcked: number;
  framesResent: number;
  /** Since the transfer started, on the sender's monotonic clock. */
  elapsedSeconds: number;
  connections: readonly ConnectionCounters[];
}

/**
 * One AMST connection's counters. `srttMs`/`minRttMs` are AMST's own (frame to ack, queueing
 * included); the rest is what the kernel (`TCP_INFO`) or quinn reported at the same refresh,
 * absent where it does not report it.
 */
export interface ConnectionCounters {
  srttMs?: number | null;
  minRttMs?: number | null;
  active: boolean;
  /** Congestion window, bytes (TCP: snd_cwnd × snd_mss; QUIC: quinn's cwnd). */
  cwndBytes?: number | null;
  /** The kernel's pacing rate, bytes per second (TCP only). */
  pacingRate?: number | null;
  /** The kernel's latest delivery-rate sample, bytes per second (TCP only). */
  kernelDeliveryRate?: number | null;
  /** Cumulative: TCP's retransmitted segments, or the packets quinn declared lost. */
  retransmits?: number | null;
  /** The kernel's (or quinn's) smoothed RTT, without AMST's queueing. */
  kernelRttMs?: number | null;
  /** The kernel's (or quinn's) minimum RTT. */
  kernelMinRttMs?: number | null;
  /** Congestion events (QUIC only). */
  congestionEvents?: number | null;
}

/** The counters of `MigrationSink.stats()` a run reads. */
export interface SinkCounters {
  bytesToQemu: number;
  wireBytes: number;
}

/** The source's end: it can also be told how much it may hold that the sink has not acknowledged. */
export interface SourceDataPathEnd extends DataPathEnd<SourceCounters> {
  setBufferBytes?(bytes: number): void;
  /**
   * Probes the path over the migration's own AMST connections before QEMU's first byte, for at
   * most `maxMs` (1 to 60000): ends when goodput stops growing, at `maxMs`, or when QEMU's stream
   * starts (which never waits on it). Rejects with a NativeError `ERR_AMST_PROBE_FAILED` when the
   * path is lost meanwhile; the source goes on and can be cancelled as usual.
   */
  probe?(maxMs: number): Promise<ProbeResult>;
}

/** What a probe before the stream measured (docs/amst.md, "Probe before the stream"). */
export interface ProbeResult {
  durationMs: number;
  /** Probe payload bytes the sink acknowledged (and discarded). */
  bytes: number;
  /** The best round's aggregate goodput over all connections, bytes per second. */
  goodputBytesPerSec: number;
  /** Smoothed RTT of the probe frames (send to ack, AMST and kernel queueing included). */
  rttMs?: number | null;
  minRttMs?: number | null;
  /** Connections probed. */
  connections: number;
  perConnection: readonly ProbeConnectionResult[];
  /** Goodput stopped growing (three rounds < 25 %), the time limit, or QEMU's stream started. */
  endedBy: 'plateau' | 'maxMs' | 'stream';
  /** Rounds of about one RTT. */
  rounds: number;
}

/** One connection's share of a probe, with the kernel's (TCP_INFO) or quinn's view at its end. */
export interface ProbeConnectionResult extends Omit<ConnectionCounters, 'srttMs' | 'minRttMs' | 'active'> {
  id: number;
  bytes: number;
  rttMs?: number | null;
  minRttMs?: number | null;
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

/** A unix socket path for one migration, in a directory of its own. */
export interface MigrationSocket {
  path: string;
  release(): Promise<void>;
}

/** Where the source sends: the destination's AMST listener, and the chunks it already holds. */
export interface IncomingOffer {
  host: string;
  port: number;
  /** The name the destination's certificate must carry. */
  serverName: string;
  /** The destination store's chunk ids (32 bytes each, sorted); absent when it holds none. */
  inventory?: Buffer;
}

/** What the destination reports once its VM runs with the whole stream. */
export interface IncomingResult {
  sink: SinkCounters;
  /** When the destination VM resumed (QMP's wall clock, ms since the epoch); absent if not seen. */
  resumedAtEpochMs?: number;
}

/**
 * The destination's half of one migration, in this process or behind the peer RPCs of another node:
 * a sink listening for the source and a destination QEMU waiting on it.
 */
export interface MigrationDestination {
  /** Opens the sink and starts the destination QEMU listening; says where the source sends. */
  prepare(): Promise<IncomingOffer>;
  /** Resolves once the sink fed the whole stream and the destination VM runs; rejects when that fails. */
  completion(): Promise<IncomingResult>;
  /**
   * Cancels the sink and destroys the destination QEMU, and answers `aborted`; idempotent. Once
   * the destination VM runs the guest it is never destroyed: the answer is `destination-runs`, and
   * the source must finish the migration forward.
   */
  abort(reason: string): Promise<AbortAnswer>;
}

/** What the destination did when told to abort. */
export type AbortAnswer = 'aborted' | 'destination-runs';

/** The destination's side of the native data path (`MigrationSink` and the node's ChunkStore). */
export interface SinkDataPath {
  socket(migrationId: string): Promise<MigrationSocket>;
  openSink(socketPath: string): Promise<DataPathSink>;
  /** How a source reaches a sink at `port`, with this node's inventory. */
  offer(port: number): IncomingOffer;
}

/** The source's side of the native data path (`MigrationSource`). */
export interface SourceDataPath {
  socket(migrationId: string): Promise<MigrationSocket>;
  startSource(options: {
    socketPath: string;
    offer: IncomingOffer;
    streams: number;
    zstdLevel: number;
    /** AMST's send buffer at the start (bytes taken and not yet acknowledged). */
    bufferBytes?: number;
  }): SourceDataPathEnd;
}

/** The stats a run reports: what the node records in Raft with each phase and progress report. */
export type MigrationRunStats = MigrationStats;

/**
 * Told about every phase change and every progress report (the same phase again, new stats). The
 * node maps it to the `migration.phase` command; if it throws before `done`, the run fails.
 */
export type PhaseSink = (
  phase: MigrationPhase,
  stats: MigrationRunStats,
  reason?: string,
  path?: MigrationPath,
) => Promise<void>;

export interface MigrationLogger {
  log(message: string): void;
  warn(message: string): void;
}

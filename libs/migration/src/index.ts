/**
 * @novacron/migration: carries one live migration of a VM through its phases (MigrationRun), with
 * the knobs chosen from the measured path, and its spans and metrics.
 */

export { IncomingMigration, type IncomingMigrationInput } from './incoming-migration';
export {
  type CertNames,
  IncomingMigrationError,
  type IncomingMigrationHandlers,
  incomingMigrationServer,
  incomingMigrationService,
  RemoteDestination,
  type RemoteDestinationOptions,
  type RpcIdentity,
} from './incoming-rpc';
export {
  DEDUP_RATIO_BUCKETS,
  MIGRATION_DOWNTIME_BUCKETS,
  MIGRATION_DURATION_BUCKETS,
  MigrationMetrics,
  type MigrationResult,
} from './metrics';
export {
  MIGRATION_AGENT,
  MigrationModule,
  type MigrationModuleOptions,
  MigrationService,
} from './migration.module';
export { type HostSnapshot, MigrationAgent, type MigrationAgentDeps } from './migration-agent';
export {
  type MigrationOutcome,
  MigrationRun,
  type MigrationRunInput,
  type MigrationRunOptions,
} from './migration-run';
export {
  NativeSinkPath,
  type NativeSinkPathOptions,
  NativeSourcePath,
  type NativeSourcePathOptions,
} from './native-data-path';
export {
  bufferBytesFor,
  chooseParameters,
  DEFAULT_BUFFER_BYTES,
  type MigrationParameterChoice,
  type PathMeasurement,
  QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
  QEMU_DEFAULT_MAX_BANDWIDTH,
} from './parameters';
export type {
  DataPathEnd,
  DataPathSink,
  IncomingHypervisor,
  IncomingOffer,
  IncomingResult,
  MigrationDestination,
  MigrationHypervisor,
  MigrationLogger,
  MigrationRunStats,
  MigrationSocket,
  PhaseSink,
  SinkCounters,
  SinkDataPath,
  SourceCounters,
  SourceDataPath,
} from './ports';

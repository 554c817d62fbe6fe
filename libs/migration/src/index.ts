/**
 * @novacron/migration: carries one live migration of a VM through its phases (MigrationRun), with
 * the knobs chosen from the measured path, and its spans and metrics.
 */
export {
  DEDUP_RATIO_BUCKETS,
  MIGRATION_DOWNTIME_BUCKETS,
  MIGRATION_DURATION_BUCKETS,
  MigrationMetrics,
  type MigrationResult,
} from './metrics';
export {
  type MigrationOutcome,
  MigrationRun,
  type MigrationRunInput,
  type MigrationRunOptions,
} from './migration-run';
export { NativeDataPath, type NativeDataPathOptions } from './native-data-path';
export {
  chooseParameters,
  type MigrationParameterChoice,
  type PathMeasurement,
  QEMU_DEFAULT_DOWNTIME_LIMIT_MS,
  QEMU_DEFAULT_MAX_BANDWIDTH,
} from './parameters';
export type {
  DataPathEnd,
  DataPathSink,
  MigrationDataPath,
  MigrationHypervisor,
  MigrationLogger,
  MigrationRunStats,
  MigrationSockets,
  PhaseSink,
  SinkCounters,
  SourceCounters,
} from './ports';

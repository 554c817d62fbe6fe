/** The Prometheus series of live migrations (`dwcp_migration_*`). */
import { Counter, Histogram, type Registry } from 'prom-client';

export type MigrationResult = 'done' | 'failed' | 'cancelled';

/** From a small VM on a LAN (~1 s) to tens of GiB over a WAN (~1 h). */
export const MIGRATION_DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** The guest's pause: tens of ms is the goal, seconds is what a slow switch-over costs. */
export const MIGRATION_DOWNTIME_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10];
export const DEDUP_RATIO_BUCKETS = [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1];

export class MigrationMetrics {
  readonly migrations: Counter<'result'>;
  readonly duration: Histogram;
  readonly downtime: Histogram;
  readonly wireBytes: Counter;
  readonly dedupRatio: Histogram;

  constructor(registry: Registry) {
    this.migrations = new Counter({
      name: 'dwcp_migration_migrations_total',
      help: 'Live migrations that ended, by result (done, failed, cancelled)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'dwcp_migration_duration_seconds',
      help: 'From preparing to done, of migrations that finished',
      buckets: MIGRATION_DURATION_BUCKETS,
      registers: [registry],
    });
    this.downtime = new Histogram({
      name: 'dwcp_migration_downtime_seconds',
      help: "The guest's pause: source STOP to destination RESUME (QEMU's own downtime when the events are missing)",
      buckets: MIGRATION_DOWNTIME_BUCKETS,
      registers: [registry],
    });
    this.wireBytes = new Counter({
      name: 'dwcp_migration_wire_bytes_total',
      help: 'HDE stream bytes handed to AMST by migration sources, whatever the result',
      registers: [registry],
    });
    this.dedupRatio = new Histogram({
      name: 'dwcp_migration_dedup_ratio',
      help: "Share of QEMU's stream sent as references (destination inventory or in-stream repeats), per finished migration",
      buckets: DEDUP_RATIO_BUCKETS,
      registers: [registry],
    });
  }
}

/**
 * Live-migration vocabulary in DWCP's terms, and its pure translation to and from QEMU's QMP
 * (`migrate-set-parameters`, `migrate-set-capabilities`, `query-migrate`).
 */

import { HypervisorError } from './errors';

/**
 * Where a migration stream goes (or, on a destination, comes from). QEMU 7.2 has no `file:`
 * transport; DWCP uses `unix:` sockets that it owns.
 */
export type MigrationUri = `unix:${string}` | `tcp:${string}` | `exec:${string}` | `fd:${string}`;

/** QEMU's `MigrationStatus`. */
export type MigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover'
  | 'completed'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug';

/** States after which `query-migrate` will not change again until a new migration starts. */
export const FINAL_MIGRATION_STATUSES: ReadonlySet<MigrationStatus> = new Set([
  'completed',
  'failed',
  'cancelled',
]);

export interface MigrationParameters {
  /** Cap on the stream's rate, bytes per second (QEMU `max-bandwidth`). */
  maxBandwidthBytesPerSec?: number;
  /** The pause QEMU may take for the final stop-and-copy, ms (QEMU `downtime-limit`). */
  downtimeLimitMs?: number;
  /**
   * The stream rate QEMU assumes for its stop decision, bytes per second (QEMU 8.2's
   * `avail-switchover-bandwidth`): it stops the guest once what is left fits in downtime-limit at
   * this rate. 0, QEMU's default, means the rate it measured on its socket.
   */
  availSwitchoverBandwidthBytesPerSec?: number;
}

/**
 * `query-migrate-parameters` as read: switchover bandwidth is absent when this QEMU has no such
 * parameter (before 8.2).
 */
export type MigrationParameterValues = Required<
  Pick<MigrationParameters, 'maxBandwidthBytesPerSec' | 'downtimeLimitMs'>
> &
  Pick<MigrationParameters, 'availSwitchoverBandwidthBytesPerSec'>;

export interface MigrationCapabilities {
  /** Throttle the guest's vCPUs when it dirties memory faster than the stream drains it. */
  autoConverge?: boolean;
  /** Emit `MIGRATION` and `MIGRATION_PASS` events (QemuDriver turns this on for every VM). */
  events?: boolean;
  /** Send dirtied pages as XOR deltas against a cache of their previous content. */
  xbzrle?: boolean;
}

/** One reading of `query-migrate`, in bytes and milliseconds. Absent numbers were not reported yet. */
export interface MigrationProgress {
  status: MigrationStatus;
  transferredBytes: number;
  remainingBytes: number;
  /** Guest RAM in the stream. */
  totalBytes: number;
  /** Dirty pages per second times the page size; 0 until the first dirty sync. */
  dirtyRateBytesPerSec: number;
  /** Precopy rounds that synced the dirty bitmap so far. */
  dirtySyncCount: number;
  /** Stream rate QEMU measured, bits per second. */
  throughputBitsPerSec: number;
  /** QEMU's estimate while active. */
  expectedDowntimeMs: number | undefined;
  /** The real pause, once completed. */
  downtimeMs: number | undefined;
  setupTimeMs: number | undefined;
  /** Elapsed so far while active, the whole migration once completed. */
  totalTimeMs: number | undefined;
  /** Why it failed, when it did. */
  errorDesc: string | undefined;
  /** How much auto-converge throttles the guest's vCPUs now, percent; 0 when it does not. */
  cpuThrottlePercent: number;
}

const MAX_DOWNTIME_LIMIT_MS = 2_000_000; // QEMU's MAX_MIGRATE_DOWNTIME (2000 s)

const URI_SCHEMES = ['unix:', 'tcp:', 'exec:', 'fd:'];

/** Refuses URIs QEMU 7.2 cannot use, with the reason, before QEMU sees them. */
export function checkMigrationUri(uri: string, field = 'uri'): MigrationUri {
  if (uri.startsWith('file:')) {
    throw HypervisorError.invalidArgument(field, 'QEMU 7.2 has no file: migration URI; use exec:cat > PATH');
  }
  const scheme = URI_SCHEMES.find((s) => uri.startsWith(s));
  if (scheme === undefined || uri.length === scheme.length) {
    throw HypervisorError.invalidArgument(
      field,
      `expected unix:, tcp:, exec: or fd: followed by an address, got '${uri}'`,
    );
  }
  return uri as MigrationUri;
}

/** The `migrate-set-parameters` arguments; refuses values QEMU would refuse, naming the field. */
export function toQmpParameters(params: MigrationParameters): Record<string, number> {
  const out: Record<string, number> = {};
  if (params.maxBandwidthBytesPerSec !== undefined) {
    out['max-bandwidth'] = checkCount('maxBandwidthBytesPerSec', params.maxBandwidthBytesPerSec);
  }
  if (params.downtimeLimitMs !== undefined) {
    const ms = checkCount('downtimeLimitMs', params.downtimeLimitMs);
    if (ms > MAX_DOWNTIME_LIMIT_MS) {
      throw HypervisorError.invalidArgument(
        'downtimeLimitMs',
        `at most ${MAX_DOWNTIME_LIMIT_MS} ms, got ${ms}`,
      );
    }
    out['downtime-limit'] = ms;
  }
  if (params.availSwitchoverBandwidthBytesPerSec !== undefined) {
    out['avail-switchover-bandwidth'] = checkCount(
      'availSwitchoverBandwidthBytesPerSec',
      params.availSwitchoverBandwidthBytesPerSec,
    );
  }
  return out;
}

/** Reads `query-migrate-parameters`. */
export function fromQmpParameters(reply: Record<string, unknown>): MigrationParameterValues {
  const switchover = reply['avail-switchover-bandwidth'];
  return {
    maxBandwidthBytesPerSec: numberOr(reply['max-bandwidth'], 0),
    downtimeLimitMs: numberOr(reply['downtime-limit'], 0),
    ...(typeof switchover === 'number' ? { availSwitchoverBandwidthBytesPerSec: switchover } : {}),
  };
}

const CAPABILITY_NAMES: Record<keyof MigrationCapabilities, string> = {
  autoConverge: 'auto-converge',
  events: 'events',
  xbzrle: 'xbzrle',
};

/** The `migrate-set-capabilities` argument list. */
export function toQmpCapabilities(caps: MigrationCapabilities): { capability: string; state: boolean }[] {
  return (Object.keys(CAPABILITY_NAMES) as (keyof MigrationCapabilities)[])
    .filter((key) => caps[key] !== undefined)
    .map((key) => ({ capability: CAPABILITY_NAMES[key], state: caps[key] === true }));
}

/** Reads `query-migrate`. Before any migration QEMU answers `{}`, which reads as status `none`. */
export function fromQmpMigrationInfo(reply: Record<string, unknown>): MigrationProgress {
  const ram = (typeof reply.ram === 'object' && reply.ram !== null ? reply.ram : {}) as Record<
    string,
    unknown
  >;
  const pageSize = numberOr(ram['page-size'], 4096);
  return {
    status: (typeof reply.status === 'string' ? reply.status : 'none') as MigrationStatus,
    transferredBytes: numberOr(ram.transferred, 0),
    remainingBytes: numberOr(ram.remaining, 0),
    totalBytes: numberOr(ram.total, 0),
    dirtyRateBytesPerSec: numberOr(ram['dirty-pages-rate'], 0) * pageSize,
    dirtySyncCount: numberOr(ram['dirty-sync-count'], 0),
    throughputBitsPerSec: numberOr(ram.mbps, 0) * 1e6,
    expectedDowntimeMs: numberOr(reply['expected-downtime'], undefined),
    downtimeMs: numberOr(reply.downtime, undefined),
    setupTimeMs: numberOr(reply['setup-time'], undefined),
    totalTimeMs: numberOr(reply['total-time'], undefined),
    errorDesc: typeof reply['error-desc'] === 'string' ? reply['error-desc'] : undefined,
    cpuThrottlePercent: numberOr(reply['cpu-throttle-percentage'], 0),
  };
}

function checkCount(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw HypervisorError.invalidArgument(field, `expected a whole number >= 0, got ${value}`);
  }
  return value;
}

function numberOr<T extends number | undefined>(value: unknown, fallback: T): number | T {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

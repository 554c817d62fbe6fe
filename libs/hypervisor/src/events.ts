/** What a VM reports on its own: QMP events in DWCP's terms, plus the exit of its process. */

import type { MigrationStatus } from './migration';

export type VmEvent = { atMs: number } & (
  | { type: 'migration'; status: MigrationStatus }
  /** A precopy round began (`MIGRATION_PASS`). */
  | { type: 'migration-pass'; pass: number }
  | { type: 'stop' }
  | { type: 'resume' }
  /** The guest powered off or QEMU was told to quit; `reason` is QEMU's `ShutdownCause`. */
  | { type: 'shutdown'; guest: boolean; reason: string }
  /** The hypervisor process is gone. The last event of every VM. */
  | { type: 'exit'; code: number | null; signal: string | null }
  /** Any other QMP event, as QEMU named it. */
  | { type: 'qmp'; name: string; data: Record<string, unknown> }
);

/** A raw QMP event: `{"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}`. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export function fromQmpEvent(raw: QmpEvent): VmEvent {
  const atMs = Math.round(raw.timestamp.seconds * 1000 + raw.timestamp.microseconds / 1000);
  const data = raw.data;
  switch (raw.event) {
    case 'MIGRATION':
      return { atMs, type: 'migration', status: String(data.status) as MigrationStatus };
    case 'MIGRATION_PASS':
      return { atMs, type: 'migration-pass', pass: Number(data.pass) };
    case 'STOP':
      return { atMs, type: 'stop' };
    case 'RESUME':
      return { atMs, type: 'resume' };
    case 'SHUTDOWN':
      return { atMs, type: 'shutdown', guest: data.guest === true, reason: String(data.reason ?? 'unknown') };
    default:
      return { atMs, type: 'qmp', name: raw.event, data };
  }
}

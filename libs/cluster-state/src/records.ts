/** The records the control plane replicates. Every record is immutable once stored (frozen). */

export type NodeStatus = 'ready' | 'draining' | 'removed';

export interface NodeCapacity {
  vcpus: number;
  memoryMiB: number;
}

export interface NodeRecord {
  /** Stable name-like id, e.g. `node-1`. */
  id: string;
  /** The id this node has in the Raft configuration. */
  raftId: number;
  name: string;
  /** Where this node's REST API listens, e.g. `https://10.0.0.5:7700`. */
  apiUrl: string;
  /** Where this node's peer (node-to-node gRPC) listener is, `host:port`. */
  peerAddr: string;
  status: NodeStatus;
  capacity: NodeCapacity;
  labels: Record<string, string>;
  /** ISO-8601 time of the first registration, as the proposer saw it. */
  joinedAt: string;
  /** Log index of the last change to this record. */
  revision: number;
}

/**
 * What the operator asked of a VM (its desired state), not what it does: that is its `status`.
 * `deleted` is only ever seen in the result of `vm.delete`: a deleted VM leaves the state.
 */
export type VmState = 'stopped' | 'running' | 'migrating' | 'deleted';

export const VM_PHASES = ['starting', 'running', 'stopped', 'failed'] as const;
/** What the hosting node observes of a VM's hypervisor process. */
export type VmPhase = (typeof VM_PHASES)[number];

/**
 * A VM as its hosting node last reported it through Raft (`vm.status`), the way KubeVirt keeps a
 * VirtualMachine's status apart from its spec. Only the VM's node reports it; it is dropped when the
 * VM moves to another node, and absent until that node's first report.
 */
export interface VmRecordStatus {
  phase: VmPhase;
  /** Why it failed (the launch error, or how the process exited). */
  reason?: string;
  /** The hypervisor process, while it runs. */
  pid?: number;
  /** The node that reported it. */
  nodeId: string;
  /** When it entered this phase, as the reporting node saw it. */
  since: string;
  /** The record revision the node acted on when it saw this: a report older than the one kept is refused. */
  observedRevision: number;
}

export interface VmRecord {
  /** `vm-` followed by a short random id. */
  id: string;
  name: string;
  image: string;
  vcpus: number;
  memoryMiB: number;
  /** The node the VM is placed on (its source, while it migrates). */
  nodeId: string;
  /** The desired state: what the operator asked. What the VM does is `status`. */
  state: VmState;
  /** The observed state, as its node reports it; absent until it has reported. */
  status?: VmRecordStatus;
  labels: Record<string, string>;
  /** Its disks, in the order the guest sees them; absent when it has none. */
  disks?: VmDiskRecord[];
  createdAt: string;
  revision: number;
}

export const DISK_FORMATS = ['qcow2', 'raw'] as const;

/** The id of a VM's disk at `index` in its list: vda, vdb, ... (at most 8 disks: up to vdh). */
export const diskIdAt = (index: number): string => `vd${String.fromCharCode(97 + index)}`;
export type DiskFormat = (typeof DISK_FORMATS)[number];

/**
 * A disk of a VM, as declared. The hosting node keeps its file under its data dir: on a base image, a
 * qcow2 overlay of the image's disk (`qemu-img create -b`) or a raw copy of it; else blank.
 */
export interface VmDiskRecord {
  /** Its name in the VM, from its place in the list (vda, vdb, ...): the guest's device serial, and the block node `disk-<id>` in QEMU. */
  id: string;
  /** Virtual size in bytes (a whole number of MiB). */
  sizeBytes: number;
  format: DiskFormat;
  /** A base image whose disk this one starts from (a qcow2 overlay, or a raw copy); blank when absent. */
  image?: string;
  bus: 'virtio';
}

export const MIGRATION_PHASES = [
  'pending',
  'preparing',
  'transferring',
  'switching-over',
  'done',
  'failed',
  'cancelled',
] as const;

export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

/** Filled in as they become known; a phase update merges into what is there. */
export interface MigrationStats {
  bytesIn?: number;
  bytesOnWire?: number;
  dedupRatio?: number;
  compressionRatio?: number;
  downtimeMs?: number;
  totalMs?: number;
  // Live progress, refreshed about once a second while transferring (QEMU's own estimates).
  /** The guest RAM QEMU migrates; `1 - remainingBytes / ramBytes` is the progress, and it can go back. */
  ramBytes?: number;
  remainingBytes?: number;
  dirtyRateBytesPerSec?: number;
  /** Bytes per second on the wire over the last report interval. */
  wireBytesPerSec?: number;
  /** Time left at the current rate, once QEMU has measured one. */
  etaMs?: number;
  /** How much auto-converge throttles the guest's vCPUs, percent, once it escalated. */
  cpuThrottlePercent?: number;
}

/** How a migration that does not converge is handled; the API fills in the defaults. */
export interface MigrationPolicy {
  /** Throttle the guest's vCPUs (QEMU auto-converge) when it dirties memory faster than the path carries it. */
  autoConverge: boolean;
  /**
   * Fail, leaving the VM running on its source, once the migration has run this many seconds per
   * GiB of guest RAM (KubeVirt's `completionTimeoutPerGiB`).
   */
  completionTimeoutPerGiBSec: number;
}

/** KubeVirt's completion timeout (150 s per GiB) and escalation on. */
export const DEFAULT_MIGRATION_POLICY: MigrationPolicy = {
  autoConverge: true,
  completionTimeoutPerGiBSec: 150,
};

/** What the source measured of the path to the target, what PBA predicts, and the knobs chosen from it. */
export interface MigrationPath {
  /** Goodput over the last report interval (acknowledged bytes per second). */
  measuredBytesPerSec?: number;
  measuredRttMs?: number;
  /** PBA's prediction for the next second, and a rate the path should sustain. */
  predictedBytesPerSec?: number;
  lowerBytesPerSec?: number;
  /** Samples PBA has of this path. */
  samples: number;
  /** The parameters in force: AMST connections, zstd level, QEMU's max-bandwidth and downtime-limit. */
  streams: number;
  zstdLevel: number;
  maxBandwidthBytesPerSec: number;
  /**
   * The stream rate QEMU's stop decision assumes (its `avail-switchover-bandwidth`): PBA's
   * prediction times the recent reduction; absent where QEMU measures it itself.
   */
  switchoverBandwidthBytesPerSec?: number;
  downtimeLimitMs: number;
  /** AMST's send buffer: encoded bytes taken from QEMU and not yet acknowledged. */
  bufferBytes?: number;
  /**
   * The codec HDE encodes with now (`zstd 1`, `lz4`, `none`): it steps down from `zstdLevel` while
   * its encoder, not the link, is the bottleneck, and back up when the link pushes back.
   */
  codec?: string;
  /** Why these parameters, in one line. */
  basis: string;
}

export interface MigrationRecord {
  id: string;
  vmId: string;
  sourceNodeId: string;
  targetNodeId: string;
  phase: MigrationPhase;
  /** Why it failed or was cancelled. */
  reason?: string;
  stats: MigrationStats;
  /** The path as the source measured it, and the parameters it drove; absent until the run starts. */
  path?: MigrationPath;
  /** The operator's cap on QEMU's migration bandwidth, if any. */
  maxBandwidthBytesPerSec?: number;
  /** Convergence policy; absent on records from before it existed (the defaults apply). */
  policy?: MigrationPolicy;
  createdAt: string;
  updatedAt: string;
  revision: number;
}

export const ROLES = ['viewer', 'operator', 'admin'] as const;

export type Role = (typeof ROLES)[number];

/** True when `held` grants at least what `required` does (viewer < operator < admin). */
export function roleAtLeast(held: Role, required: Role): boolean {
  return ROLES.indexOf(held) >= ROLES.indexOf(required);
}

export interface ApiTokenRecord {
  id: string;
  name: string;
  role: Role;
  /** Lower-case hex SHA-256 of the token; the token itself is never stored. */
  sha256: string;
  createdAt: string;
  revision: number;
}

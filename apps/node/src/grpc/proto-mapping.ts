/** Records to and from the gRPC messages (snake_case fields) of proto/dwcp/api/v1. */
import type {
  ClusterStatus,
  MigrationPath,
  MigrationRecord,
  NodeRecord,
  ReadConsistency,
  VmRecord,
} from '@novacron/cluster-state';
import type { ClusterMember } from '../api/control-plane.service';

type Msg = Record<string, unknown>;

export function consistencyOf(request: Msg): ReadConsistency {
  return request.consistency === 'CONSISTENCY_LOCAL' ? 'local' : 'linearizable';
}

/** proto3 cannot tell an unset string from an empty one; the API treats both as unset. */
export function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export const nodeToProto = (n: NodeRecord): Msg => ({
  id: n.id,
  raft_id: n.raftId,
  name: n.name,
  api_url: n.apiUrl,
  peer_addr: n.peerAddr,
  status: n.status,
  capacity: { vcpus: n.capacity.vcpus, memory_mib: n.capacity.memoryMiB },
  labels: n.labels,
  joined_at: n.joinedAt,
  revision: n.revision,
});

export const vmToProto = (v: VmRecord): Msg => ({
  id: v.id,
  name: v.name,
  image: v.image,
  vcpus: v.vcpus,
  memory_mib: v.memoryMiB,
  node_id: v.nodeId,
  state: v.state,
  labels: v.labels,
  created_at: v.createdAt,
  revision: v.revision,
  disks: (v.disks ?? []).map((d) => ({
    id: d.id,
    size_bytes: d.sizeBytes,
    format: d.format,
    ...(d.image !== undefined ? { image: d.image } : {}),
    bus: d.bus,
  })),
  ...(v.status !== undefined
    ? {
        status: {
          phase: v.status.phase,
          ...(v.status.reason !== undefined ? { reason: v.status.reason } : {}),
          ...(v.status.pid !== undefined ? { pid: v.status.pid } : {}),
          node_id: v.status.nodeId,
          since: v.status.since,
          observed_revision: v.status.observedRevision,
        },
      }
    : {}),
});

/** CreateVmRequest's `disks`, as the REST body's (unset strings left out, so the schema's defaults apply). */
export const disksFromProto = (v: unknown): Msg[] =>
  (Array.isArray(v) ? (v as Msg[]) : []).map((d) => {
    const text = (key: string) => (typeof d[key] === 'string' && d[key] !== '' ? { [key]: d[key] } : {});
    return { sizeBytes: d.size_bytes, ...text('format'), ...text('image'), ...text('bus') };
  });

export const migrationToProto = (m: MigrationRecord): Msg => ({
  id: m.id,
  vm_id: m.vmId,
  source_node_id: m.sourceNodeId,
  target_node_id: m.targetNodeId,
  phase: m.phase,
  ...(m.reason !== undefined ? { reason: m.reason } : {}),
  stats: {
    ...(m.stats.bytesIn !== undefined ? { bytes_in: m.stats.bytesIn } : {}),
    ...(m.stats.bytesOnWire !== undefined ? { bytes_on_wire: m.stats.bytesOnWire } : {}),
    ...(m.stats.dedupRatio !== undefined ? { dedup_ratio: m.stats.dedupRatio } : {}),
    ...(m.stats.compressionRatio !== undefined ? { compression_ratio: m.stats.compressionRatio } : {}),
    ...(m.stats.downtimeMs !== undefined ? { downtime_ms: m.stats.downtimeMs } : {}),
    ...(m.stats.totalMs !== undefined ? { total_ms: m.stats.totalMs } : {}),
    ...(m.stats.ramBytes !== undefined ? { ram_bytes: m.stats.ramBytes } : {}),
    ...(m.stats.remainingBytes !== undefined ? { remaining_bytes: m.stats.remainingBytes } : {}),
    ...(m.stats.dirtyRateBytesPerSec !== undefined
      ? { dirty_rate_bytes_per_sec: m.stats.dirtyRateBytesPerSec }
      : {}),
    ...(m.stats.wireBytesPerSec !== undefined ? { wire_bytes_per_sec: m.stats.wireBytesPerSec } : {}),
    ...(m.stats.etaMs !== undefined ? { eta_ms: m.stats.etaMs } : {}),
    ...(m.stats.cpuThrottlePercent !== undefined ? { cpu_throttle_percent: m.stats.cpuThrottlePercent } : {}),
  },
  created_at: m.createdAt,
  updated_at: m.updatedAt,
  revision: m.revision,
  ...(m.maxBandwidthBytesPerSec !== undefined
    ? { max_bandwidth_bytes_per_sec: m.maxBandwidthBytesPerSec }
    : {}),
  ...(m.path !== undefined ? { path: pathToProto(m.path) } : {}),
  ...(m.policy !== undefined
    ? {
        policy: {
          auto_converge: m.policy.autoConverge,
          completion_timeout_per_gib_sec: m.policy.completionTimeoutPerGiBSec,
        },
      }
    : {}),
});

const pathToProto = (p: MigrationPath): Msg => ({
  ...(p.measuredBytesPerSec !== undefined ? { measured_bytes_per_sec: p.measuredBytesPerSec } : {}),
  ...(p.measuredRttMs !== undefined ? { measured_rtt_ms: p.measuredRttMs } : {}),
  ...(p.predictedBytesPerSec !== undefined ? { predicted_bytes_per_sec: p.predictedBytesPerSec } : {}),
  ...(p.lowerBytesPerSec !== undefined ? { lower_bytes_per_sec: p.lowerBytesPerSec } : {}),
  samples: p.samples,
  streams: p.streams,
  zstd_level: p.zstdLevel,
  max_bandwidth_bytes_per_sec: p.maxBandwidthBytesPerSec,
  ...(p.switchoverBandwidthBytesPerSec !== undefined
    ? { switchover_bandwidth_bytes_per_sec: p.switchoverBandwidthBytesPerSec }
    : {}),
  downtime_limit_ms: p.downtimeLimitMs,
  ...(p.bufferBytes !== undefined ? { buffer_bytes: p.bufferBytes } : {}),
  ...(p.codec !== undefined ? { codec: p.codec } : {}),
  basis: p.basis,
});

export const statusToProto = (s: ClusterStatus): Msg => ({
  node_id: s.nodeId,
  raft_id: s.raftId,
  role: s.role,
  ...(s.leaderRaftId !== null ? { leader_raft_id: s.leaderRaftId } : {}),
  term: s.term,
  commit_index: s.commitIndex,
  applied_index: s.appliedIndex,
  voters: s.voters,
  learners: s.learners,
});

export const memberToProto = (m: ClusterMember): Msg => ({
  raft_id: m.raftId,
  role: m.role,
  is_leader: m.isLeader,
  ...(m.nodeId !== null ? { node_id: m.nodeId } : {}),
  ...(m.name !== null ? { name: m.name } : {}),
  ...(m.apiUrl !== null ? { api_url: m.apiUrl } : {}),
  ...(m.peerAddr !== null ? { peer_addr: m.peerAddr } : {}),
  ...(m.status !== null ? { status: m.status } : {}),
});

/**
 * The wire shape of every command in the Raft log, as zod schemas. The state machine checks each entry
 * against them before applying it, and the API builds its request schemas from the same field schemas,
 * so a value the API accepts is a value the log accepts.
 */
import { z } from 'zod';
import { DISK_FORMATS, MIGRATION_PHASES, ROLES, VM_PHASES } from './records';

const MAX_LABELS = 64;

export const fields = {
  nodeId: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9-]{0,62}$/,
      'must be 1-63 lower-case letters, digits or dashes, not starting with a dash',
    ),
  vmId: z.string().regex(/^vm-[a-z0-9]{1,32}$/, 'must look like vm-<id>'),
  migrationId: z.string().regex(/^mig-[a-z0-9]{1,32}$/, 'must look like mig-<id>'),
  tokenId: z.string().regex(/^tok-[a-z0-9-]{1,40}$/, 'must look like tok-<id>'),
  raftId: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, dots, dashes or underscores'),
  image: z.string().min(1).max(1024),
  vcpus: z.number().int().min(1).max(1024),
  memoryMiB: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024 * 1024),
  labelKey: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/, 'is not a valid label key'),
  labelValue: z.string().max(255),
  timestamp: z.string().datetime({ offset: true }),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits'),
  url: z.string().url(),
  hostPort: z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port'),
  reason: z.string().max(1024),
  /** Bytes per second: from 1 KiB/s to 100 GiB/s. */
  bandwidth: z
    .number()
    .int()
    .min(1024)
    .max(100 * 1024 ** 3),
};

const MiB = 1024 * 1024;
const MAX_DISKS = 8;

const diskObject = z
  .object({
    sizeBytes: z
      .number()
      .int()
      .min(MiB)
      .max(64 * 1024 ** 4)
      .multipleOf(MiB, 'must be a whole number of MiB'),
    format: z.enum(DISK_FORMATS).default('qcow2'),
    image: fields.name.optional(),
    bus: z.literal('virtio').default('virtio'),
  })
  .strict();

type DiskShape = typeof diskObject;

/** A disk and the rules over a disk list, for the log's schema and for the API's annotated copy of it. */
export function diskRules<S extends DiskShape>(disk: S) {
  const list = z.array(disk).max(MAX_DISKS, `at most ${MAX_DISKS} disks`);
  return { one: disk, list };
}

/**
 * A disk of a VM as asked for (`VmDiskRecord` without its id: the guest's vda, vdb, ... are named by
 * their place in the list, `diskIdAt`), as the log takes it; `diskObject` before its rules.
 */
export const { one: diskSchema, list: disksSchema } = diskRules(diskObject);
export { diskObject };

export const labelsSchema = z
  .record(fields.labelKey, fields.labelValue)
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

export const capacitySchema = z.object({ vcpus: fields.vcpus, memoryMiB: fields.memoryMiB }).strict();

export const migrationStatsSchema = z
  .object({
    bytesIn: z.number().int().nonnegative(),
    bytesOnWire: z.number().int().nonnegative(),
    dedupRatio: z.number().nonnegative(),
    compressionRatio: z.number().nonnegative(),
    downtimeMs: z.number().nonnegative(),
    totalMs: z.number().nonnegative(),
    ramBytes: z.number().int().nonnegative(),
    remainingBytes: z.number().int().nonnegative(),
    dirtyRateBytesPerSec: z.number().nonnegative(),
    wireBytesPerSec: z.number().nonnegative(),
    etaMs: z.number().nonnegative(),
    cpuThrottlePercent: z.number().min(0).max(100),
  })
  .partial()
  .strict();

export const migrationPolicySchema = z
  .object({
    autoConverge: z.boolean(),
    completionTimeoutPerGiBSec: z.number().int().min(1).max(86_400),
  })
  .strict();

export const migrationPathSchema = z
  .object({
    measuredBytesPerSec: z.number().nonnegative().optional(),
    measuredRttMs: z.number().nonnegative().optional(),
    predictedBytesPerSec: z.number().nonnegative().optional(),
    lowerBytesPerSec: z.number().nonnegative().optional(),
    samples: z.number().int().nonnegative(),
    streams: z.number().int().positive(),
    zstdLevel: z.number().int(),
    maxBandwidthBytesPerSec: z.number().int().positive(),
    switchoverBandwidthBytesPerSec: z.number().int().positive().optional(),
    downtimeLimitMs: z.number().int().nonnegative(),
    bufferBytes: z.number().int().positive().optional(),
    codec: z.string().max(32).optional(),
    basis: z.string().max(1000),
  })
  .strict();

const nodeRegister = z
  .object({
    type: z.literal('node.register'),
    nodeId: fields.nodeId,
    raftId: fields.raftId,
    name: fields.name,
    apiUrl: fields.url,
    peerAddr: fields.hostPort,
    capacity: capacitySchema,
    labels: labelsSchema.default({}),
    at: fields.timestamp,
  })
  .strict();

const nodeDrain = z.object({ type: z.literal('node.drain'), nodeId: fields.nodeId }).strict();
const nodeRemove = z.object({ type: z.literal('node.remove'), nodeId: fields.nodeId }).strict();

const vmCreate = z
  .object({
    type: z.literal('vm.create'),
    vmId: fields.vmId,
    name: fields.name,
    image: fields.image,
    vcpus: fields.vcpus,
    memoryMiB: fields.memoryMiB,
    labels: labelsSchema.default({}),
    disks: disksSchema.default([]),
    /** Place on this node instead of letting placement choose. */
    nodeId: fields.nodeId.optional(),
    at: fields.timestamp,
  })
  .strict();

const vmStart = z.object({ type: z.literal('vm.start'), vmId: fields.vmId }).strict();
const vmStop = z.object({ type: z.literal('vm.stop'), vmId: fields.vmId }).strict();
const vmDelete = z.object({ type: z.literal('vm.delete'), vmId: fields.vmId }).strict();

export const labelSetSchema = z
  .record(fields.labelKey, fields.labelValue.nullable())
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

const vmStatus = z
  .object({
    type: z.literal('vm.status'),
    vmId: fields.vmId,
    /** The reporting node: refused unless it is the VM's node. */
    nodeId: fields.nodeId,
    phase: z.enum(VM_PHASES),
    reason: fields.reason.optional(),
    pid: z
      .number()
      .int()
      .positive()
      .max(2 ** 31 - 1)
      .optional(),
    /** The revision of the VM record the node acted on. */
    observedRevision: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    at: fields.timestamp,
  })
  .strict();

const vmLabels = z
  .object({
    type: z.literal('vm.labels'),
    vmId: fields.vmId,
    /** Values to write; `null` deletes the key. */
    set: labelSetSchema,
    /** Compare-and-set guard: each key must currently hold this value, or be absent when `null`. */
    expect: labelSetSchema.optional(),
  })
  .strict();

const migrationCreate = z
  .object({
    type: z.literal('migration.create'),
    migrationId: fields.migrationId,
    vmId: fields.vmId,
    targetNodeId: fields.nodeId,
    /** A cap on QEMU's migration bandwidth, below what the path allows. */
    maxBandwidthBytesPerSec: fields.bandwidth.optional(),
    policy: migrationPolicySchema.optional(),
    at: fields.timestamp,
  })
  .strict();

const migrationPhase = z
  .object({
    type: z.literal('migration.phase'),
    migrationId: fields.migrationId,
    phase: z.enum(MIGRATION_PHASES),
    stats: migrationStatsSchema.optional(),
    path: migrationPathSchema.optional(),
    reason: fields.reason.optional(),
    at: fields.timestamp,
  })
  .strict();

const migrationCancel = z
  .object({
    type: z.literal('migration.cancel'),
    migrationId: fields.migrationId,
    reason: fields.reason.optional(),
    at: fields.timestamp,
  })
  .strict();

const tokenAdd = z
  .object({
    type: z.literal('token.add'),
    tokenId: fields.tokenId,
    name: fields.name,
    role: z.enum(ROLES),
    sha256: fields.sha256,
    at: fields.timestamp,
  })
  .strict();

const tokenRevoke = z.object({ type: z.literal('token.revoke'), tokenId: fields.tokenId }).strict();

export const clusterCommandSchema = z.discriminatedUnion('type', [
  nodeRegister,
  nodeDrain,
  nodeRemove,
  vmCreate,
  vmStart,
  vmStop,
  vmDelete,
  vmStatus,
  vmLabels,
  migrationCreate,
  migrationPhase,
  migrationCancel,
  tokenAdd,
  tokenRevoke,
]);

/** What a proposer writes; `labels` may be left out (it defaults to `{}`). */
export type ClusterCommand = z.input<typeof clusterCommandSchema>;
/** A command after validation, as the state machine applies it. */
export type ValidClusterCommand = z.output<typeof clusterCommandSchema>;
export type ClusterCommandType = ClusterCommand['type'];
export type CommandOf<T extends ClusterCommandType> = Extract<ValidClusterCommand, { type: T }>;

/** Renders a zod issue path the way our error messages and `fields[].path` show it: `capacity.vcpus`. */
export function issuePath(path: readonly (string | number)[]): string {
  return path.map(String).join('.');
}

/**
 * Response shapes of the public API as zod schemas, for the OpenAPI document and for the specs that
 * parse real responses with them. Each is checked at compile time to be exactly its TypeScript type.
 */
import type { HealthCheckResult } from '@nestjs/terminus';
import {
  type ApiTokenRecord,
  type ClusterStatus,
  capacitySchema,
  fields,
  MIGRATION_PHASES,
  type MigrationRecord,
  migrationPathSchema,
  migrationPolicySchema,
  migrationStatsSchema,
  type NodeRecord,
  ROLES,
  VM_PHASES,
  type VmRecord,
} from '@novacron/cluster-state';
import type { AdmitResponse } from '@novacron/consensus';
import type { ZodTypeAny } from 'zod';
import type { ClusterMember } from './control-plane.service';
import { API_ERROR_CODES, type ApiErrorBody } from './errors';
import { diskRecordSchema } from './schemas';
import { z } from './zod-openapi';

/** Accepts `schema` only if its output and `T` are assignable both ways (a field added to either fails to compile). */
const exactly =
  <T>() =>
  <S extends ZodTypeAny>(
    schema: S & ([z.output<S>] extends [T] ? ([T] extends [z.output<S>] ? S : never) : never),
  ): S =>
    schema;

const labels = z.record(z.string(), z.string());
const revision = z
  .number()
  .int()
  .nonnegative()
  .openapi({ description: 'Raft log index of the last change.' });

export const nodeRecordSchema = exactly<NodeRecord>()(
  z
    .object({
      id: fields.nodeId,
      raftId: fields.raftId,
      name: fields.name,
      apiUrl: fields.url,
      peerAddr: fields.hostPort,
      status: z.enum(['ready', 'draining', 'removed']),
      capacity: capacitySchema,
      labels,
      joinedAt: fields.timestamp,
      revision,
    })
    .strict()
    .openapi('NodeRecord'),
);

export const vmRecordSchema = exactly<VmRecord>()(
  z
    .object({
      id: fields.vmId,
      name: fields.name,
      image: fields.image,
      vcpus: fields.vcpus,
      memoryMiB: fields.memoryMiB,
      nodeId: fields.nodeId.openapi({ description: 'Where it runs (its source, while it migrates).' }),
      state: z.enum(['stopped', 'running', 'migrating', 'deleted']).openapi({
        description: 'The desired state: what was asked. `deleted` only in the answer to DELETE.',
      }),
      status: z
        .object({
          phase: z.enum(VM_PHASES),
          reason: z.string().optional().openapi({ description: 'Why it failed.' }),
          pid: z.number().int().positive().optional().openapi({ description: 'Its hypervisor process.' }),
          nodeId: fields.nodeId.openapi({ description: 'The node that reported it.' }),
          since: fields.timestamp.openapi({ description: 'When it entered this phase.' }),
          observedRevision: revision.openapi({
            description: 'The revision of this record the node acted on.',
          }),
        })
        .strict()
        .optional()
        .openapi({
          description:
            'The observed state, as its node last reported it; absent until the node hosting it has reported.',
        }),
      labels,
      disks: z
        .array(diskRecordSchema)
        .optional()
        .openapi({ description: 'Its disks; absent when it has none.' }),
      createdAt: fields.timestamp,
      revision,
    })
    .strict()
    .openapi('VmRecord'),
);

const rate = z.number().nonnegative().openapi({ description: 'Bytes per second.' });

/** GET /v1/nodes/{id}/path: what the answering node has measured and predicts of its path to that node. */
export const nodePathSchema = z
  .object({
    nodeId: fields.nodeId.openapi({ description: 'The node the path leads to.' }),
    fromNodeId: fields.nodeId.openapi({ description: 'The node that measured it (the one answering).' }),
    samples: z.number().int().nonnegative().openapi({ description: 'Samples PBA has of this path.' }),
    rttMs: z.number().nonnegative().optional().openapi({
      description: 'The last measured RTT, or Raft’s p99 RTT to the slowest peer before any transfer.',
    }),
    predictedBytesPerSec: rate.optional().openapi({ description: 'PBA’s prediction for the next second.' }),
    lowerBytesPerSec: rate.optional().openapi({ description: 'A rate the path should sustain.' }),
    measured: z
      .object({
        at: fields.timestamp,
        goodputBytesPerSec: rate,
        rttMs: z.number().nonnegative().optional(),
        minRttMs: z.number().nonnegative().optional(),
        connections: z.number().int().nonnegative(),
        framesResent: z.number().int().nonnegative().optional(),
        appLimited: z.boolean().optional(),
        kernel: z
          .object({
            deliveryRateBytesPerSec: rate.optional(),
            pacingRateBytesPerSec: rate.optional(),
            cwndBytes: z.number().nonnegative().optional(),
            rttMs: z.number().nonnegative().optional(),
            minRttMs: z.number().nonnegative().optional(),
            retransmits: z.number().int().nonnegative().optional(),
          })
          .strict()
          .optional()
          .openapi({
            description:
              'What the kernel (TCP_INFO) or quinn reported of the same connections: rates and windows summed, RTTs without AMST’s queueing, retransmits over the interval.',
          }),
      })
      .strict()
      .optional()
      .openapi({ description: 'The last sample, taken during a migration to that node.' }),
  })
  .strict()
  .openapi('NodePath');

export const migrationRecordSchema = exactly<MigrationRecord>()(
  z
    .object({
      id: fields.migrationId,
      vmId: fields.vmId,
      sourceNodeId: fields.nodeId,
      targetNodeId: fields.nodeId,
      phase: z.enum(MIGRATION_PHASES),
      reason: fields.reason.optional().openapi({ description: 'Why it failed or was cancelled.' }),
      stats: migrationStatsSchema.openapi('MigrationStats'),
      path: migrationPathSchema.optional().openapi('MigrationPath', {
        description:
          'The path as the source measured it, what PBA predicts, and the parameters chosen from it.',
      }),
      maxBandwidthBytesPerSec: fields.bandwidth.optional(),
      policy: migrationPolicySchema.optional().openapi('MigrationPolicy', {
        description: 'How the migration handles not converging: auto-converge, and its completion timeout.',
      }),
      createdAt: fields.timestamp,
      updatedAt: fields.timestamp,
      revision,
    })
    .strict()
    .openapi('MigrationRecord'),
);

const tokenRecord = z
  .object({
    id: fields.tokenId,
    name: fields.name,
    role: z.enum(ROLES),
    sha256: fields.sha256.openapi({ description: 'SHA-256 of the token; the token itself is never stored.' }),
    createdAt: fields.timestamp,
    revision,
  })
  .strict();

export const apiTokenRecordSchema = exactly<ApiTokenRecord>()(tokenRecord.openapi('ApiTokenRecord'));

export const createdTokenSchema = exactly<ApiTokenRecord & { token: string }>()(
  tokenRecord
    .extend({ token: z.string().openapi({ description: 'The bearer token; shown in this answer only.' }) })
    .strict()
    .openapi('CreatedApiToken'),
);

const raftId = z.number().int().positive();

export const clusterStatusSchema = exactly<ClusterStatus>()(
  z
    .object({
      nodeId: z.string(),
      raftId,
      role: z.enum(['leader', 'follower', 'candidate', 'pre-candidate', 'learner', 'removed']),
      leaderRaftId: raftId.nullable().openapi({ description: '`null` while there is no leader.' }),
      term: z.number().int().nonnegative(),
      commitIndex: z.number().int().nonnegative(),
      appliedIndex: z.number().int().nonnegative(),
      voters: z.array(raftId),
      learners: z.array(raftId),
    })
    .strict()
    .openapi('ClusterStatus'),
);

export const clusterMemberSchema = exactly<ClusterMember>()(
  z
    .object({
      raftId,
      nodeId: z.string().nullable(),
      name: z.string().nullable(),
      role: z.enum(['voter', 'learner']),
      isLeader: z.boolean(),
      apiUrl: z.string().nullable(),
      peerAddr: z.string().nullable(),
      status: z.enum(['ready', 'draining', 'removed']).nullable(),
    })
    .strict()
    .openapi('ClusterMember', {
      description: 'A Raft member; the node fields are `null` until its record is known.',
    }),
);

export const joinResponseSchema = exactly<AdmitResponse>()(
  z
    .object({
      clusterName: z.string(),
      nodeId: z.string(),
      raftId,
      caPem: z.string(),
      certPem: z.string(),
      keyPem: z.string(),
      members: z.array(z.object({ raftId, nodeName: z.string(), addr: z.string() }).strict()),
    })
    .strict()
    .openapi('JoinResponse', { description: "The new member's identity: its certificate, key and Raft id." }),
);

export const consoleSchema = z
  .object({ vmId: fields.vmId, nodeId: fields.nodeId, lines: z.array(z.string()) })
  .strict()
  .openapi('VmConsole');

/** `{ items: [...] }`, the shape of every list. */
export const listOf = <S extends ZodTypeAny>(item: S, name: string) =>
  z
    .object({ items: z.array(item) })
    .strict()
    .openapi(name);

const indicator = z.object({ status: z.enum(['up', 'down']) }).catchall(z.any());
const indicators = z.record(z.string(), indicator);
const someIndicators = z.record(z.string(), indicator.optional());

/** What @nestjs/terminus answers on success. */
export const healthSchema = exactly<HealthCheckResult>()(
  z
    .object({
      status: z.enum(['ok', 'error', 'shutting_down']),
      info: someIndicators.optional(),
      error: someIndicators.optional(),
      details: indicators,
    })
    .strict()
    .openapi('HealthCheckResult'),
);

export const apiErrorBodySchema = exactly<ApiErrorBody>()(
  z
    .object({
      code: z.enum(API_ERROR_CODES),
      message: z.string(),
      fields: z
        .array(z.object({ path: z.string(), message: z.string() }).strict())
        .optional()
        .openapi({
          description: 'One entry per offending field (`capacity.vcpus`); `""` is the whole part.',
        }),
      details: z
        .unknown()
        .optional()
        .openapi({ description: 'Extra machine-readable context, e.g. the failed health indicators.' }),
    })
    .strict()
    .openapi('ApiErrorBody'),
);

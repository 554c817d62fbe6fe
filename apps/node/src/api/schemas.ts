/** Request shapes of the public API, built from the state machine's own field schemas. */
import { fields, labelSetSchema, labelsSchema, ROLES } from '@novacron/cluster-state';
import { type ZodTypeAny, z } from 'zod';
import { invalidArgument } from './errors';

export const consistencySchema = z.enum(['linearizable', 'local']).default('linearizable');

export const readQuerySchema = z.object({ consistency: consistencySchema }).strict();
export type ReadQuery = z.output<typeof readQuerySchema>;

export const createVmSchema = z
  .object({
    name: fields.name,
    image: fields.image,
    vcpus: fields.vcpus,
    memoryMiB: fields.memoryMiB,
    labels: labelsSchema.optional(),
    /** Place on this node rather than letting placement choose. */
    nodeId: fields.nodeId.optional(),
  })
  .strict();
export type CreateVmRequest = z.output<typeof createVmSchema>;

export const updateLabelsSchema = z
  .object({ set: labelSetSchema, expect: labelSetSchema.optional() })
  .strict();
export type UpdateLabelsRequest = z.output<typeof updateLabelsSchema>;

export const createMigrationSchema = z
  .object({
    vmId: fields.vmId,
    targetNodeId: fields.nodeId,
    maxBandwidthBytesPerSec: fields.bandwidth.optional(),
  })
  .strict();
export type CreateMigrationRequest = z.output<typeof createMigrationSchema>;

export const cancelMigrationSchema = z
  .object({ reason: fields.reason.optional() })
  .strict()
  .optional()
  .transform((v) => v ?? {});
export type CancelMigrationRequest = z.output<typeof cancelMigrationSchema>;

export const createTokenSchema = z.object({ name: fields.name, role: z.enum(ROLES) }).strict();
export type CreateTokenRequest = z.output<typeof createTokenSchema>;

export const joinRequestSchema = z
  .object({
    nodeName: fields.name,
    peerAddr: fields.hostPort,
    apiUrl: fields.url,
    capacity: z.object({ vcpus: fields.vcpus, memoryMiB: fields.memoryMiB }).strict(),
  })
  .strict();
export type JoinRequest = z.output<typeof joinRequestSchema>;

/** Validates `value`, or throws ERR_INVALID_ARGUMENT with one entry per offending field. */
export function validate<S extends ZodTypeAny>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalidArgument(result.error, where);
  return result.data;
}

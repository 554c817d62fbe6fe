/**
 * Request shapes of the public API, built from the state machine's own field schemas. The REST
 * contract (*.contract.ts) validates with these very objects and the OpenAPI document is generated
 * from them; `.openapi()` only adds what zod cannot say to JSON Schema by itself.
 */
import {
  diskObject,
  diskRules,
  fields,
  labelSetSchema,
  labelsSchema,
  migrationPolicySchema,
  ROLES,
} from '@novacron/cluster-state';
import type { ZodString, ZodTypeAny } from 'zod';
import { invalidArgument } from './errors';
import { z } from './zod-openapi';

/** libs/cluster-state's labelsSchema and labelSetSchema refuse more labels than this. */
export const MAX_LABELS = 64;

function patternOf(schema: ZodString): string {
  const check = schema._def.checks.find((c) => c.kind === 'regex');
  if (check?.kind !== 'regex') throw new Error('the label key schema has no pattern');
  return check.regex.source;
}

/**
 * zod-to-openapi renders a record's values but drops its key schema and a refinement's limit;
 * JSON Schema says both with propertyNames and maxProperties.
 */
const labelKeys = {
  propertyNames: { type: 'string', pattern: patternOf(fields.labelKey), example: 'app' },
} as const;

const labels = labelsSchema.openapi({ ...labelKeys, maxProperties: MAX_LABELS });
const labelSet = labelSetSchema.openapi({
  ...labelKeys,
  maxProperties: MAX_LABELS,
  description: 'Label values; `null` means the key is (or must be) absent.',
});

/** The field schemas with an example each: a pattern alone tells a reader (or a fuzzer) little. */
const name = fields.name.openapi({ example: 'web-1' });
const nodeId = fields.nodeId.openapi({ example: 'node-2' });
const vmId = fields.vmId.openapi({ example: 'vm-7f3k2q9d' });

export const consistencySchema = z
  .enum(['linearizable', 'local'])
  .default('linearizable')
  .openapi({ description: '`local` reads what this node has applied, without a Raft round trip.' });

export const readQuerySchema = z.object({ consistency: consistencySchema }).strict();
export type ReadQuery = z.output<typeof readQuerySchema>;

export const consoleQuerySchema = z
  .object({ tail: z.coerce.number().int().min(1).max(500).default(100) })
  .strict();
export type ConsoleQuery = z.output<typeof consoleQuerySchema>;

/** `{id}` in a path. Any string is accepted; one that does not have the shape described names nothing: 404. */
export const idParams = (description: string) =>
  z.object({ id: z.string().min(1).openapi({ description }) }).strict();
export type IdParams = z.output<ReturnType<typeof idParams>>;

/** The log's disk schema with examples for the document (its patterns alone make none). */
const { one: disk, list: disks } = diskRules(
  diskObject.extend({
    sizeBytes: diskObject.shape.sizeBytes.openapi({
      example: 4 * 1024 ** 3,
      multipleOf: 1024 * 1024,
      description: 'A whole number of MiB.',
    }),
    image: name.optional().openapi({
      example: 'debian-base',
      description: 'A base image whose disk this one starts from: a qcow2 overlay, or a raw copy.',
    }),
  }),
);
export const diskRequestSchema = disk.openapi('DiskRequest');

/** A disk as the record holds it: as asked for, plus the id its place gave it. */
export const diskRecordSchema = disk
  .extend({
    id: z.string().openapi({
      example: 'vda',
      description: 'Its name in the VM (vda, vdb, ... in order): the guest’s device serial.',
    }),
  })
  .openapi('Disk');

export const createVmSchema = z
  .object({
    name,
    image: fields.image.openapi({ example: 'debian-12' }),
    vcpus: fields.vcpus,
    memoryMiB: fields.memoryMiB,
    labels: labels.optional(),
    disks: disks.optional().openapi({
      description:
        'Disks, in the order the guest sees them (vda, vdb, ...): on a base image’s disk (a qcow2 overlay or a raw copy), or blank. A VM with disks is not live-migrated yet.',
    }),
    nodeId: nodeId.optional().openapi({ description: 'Place here instead of letting placement choose.' }),
  })
  .strict()
  .openapi('CreateVmRequest');
export type CreateVmRequest = z.output<typeof createVmSchema>;

export const updateLabelsSchema = z
  .object({
    set: labelSet,
    expect: labelSet.optional().openapi({ description: 'Compare-and-set guard: current values must match.' }),
  })
  .strict()
  .openapi('UpdateLabelsRequest');
export type UpdateLabelsRequest = z.output<typeof updateLabelsSchema>;

export const createMigrationSchema = z
  .object({
    vmId,
    targetNodeId: nodeId,
    maxBandwidthBytesPerSec: fields.bandwidth
      .optional()
      .openapi({ description: "Caps QEMU's migration bandwidth (bytes/s)." }),
    policy: z
      .object({
        autoConverge: z.boolean().optional().openapi({
          description:
            'Throttle a guest that dirties memory faster than the path carries it (QEMU auto-converge). Default true.',
        }),
        completionTimeoutPerGiBSec: migrationPolicySchema.shape.completionTimeoutPerGiBSec
          .optional()
          .openapi({
            description:
              'Fail, leaving the VM running on its source, once the migration has run this many seconds per GiB of guest RAM. Default 150.',
          }),
      })
      .strict()
      .optional()
      .openapi('MigrationPolicyRequest', {
        description: 'How a migration that does not converge is handled.',
      }),
  })
  .strict()
  .openapi('CreateMigrationRequest');
export type CreateMigrationRequest = z.output<typeof createMigrationSchema>;

/** The body may be left out; the transform only turns "no body" into `{}` and the document shows the object. */
export const cancelMigrationSchema = z
  .object({ reason: fields.reason.optional() })
  .strict()
  .openapi('CancelMigrationRequest')
  .optional()
  .transform((v) => v ?? {});
export type CancelMigrationRequest = z.output<typeof cancelMigrationSchema>;

export const createTokenSchema = z
  .object({ name, role: z.enum(ROLES) })
  .strict()
  .openapi('CreateTokenRequest');
export type CreateTokenRequest = z.output<typeof createTokenSchema>;

export const joinRequestSchema = z
  .object({
    nodeName: fields.name.openapi({ example: 'node-4' }),
    peerAddr: fields.hostPort.openapi({ example: '10.0.0.8:7701' }),
    apiUrl: fields.url.openapi({ example: 'https://10.0.0.8:7700' }),
    capacity: z.object({ vcpus: fields.vcpus, memoryMiB: fields.memoryMiB }).strict(),
  })
  .strict()
  .openapi('JoinRequest');
export type JoinRequest = z.output<typeof joinRequestSchema>;

/** Validates `value`, or throws ERR_INVALID_ARGUMENT with one entry per offending field. */
export function validate<S extends ZodTypeAny>(schema: S, value: unknown, where: string): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw invalidArgument(result.error, where);
  return result.data;
}

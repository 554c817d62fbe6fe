/** The REST contract of /v1/migrations (see contract.ts). */
import type { ApiOperation } from './contract';
import { listOf, migrationRecordSchema } from './responses';
import { cancelMigrationSchema, createMigrationSchema, idParams, readQuerySchema } from './schemas';
import { READ_ERRORS, WRITE_ERRORS } from './store-errors';

const migrationId = idParams('A migration id (`mig-<id>`); one of any other shape names no migration.');
const tag = 'migrations';

export const migrationOperations = {
  create: {
    method: 'post',
    path: '/v1/migrations',
    tag,
    summary: 'Live-migrate a running VM to another node',
    access: 'operator',
    body: createMigrationSchema,
    success: { status: 201, description: 'The migration, pending.', schema: migrationRecordSchema },
    errors: {
      404: 'No such VM or target node.',
      409: 'The VM is not running, already migrating or already on the target, or the target is not ready.',
      ...WRITE_ERRORS,
    },
  },
  list: {
    method: 'get',
    path: '/v1/migrations',
    tag,
    summary: 'List migrations, finished ones included',
    access: 'viewer',
    query: readQuerySchema,
    success: {
      status: 200,
      description: 'The migrations.',
      schema: listOf(migrationRecordSchema, 'MigrationList'),
    },
    errors: READ_ERRORS,
  },
  get: {
    method: 'get',
    path: '/v1/migrations/{id}',
    tag,
    summary: 'Get a migration',
    access: 'viewer',
    params: migrationId,
    query: readQuerySchema,
    success: { status: 200, description: 'The migration.', schema: migrationRecordSchema },
    errors: { 404: 'No such migration.', ...READ_ERRORS },
  },
  cancel: {
    method: 'post',
    path: '/v1/migrations/{id}/cancel',
    tag,
    summary: 'Cancel a migration that has not begun switching over',
    access: 'operator',
    params: migrationId,
    body: cancelMigrationSchema,
    success: { status: 200, description: 'The migration, cancelled.', schema: migrationRecordSchema },
    errors: {
      404: 'No such migration.',
      409: 'The migration has finished or is switching over.',
      ...WRITE_ERRORS,
    },
  },
} satisfies Record<string, ApiOperation>;

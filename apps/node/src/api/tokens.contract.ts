/** The REST contract of /v1/tokens (see contract.ts). */
import type { ApiOperation } from './contract';
import { apiTokenRecordSchema, createdTokenSchema, listOf } from './responses';
import { createTokenSchema, idParams, readQuerySchema } from './schemas';
import { READ_ERRORS, WRITE_ERRORS } from './store-errors';

const tag = 'tokens';

export const tokenOperations = {
  create: {
    method: 'post',
    path: '/v1/tokens',
    tag,
    summary: 'Create an API token; the token is in this response only',
    access: 'admin',
    body: createTokenSchema,
    success: { status: 201, description: 'The token and its record.', schema: createdTokenSchema },
    errors: { 409: 'The new id or hash collides with an existing token.', ...WRITE_ERRORS },
  },
  list: {
    method: 'get',
    path: '/v1/tokens',
    tag,
    summary: 'List API tokens (their hashes, never the tokens)',
    access: 'admin',
    query: readQuerySchema,
    success: {
      status: 200,
      description: 'The tokens.',
      schema: listOf(apiTokenRecordSchema, 'ApiTokenList'),
    },
    errors: READ_ERRORS,
  },
  revoke: {
    method: 'delete',
    path: '/v1/tokens/{id}',
    tag,
    summary: 'Revoke an API token',
    access: 'admin',
    params: idParams('A token id (`tok-<id>`); one of any other shape names no token.'),
    success: { status: 200, description: 'The revoked token.', schema: apiTokenRecordSchema },
    errors: { 404: 'No such token.', 409: 'It is the last admin token.', ...WRITE_ERRORS },
  },
} satisfies Record<string, ApiOperation>;

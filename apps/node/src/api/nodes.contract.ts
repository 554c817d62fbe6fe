/** The REST contract of /v1/nodes (see contract.ts). */
import type { ApiOperation } from './contract';
import { listOf, nodePathSchema, nodeRecordSchema } from './responses';
import { idParams, readQuerySchema } from './schemas';
import { READ_ERRORS, WRITE_ERRORS } from './store-errors';

const nodeId = idParams('A node id (`node-1`); one of any other shape names no node.');
const tag = 'nodes';

export const nodeOperations = {
  list: {
    method: 'get',
    path: '/v1/nodes',
    tag,
    summary: 'List the nodes, removed ones included',
    access: 'viewer',
    query: readQuerySchema,
    success: { status: 200, description: 'The nodes.', schema: listOf(nodeRecordSchema, 'NodeList') },
    errors: READ_ERRORS,
  },
  get: {
    method: 'get',
    path: '/v1/nodes/{id}',
    tag,
    summary: 'Get a node',
    access: 'viewer',
    params: nodeId,
    query: readQuerySchema,
    success: { status: 200, description: 'The node.', schema: nodeRecordSchema },
    errors: { 404: 'No such node.', ...READ_ERRORS },
  },
  path: {
    method: 'get',
    path: '/v1/nodes/{id}/path',
    tag,
    summary: 'What this node has measured and predicts of its network path to a node (PBA)',
    access: 'viewer',
    params: nodeId,
    success: { status: 200, description: 'The path, as far as it was measured.', schema: nodePathSchema },
    errors: { 404: 'No such node.', ...READ_ERRORS },
  },
  drain: {
    method: 'post',
    path: '/v1/nodes/{id}/drain',
    tag,
    summary: 'Stop placing new VMs on a node',
    access: 'admin',
    params: nodeId,
    success: { status: 200, description: 'The node, now draining.', schema: nodeRecordSchema },
    errors: { 404: 'No such node.', 409: 'The node was removed.', ...WRITE_ERRORS },
  },
  remove: {
    method: 'delete',
    path: '/v1/nodes/{id}',
    tag,
    summary: 'Remove a node from the Raft configuration and mark it removed',
    access: 'admin',
    params: nodeId,
    success: { status: 200, description: 'The node, now removed.', schema: nodeRecordSchema },
    errors: {
      404: 'No such node.',
      409: 'The change is refused in the current configuration (e.g. it would remove the last voter).',
      ...WRITE_ERRORS,
    },
  },
} satisfies Record<string, ApiOperation>;

/** The REST contract of /v1/cluster (see contract.ts). */
import type { ApiOperation } from './contract';
import { clusterMemberSchema, clusterStatusSchema, joinResponseSchema, listOf } from './responses';
import { joinRequestSchema, readQuerySchema } from './schemas';
import { READ_ERRORS, WRITE_ERRORS } from './store-errors';

const tag = 'cluster';

export const clusterOperations = {
  status: {
    method: 'get',
    path: '/v1/cluster/status',
    tag,
    summary: "This node's view of the Raft group",
    access: 'viewer',
    success: { status: 200, description: "This node's Raft status.", schema: clusterStatusSchema },
    errors: {},
  },
  members: {
    method: 'get',
    path: '/v1/cluster/members',
    tag,
    summary: 'Voters and learners, with their node records',
    access: 'viewer',
    query: readQuerySchema,
    success: {
      status: 200,
      description: 'The members.',
      schema: listOf(clusterMemberSchema, 'ClusterMemberList'),
    },
    errors: READ_ERRORS,
  },
  leader: {
    method: 'get',
    path: '/v1/cluster/leader',
    tag,
    summary: 'The current leader (503 while there is none)',
    access: 'viewer',
    query: readQuerySchema,
    success: { status: 200, description: 'The leader.', schema: clusterMemberSchema },
    errors: { 503: 'There is no leader: an election is under way or quorum is lost.', 504: READ_ERRORS[504] },
  },
  join: {
    method: 'post',
    path: '/v1/cluster/join',
    tag,
    summary: 'Admit a new node (bearer = the join token); answers with its identity',
    access: 'join-token',
    body: joinRequestSchema,
    success: { status: 201, description: 'The new member.', schema: joinResponseSchema },
    errors: { 409: 'A node of that name is already a member.', ...WRITE_ERRORS },
  },
} satisfies Record<string, ApiOperation>;

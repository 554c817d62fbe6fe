/**
 * The "Errors:" comment of each rpc in proto/dwcp/api/v1 against its REST twin's contract: the same
 * role, and the gRPC statuses (errors.ts GRPC_STATUS) of the twin's domain errors plus those every call has.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterOperations } from '../api/cluster.contract';
import type { ApiOperation } from '../api/contract';
import { GRPC_STATUS, HTTP_STATUS } from '../api/errors';
import { migrationOperations } from '../api/migrations.contract';
import { nodeOperations } from '../api/nodes.contract';
import { vmOperations } from '../api/vms.contract';
import { startTestNode, type TestNode } from '../testing/test-node';
import { GrpcApiServer } from './grpc-api.server';
import { API_GRPC_OPTIONS, PROTO_ROOT } from './grpc-options';

const TWINS: Record<string, ApiOperation> = {
  'NodeService.ListNodes': nodeOperations.list,
  'NodeService.GetNode': nodeOperations.get,
  'NodeService.DrainNode': nodeOperations.drain,
  'NodeService.RemoveNode': nodeOperations.remove,
  'VmService.CreateVm': vmOperations.create,
  'VmService.ListVms': vmOperations.list,
  'VmService.GetVm': vmOperations.get,
  'VmService.StartVm': vmOperations.start,
  'VmService.StopVm': vmOperations.stop,
  'VmService.DeleteVm': vmOperations.remove,
  'VmService.UpdateVmLabels': vmOperations.labels,
  'MigrationService.CreateMigration': migrationOperations.create,
  'MigrationService.ListMigrations': migrationOperations.list,
  'MigrationService.GetMigration': migrationOperations.get,
  'MigrationService.CancelMigration': migrationOperations.cancel,
  'ClusterService.GetStatus': clusterOperations.status,
  'ClusterService.ListMembers': clusterOperations.members,
  'ClusterService.GetLeader': clusterOperations.leader,
};

const name = (code: GrpcStatus): string => GrpcStatus[code] ?? String(code);
const grpcOf = (http: number): string => {
  const code = Object.entries(HTTP_STATUS).find(([, s]) => s === http)?.[0] as keyof typeof GRPC_STATUS;
  return name(GRPC_STATUS[code]);
};

/** `Service.Method` → the codes its "Errors:" comment names. */
function documentedErrors(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const file of API_GRPC_OPTIONS.protoPath) {
    const text = readFileSync(join(PROTO_ROOT, file), 'utf8');
    let service = '';
    let comment: string[] = [];
    for (const line of text.split('\n').map((l) => l.trim())) {
      const s = /^service (\w+)/.exec(line);
      if (s) service = s[1] ?? '';
      if (line.startsWith('//')) comment.push(line);
      const rpc = /^rpc (\w+)\(/.exec(line);
      if (rpc) {
        const errors = comment.find((c) => c.startsWith('// Errors:')) ?? '';
        out.set(
          `${service}.${rpc[1]}`,
          errors
            .replace('// Errors:', '')
            .replace(/\.$/, '')
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean),
        );
      }
      if (!line.startsWith('//')) comment = [];
    }
  }
  return out;
}

/** What the twin's contract says, in gRPC: its domain errors, INVALID_ARGUMENT where gRPC validates (the bodies). */
function expectedErrors(op: ApiOperation): string[] {
  const codes = new Set(['UNAUTHENTICATED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'INTERNAL']);
  if (op.access !== 'viewer') codes.add(grpcOf(403));
  if (op.body) codes.add(grpcOf(400));
  if (op.errors[404]) codes.add(grpcOf(404));
  if (op.errors[409]) codes.add(grpcOf(409));
  return [...codes].sort();
}

let t: TestNode;
beforeAll(async () => {
  t = await startTestNode();
});
afterAll(async () => {
  await t?.node.close();
});

describe('gRPC error documentation', () => {
  it('names every status each rpc can end with, as its REST twin does', () => {
    const documented = documentedErrors();
    expect([...documented.keys()].sort()).toEqual(Object.keys(TWINS).sort());
    for (const [rpc, op] of Object.entries(TWINS)) {
      expect([...(documented.get(rpc) ?? [])].sort(), rpc).toEqual(expectedErrors(op));
    }
  });

  it('each rpc needs the role its REST twin needs', () => {
    const handlers = (
      t.node.app.get(GrpcApiServer) as unknown as {
        handlers(): Record<string, Record<string, { role: string }>>;
      }
    ).handlers();
    for (const [rpc, op] of Object.entries(TWINS)) {
      const [service, method] = rpc.split('.') as [string, string];
      expect(handlers[service]?.[method]?.role, rpc).toBe(op.access);
    }
  });
});

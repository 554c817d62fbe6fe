/** The one description of the public gRPC API that server, clients and tests load: package, files, loader policy. */
import { resolve } from 'node:path';
import type { Options } from '@grpc/proto-loader';

/** proto/ at the repository root, from src/grpc or dist/grpc alike. */
export const PROTO_ROOT = resolve(__dirname, '../../../../proto');

export const API_GRPC_OPTIONS = {
  package: 'dwcp.api.v1',
  protoPath: [
    'dwcp/api/v1/node_service.proto',
    'dwcp/api/v1/vm_service.proto',
    'dwcp/api/v1/migration_service.proto',
    'dwcp/api/v1/cluster_service.proto',
  ],
  loader: {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: false,
    oneofs: true,
  } satisfies Options,
} as const;

export const API_SERVICES = ['NodeService', 'VmService', 'MigrationService', 'ClusterService'] as const;
export type ApiServiceName = (typeof API_SERVICES)[number];

/** The one place that loads proto/dwcp/cluster/v1/peer.proto (package, path, loader policy). */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export const PEER_PROTO = {
  package: 'dwcp.cluster.v1',
  protoPath: join(__dirname, '..', '..', '..', 'proto', 'dwcp', 'cluster', 'v1', 'peer.proto'),
  loader: { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true },
} as const;

/** Wire shapes of the peer service (camelCase, as the loader gives them). */
export interface RaftBatch {
  from: number;
  messages: Buffer[];
}
export interface ProposeRequest {
  command: Buffer;
}
export interface ProposeResponse {
  result: Buffer;
  errorCode: string;
  errorMessage: string;
  errorField: string;
}
export interface MembershipChange {
  kind: 'ADD_NODE' | 'REMOVE_NODE';
  raftId: number;
  context: Buffer;
}
export interface MembershipResult {
  errorCode: string;
  errorMessage: string;
}

let cached: grpc.ServiceClientConstructor | undefined;

/** The generated RaftPeer client constructor (its `.service` is the server definition). */
export function raftPeerService(): grpc.ServiceClientConstructor {
  if (!cached) {
    const def = loadSync(PEER_PROTO.protoPath, { ...PEER_PROTO.loader });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      dwcp: { cluster: { v1: { RaftPeer: grpc.ServiceClientConstructor } } };
    };
    cached = pkg.dwcp.cluster.v1.RaftPeer;
  }
  return cached;
}

/**
 * ACP as the node's consensus module: opens this node's Raft member (bootstrapping, joining or
 * restoring it) and serves the peer port, then provides the Raft-backed ClusterStore, which
 * member this is, and the peer port for other node-to-node services (incoming migrations).
 */
import type * as grpc from '@grpc/grpc-js';
import { type DynamicModule, Module } from '@nestjs/common';
import { CLUSTER_STORE, LOCAL_NODE, type LocalNode } from '@novacron/cluster-state';
import { LOGGER, METRICS_REGISTRY } from '@novacron/observability';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type AcpConfig, type AcpRuntime, startAcp } from './acp-node';
import { type PeerIdentity, peerCertNames } from './peer-transport';

/** The node's AcpRuntime (admission, close, the replica). */
export const ACP_RUNTIME = Symbol.for('dwcp.AcpRuntime');
/** The node's PeerPort. */
export const PEER_PORT = Symbol.for('dwcp.PeerPort');

/** The mutual-TLS peer port, for other node-to-node services. */
export interface PeerPort {
  identity: PeerIdentity;
  /** Serves another gRPC service under the same mutual TLS. */
  addPeerService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void;
  /** The DNS names in a peer call's client certificate. */
  certNames: typeof peerCertNames;
  /** The p99 round trip of Raft batches to the slowest peer, in ms; undefined before any sample. */
  peerRttMs(): number | undefined;
  /** The lowest recent Raft round trip to one peer (by Raft id), ms: nearer its path's RTT than the p99. */
  minRttMsTo(raftId: number): number | undefined;
}

async function openAcp(cfg: AcpConfig, registry: Registry, logger: Logger): Promise<AcpRuntime> {
  const runtime = await startAcp(cfg, registry);
  if (runtime.created) {
    // The one time the operator learns where the first admin token is.
    logger.warn(
      { adminTokenFile: runtime.created.adminTokenFile, joinTokenFile: runtime.created.joinTokenFile },
      `created a new single-node cluster; the admin token is in ${runtime.created.adminTokenFile}`,
    );
  }
  return runtime;
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class ConsensusModule {
  /** The runtime is closed by whoever orders the node's shutdown (after the API and the VM host). */
  static forRoot(cfg: AcpConfig): DynamicModule {
    return {
      module: ConsensusModule,
      global: true,
      providers: [
        {
          provide: ACP_RUNTIME,
          useFactory: (registry: Registry, logger: Logger) => openAcp(cfg, registry, logger),
          inject: [METRICS_REGISTRY, LOGGER],
        },
        { provide: CLUSTER_STORE, useFactory: (rt: AcpRuntime) => rt.store, inject: [ACP_RUNTIME] },
        {
          provide: LOCAL_NODE,
          useFactory: (rt: AcpRuntime): LocalNode => ({
            nodeId: rt.membership.nodeId,
            nodeName: rt.membership.nodeName,
          }),
          inject: [ACP_RUNTIME],
        },
        {
          provide: PEER_PORT,
          useFactory: (rt: AcpRuntime): PeerPort => ({
            identity: rt.identity,
            addPeerService: (service, implementation) => rt.addPeerService(service, implementation),
            certNames: peerCertNames,
            peerRttMs: () => rt.peerRttMs(),
            minRttMsTo: (raftId) => rt.minRttMsTo(raftId),
          }),
          inject: [ACP_RUNTIME],
        },
      ],
      exports: [ACP_RUNTIME, CLUSTER_STORE, LOCAL_NODE, PEER_PORT],
    };
  }
}

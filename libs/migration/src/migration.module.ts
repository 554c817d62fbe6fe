/**
 * Live migration in the node: the MigrationAgent (this node's part as source and as target), its
 * native data paths over the node's chunk store and mutual-TLS identity, metered in the node's
 * registry, and the IncomingMigration service on the peer port. Needs the consensus module
 * (CLUSTER_STORE, LOCAL_NODE, PEER_PORT), the host module (VM_HOST, IMAGE_CATALOG), the chunk
 * store module (CHUNK_STORE), and imports transport and bandwidth itself.
 */
import { type DynamicModule, Inject, Injectable, Module, type OnApplicationBootstrap } from '@nestjs/common';
import { BandwidthModule, PATH_ESTIMATOR, type PathEstimator } from '@novacron/bandwidth';
import { CLUSTER_STORE, type ClusterStore, LOCAL_NODE, type LocalNode } from '@novacron/cluster-state';
import { PEER_PORT, type PeerPort } from '@novacron/consensus';
import { CHUNK_STORE } from '@novacron/hde';
import { IMAGE_CATALOG, type ImageCatalog, VM_HOST, type VmHost } from '@novacron/host';
import type { ChunkStore } from '@novacron/native';
import { LOGGER, METRICS_REGISTRY } from '@novacron/observability';
import { AMST_METRICS, type AmstMetrics, TransportModule } from '@novacron/transport';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { incomingMigrationServer, incomingMigrationService } from './incoming-rpc';
import { MigrationMetrics } from './metrics';
import { MigrationAgent } from './migration-agent';
import { NativeSinkPath, NativeSourcePath } from './native-data-path';

export const MIGRATION_AGENT = Symbol.for('dwcp.MigrationAgent');

export interface MigrationModuleOptions {
  /** The address incoming migrations' sinks listen on. */
  listenHost: string;
  /** What a source is told to dial, when not `listenHost` (NAT, a namespace). */
  advertiseHost?: string;
  /** How long a sink waits for a lost source before it gives up. */
  orphanTimeoutMs: number;
  /** How long a pending migration waits for its VM to be up on this node. */
  vmWaitMs?: number;
}

/** Serves the peer RPCs and starts following once the node is up; `close` aborts every migration. */
@Injectable()
export class MigrationService implements OnApplicationBootstrap {
  constructor(
    @Inject(MIGRATION_AGENT) readonly agent: MigrationAgent,
    @Inject(PEER_PORT) private readonly peer: PeerPort,
  ) {}

  onApplicationBootstrap(): void {
    this.peer.addPeerService(
      incomingMigrationService().service,
      incomingMigrationServer(this.agent.handlers(), this.peer.certNames),
    );
    this.agent.start();
  }

  /** Runs before the VM host closes: each outgoing run rolls back, each incoming one is aborted. */
  close(): Promise<void> {
    return this.agent.close();
  }
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class MigrationModule {
  static forRoot(options: MigrationModuleOptions): DynamicModule {
    return {
      module: MigrationModule,
      imports: [TransportModule, BandwidthModule],
      providers: [
        {
          provide: MIGRATION_AGENT,
          useFactory: (
            store: ClusterStore,
            node: LocalNode,
            peer: PeerPort,
            host: VmHost,
            images: ImageCatalog,
            chunks: ChunkStore,
            amst: AmstMetrics,
            path: PathEstimator,
            registry: Registry,
            logger: Logger,
          ) =>
            new MigrationAgent({
              store,
              host,
              images,
              nodeId: () => node.nodeId,
              identity: peer.identity,
              sinkPath: new NativeSinkPath({
                store: chunks,
                identity: peer.identity,
                nodeName: node.nodeName,
                host: options.listenHost,
                ...(options.advertiseHost ? { advertiseHost: options.advertiseHost } : {}),
                orphanTimeoutMs: options.orphanTimeoutMs,
                metrics: amst,
              }),
              sourcePath: new NativeSourcePath({ identity: peer.identity, metrics: amst }),
              metrics: new MigrationMetrics(registry),
              logger,
              path,
              ...(options.vmWaitMs === undefined ? {} : { vmWaitMs: options.vmWaitMs }),
            }),
          inject: [
            CLUSTER_STORE,
            LOCAL_NODE,
            PEER_PORT,
            VM_HOST,
            IMAGE_CATALOG,
            CHUNK_STORE,
            AMST_METRICS,
            PATH_ESTIMATOR,
            METRICS_REGISTRY,
            LOGGER,
          ],
        },
        MigrationService,
      ],
      exports: [MIGRATION_AGENT, MigrationService],
    };
  }
}

/**
 * The node daemon's root module, assembled from the libs' modules (see node-modules.ts) and the
 * node's own API modules.
 */
import { type DynamicModule, Module } from '@nestjs/common';
import { ObservabilityModule } from '@novacron/observability';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { ApiModule } from './api/api.module';
import type { ProposalSource } from './api/proposal-source';
import { AuthModule } from './auth/auth.module';
import type { NodeConfig } from './config/node-config';
import { GrpcApiModule } from './grpc/grpc-api.module';
import { HealthModule } from './health/health.module';
import { MetricsModule } from './metrics/metrics.module';
import { NodeContextModule } from './node-context.module';
import { NodeLifecycle } from './node-lifecycle';

export interface NodeAppOptions {
  config: NodeConfig;
  logger: Logger;
  registry: Registry;
  proposals: ProposalSource;
  /** Provides CLUSTER_STORE and LOCAL_NODE to every module: ACP's ConsensusModule in a node. */
  consensus: DynamicModule;
  /** The modules that make the node a VM host (vmHostModules); none on an API-only node. */
  host?: readonly DynamicModule[];
}

@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class NodeAppModule {
  static forRoot(o: NodeAppOptions): DynamicModule {
    return {
      module: NodeAppModule,
      imports: [
        ObservabilityModule.forRoot({ registry: o.registry, logger: o.logger }),
        o.consensus,
        ...(o.host ?? []),
        NodeContextModule.forRoot({ config: o.config, proposals: o.proposals }),
        AuthModule,
        HealthModule,
        MetricsModule,
        ApiModule,
        GrpcApiModule,
      ],
      providers: [NodeLifecycle],
    };
  }
}

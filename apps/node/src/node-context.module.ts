/** The process-wide values every module may inject: config, the ClusterStore, the logger, the metrics registry. */
import { type DynamicModule, Global, Module } from '@nestjs/common';
import type { ClusterStore } from '@novacron/cluster-state';
import type { VmHost } from '@novacron/host';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ClusterAdmission } from './api/admission';
import type { ProposalSource } from './api/proposal-source';
import type { NodeConfig } from './config/node-config';
import {
  ADMISSION,
  CLUSTER_STORE,
  LOGGER,
  METRICS_REGISTRY,
  NODE_CONFIG,
  PROPOSAL_SOURCE,
  VM_HOST,
} from './tokens';

export interface NodeContext {
  config: NodeConfig;
  store: ClusterStore;
  logger: Logger;
  registry: Registry;
  proposals: ProposalSource;
  admission: ClusterAdmission | null;
  /** The VMs this node runs; null when it hosts none (API-only tests). */
  host: VmHost | null;
}

@Global()
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class NodeContextModule {
  static forRoot(ctx: NodeContext): DynamicModule {
    const providers = [
      { provide: NODE_CONFIG, useValue: ctx.config },
      { provide: CLUSTER_STORE, useValue: ctx.store },
      { provide: LOGGER, useValue: ctx.logger },
      { provide: METRICS_REGISTRY, useValue: ctx.registry },
      { provide: PROPOSAL_SOURCE, useValue: ctx.proposals },
      { provide: ADMISSION, useValue: ctx.admission },
      { provide: VM_HOST, useValue: ctx.host },
    ];
    return { module: NodeContextModule, providers, exports: providers.map((p) => p.provide) };
  }
}

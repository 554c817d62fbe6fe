/**
 * The node's own process-wide values: its config, the proposal source (clock and ids of commands)
 * and how it admits joining nodes (ACP's, when the node runs ACP; none otherwise).
 */
import { type DynamicModule, Global, Module } from '@nestjs/common';
import { ACP_RUNTIME, type AcpRuntime } from '@novacron/consensus';
import type { ClusterAdmission } from './api/admission';
import type { ProposalSource } from './api/proposal-source';
import type { NodeConfig } from './config/node-config';
import { ADMISSION, NODE_CONFIG, PROPOSAL_SOURCE } from './tokens';

export interface NodeContext {
  config: NodeConfig;
  proposals: ProposalSource;
}

@Global()
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest dynamic module is a class with a static forRoot.
export class NodeContextModule {
  static forRoot(ctx: NodeContext): DynamicModule {
    const providers = [
      { provide: NODE_CONFIG, useValue: ctx.config },
      { provide: PROPOSAL_SOURCE, useValue: ctx.proposals },
      {
        provide: ADMISSION,
        useFactory: (acp?: AcpRuntime): ClusterAdmission | null =>
          acp ? (token, request) => acp.admit(token, request) : null,
        inject: [{ token: ACP_RUNTIME, optional: true }],
      },
    ];
    return { module: NodeContextModule, providers, exports: providers.map((p) => p.provide) };
  }
}

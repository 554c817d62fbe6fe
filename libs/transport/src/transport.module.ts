/**
 * AMST in the node: registers the `dwcp_amst_*` metrics in the node's registry and provides them,
 * so every native transfer this node runs (migrations included) is metered there.
 */
import { Module } from '@nestjs/common';
import { METRICS_REGISTRY } from '@novacron/observability';
import type { Registry } from 'prom-client';
import { amstMetrics } from './native/metrics';

export const AMST_METRICS = Symbol.for('dwcp.AmstMetrics');

@Module({
  providers: [
    { provide: AMST_METRICS, useFactory: (r: Registry) => amstMetrics(r), inject: [METRICS_REGISTRY] },
  ],
  exports: [AMST_METRICS],
})
export class TransportModule {}

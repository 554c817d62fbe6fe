/** The node's PathEstimator: fed by migrations' transport samples, and the consensus module's RTT before any. */
import { Global, Module } from '@nestjs/common';
import { PEER_PORT, type PeerPort } from '@novacron/consensus';
import { METRICS_REGISTRY } from '@novacron/observability';
import type { Registry } from 'prom-client';
import { PathEstimator } from './path-estimator';
import { PathPredictor } from './predictor';

export const PATH_ESTIMATOR = Symbol.for('dwcp.PathEstimator');

@Global()
@Module({
  providers: [
    {
      provide: PATH_ESTIMATOR,
      useFactory: (peer: PeerPort, registry: Registry) =>
        new PathEstimator(peer, { newPredictor: () => new PathPredictor(), registry }),
      inject: [PEER_PORT, METRICS_REGISTRY],
    },
  ],
  exports: [PATH_ESTIMATOR],
})
export class BandwidthModule {}

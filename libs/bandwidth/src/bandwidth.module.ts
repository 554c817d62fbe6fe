/** The node's PathEstimator: fed by migrations' transport samples, and the consensus module's RTT before any. */
import { Global, Module } from '@nestjs/common';
import { PEER_PORT, type PeerPort } from '@novacron/consensus';
import { METRICS_REGISTRY } from '@novacron/observability';
import type { Registry } from 'prom-client';
import { PathEstimator, type ThroughputPredictor } from './path-estimator';

export const PATH_ESTIMATOR = Symbol.for('dwcp.PathEstimator');

/** Interim predictor: the last sample, with its lower bound at 80 %. */
function lastSample(): ThroughputPredictor {
  let last: number | undefined;
  return {
    observe: (_atMs, bytesPerSec) => {
      last = bytesPerSec;
    },
    predict: () => (last === undefined ? undefined : { bytesPerSec: last, lowerBytesPerSec: last * 0.8 }),
  };
}

@Global()
@Module({
  providers: [
    {
      provide: PATH_ESTIMATOR,
      useFactory: (peer: PeerPort, registry: Registry) =>
        new PathEstimator(peer, { newPredictor: lastSample, registry }),
      inject: [PEER_PORT, METRICS_REGISTRY],
    },
  ],
  exports: [PATH_ESTIMATOR],
})
export class BandwidthModule {}

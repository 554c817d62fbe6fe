/** The node's PathEstimator, fed by the consensus module's RTT samples. */
import { Module } from '@nestjs/common';
import { PEER_PORT, type PeerPort } from '@novacron/consensus';
import { PathEstimator } from './path-estimator';

export const PATH_ESTIMATOR = Symbol.for('dwcp.PathEstimator');

@Module({
  providers: [
    { provide: PATH_ESTIMATOR, useFactory: (peer: PeerPort) => new PathEstimator(peer), inject: [PEER_PORT] },
  ],
  exports: [PATH_ESTIMATOR],
})
export class BandwidthModule {}

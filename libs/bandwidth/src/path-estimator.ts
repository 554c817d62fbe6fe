/**
 * What this node knows of the network path to a peer, for the choices a migration makes
 * (streams, compression, QEMU's bandwidth and downtime limits). Today that is only the RTT that
 * Raft measures (the p99 of its batches to the slowest peer); PBA's bandwidth probes and
 * predictions will answer here too.
 */

/** A path as measured; a field is absent when nothing measured it. */
export interface PathEstimate {
  rttMs?: number;
  bandwidthBytesPerSec?: number;
}

/** Where round trips come from (the consensus module's peer port). */
export interface RttSource {
  peerRttMs(): number | undefined;
}

export class PathEstimator {
  constructor(private readonly rtt: RttSource) {}

  /** The path to `peerNodeId` as far as this node has measured it. */
  estimate(_peerNodeId: string): PathEstimate {
    const rttMs = this.rtt.peerRttMs();
    return rttMs === undefined ? {} : { rttMs };
  }
}

import { describe, expect, it } from 'vitest';
import { PathEstimator } from './path-estimator';

describe('PathEstimator', () => {
  it('reports the measured RTT, and nothing before any sample', () => {
    let rtt: number | undefined;
    const estimator = new PathEstimator({ peerRttMs: () => rtt });
    expect(estimator.estimate('node-2')).toEqual({});
    rtt = 42;
    expect(estimator.estimate('node-2')).toEqual({ rttMs: 42 });
  });
});

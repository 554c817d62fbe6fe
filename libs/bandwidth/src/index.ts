/** @novacron/bandwidth: PBA, what this node knows and predicts of the path to its peers. */
export { BandwidthModule, PATH_ESTIMATOR } from './bandwidth.module';
export {
  type PathEstimate,
  PathEstimator,
  type PathEstimatorOptions,
  type PathSample,
  type PeerPathView,
  type RttSource,
  type ThroughputPredictor,
} from './path-estimator';

/** @novacron/bandwidth: PBA, what this node knows and predicts of the path to its peers. */
export { BandwidthModule, PATH_ESTIMATOR } from './bandwidth.module';
export {
  type KernelPathSample,
  type PathEstimate,
  PathEstimator,
  type PathEstimatorOptions,
  type PathSample,
  type PeerPathView,
  type RttSource,
  type ThroughputPredictor,
} from './path-estimator';
export {
  type BandwidthPrediction,
  BIN_MS,
  LOWER_QUANTILE,
  MAX_SAMPLE_INTERVAL_MS,
  PathPredictor,
  type PathPredictorOptions,
  type PredictionSource,
  type RttPrediction,
} from './predictor';
export { type BinRatePredictor, HarmonicMeanPredictor, LastBinPredictor } from './predictor-baselines';
export {
  FEATURE_NAMES,
  LogRateFeatures,
  MIN_RATE_BYTES_PER_SEC,
  PBA_COEFFICIENTS,
  PbaBinPredictor,
  PREDICTION_HORIZONS,
  type PredictionHorizon,
  predictedLogRatio,
} from './predictor-model';

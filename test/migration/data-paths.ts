/** Moved to bench/src/data-paths.ts, which bench:tcg shares; kept so the specs' imports stay short. */
export { testDataPaths } from '../../bench/src/data-paths';

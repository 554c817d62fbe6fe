/** Moved to bench/src/loopback-link.ts, which bench:tcg shares; kept so the specs' imports stay short. */
export { LoopbackLink } from '../../bench/src/loopback-link';

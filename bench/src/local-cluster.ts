/** Moved to @novacron/local-cluster (libs/local-cluster), which the demo shares; kept so bench imports stay short. */
export * from '@novacron/local-cluster';

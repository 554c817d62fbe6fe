/** @novacron/local-cluster: real DWCP node processes on this machine. */
export * from './local-cluster';

/**
 * Injection tokens. Every injection is explicit (`@Inject(TOKEN)`), so the modules also work where
 * no decorator metadata is emitted (vitest). The libs' tokens are re-exported from their modules.
 */
export { CLUSTER_STORE } from '@novacron/cluster-state';
export { VM_HOST } from '@novacron/host';
export { LOGGER, METRICS_REGISTRY } from '@novacron/observability';
export const NODE_CONFIG = Symbol('NODE_CONFIG');
export const PROPOSAL_SOURCE = Symbol('PROPOSAL_SOURCE');
export const ADMISSION = Symbol('ADMISSION');

/** Injection tokens. Every injection is explicit (`@Inject(TOKEN)`), so the modules also work where no decorator metadata is emitted (vitest). */
export const NODE_CONFIG = Symbol('NODE_CONFIG');
export const CLUSTER_STORE = Symbol('CLUSTER_STORE');
export const LOGGER = Symbol('LOGGER');
export const METRICS_REGISTRY = Symbol('METRICS_REGISTRY');
export const PROPOSAL_SOURCE = Symbol('PROPOSAL_SOURCE');
export const ADMISSION = Symbol('ADMISSION');
export const VM_HOST = Symbol('VM_HOST');

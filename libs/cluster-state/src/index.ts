/** @novacron/cluster-state: the control plane's replicated state machine and the ClusterStore contract. */
export { type CommandOutcome, decodeCommand, encodeCommand } from './commands';
export {
  DomainError,
  type DomainErrorCode,
  type DomainErrorInfo,
  ERROR_CODES,
  isDomainErrorCode,
} from './errors';
export { newMigrationId, newTokenId, newVmId } from './ids';
export {
  CANCELLABLE_PHASES,
  canAdvance,
  forwardPath,
  isTerminal,
  TERMINAL_PHASES,
  type TerminalPhase,
} from './migration-phases';
export { fits, type PlacementRequest, pickNode } from './placement';
export * from './records';
export {
  type ClusterCommand,
  type ClusterCommandType,
  type CommandOf,
  capacitySchema,
  clusterCommandSchema,
  diskObject,
  diskRules,
  diskSchema,
  disksSchema,
  fields,
  issuePath,
  labelSetSchema,
  labelsSchema,
  migrationPathSchema,
  migrationPolicySchema,
  migrationStatsSchema,
  type ValidClusterCommand,
} from './schema';
export { StateFollower } from './state-follower';
export { ClusterStateMachine } from './state-machine';
export {
  CLUSTER_STORE,
  type ClusterStatus,
  type ClusterStore,
  LOCAL_NODE,
  type LocalNode,
  type RaftRole,
  type ReadConsistency,
} from './store';
export type { ClusterStateView } from './view';

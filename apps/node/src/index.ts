/** @novacron/node: the DWCP node daemon's API process. */
export type { ClusterAdmission } from './api/admission';
export { type ProposalSource, systemProposalSource } from './api/proposal-source';
export { sha256Hex } from './auth/authenticator';
export { type ListenerTls, listenerTls, nodeCertificatePaths } from './config/listener-tls';
export {
  apiUrlOf,
  ConfigError,
  isLoopback,
  loadNodeConfig,
  type NodeConfig,
  type NodeConfigInput,
  nodeConfigSchema,
  parseNodeConfig,
} from './config/node-config';
export { API_GRPC_OPTIONS, PROTO_ROOT } from './grpc/grpc-options';
export { main, type NodeModuleOverrides, nodePidFile, runNode, STOP_VMS_SIGNAL } from './main';
export { acpConfigOf, consensusModule, vmHostModules } from './node-modules';
export { createNodeLogger, type NodeDeps, type NodeHandle, startNode } from './start-node';

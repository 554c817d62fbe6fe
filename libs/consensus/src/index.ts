/** ACP: the Raft-replicated cluster state of a DWCP node. */
export {
  type AcpConfig,
  type AcpRuntime,
  type AdmitRequest,
  type AdmitResponse,
  DEFAULT_RAFT,
  startAcp,
} from './acp-node';
export { ClusterFiles, defaultNodeName, type Membership, newSecret, sha256Hex } from './cluster-files';
export { ACP_RUNTIME, ConsensusModule, PEER_PORT, type PeerPort } from './consensus.module';
export { type AcpMetrics, acpMetrics } from './metrics';
export { type PeerAddress, type PeerIdentity, PeerTransport, peerCertNames } from './peer-transport';
export { RaftClusterStore } from './raft-cluster-store';
export { RaftReplica, type RaftRole } from './raft-replica';
export { DEFAULT_TICK_POLICY, TickPolicy, type TickPolicyOptions } from './tick-policy';

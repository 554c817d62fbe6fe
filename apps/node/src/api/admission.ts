/** How this node admits a joining node; libs/consensus provides it on the node that holds the cluster CA. */
import type { JoinRequest } from './schemas';

/** Checks the join token itself and answers with the new member's identity (certificate, Raft id, ...). */
export type ClusterAdmission = (joinToken: string, request: JoinRequest) => Promise<unknown>;

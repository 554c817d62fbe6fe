/**
 * The clock and the randomness a proposer puts into commands. They live behind one adapter because
 * the state machine must never read either: replicas would disagree.
 */
import { randomBytes } from 'node:crypto';
import { newMigrationId, newTokenId, newVmId } from '@novacron/cluster-state';

export interface ProposalSource {
  now(): string;
  newVmId(): string;
  newMigrationId(): string;
  newTokenId(): string;
  /** A fresh API bearer token (see auth/authenticator.ts for the format). */
  newApiToken(): string;
}

export const systemProposalSource: ProposalSource = {
  now: () => new Date().toISOString(),
  newVmId,
  newMigrationId,
  newTokenId,
  newApiToken: () => `dwcp_api_${randomBytes(32).toString('base64url')}`,
};

/**
 * Which membership changes a leader may propose. A change that would leave the cluster without
 * a quorum (the last voter, or so few reachable voters that nothing could commit) is refused
 * before it reaches the log: once committed, a conf change cannot be taken back.
 */
import { DomainError } from '@novacron/cluster-state';

export interface MembershipView {
  voters: readonly number[];
  learners: readonly number[];
  /** Whether the leader has heard from this member recently (the leader itself always counts). */
  isReachable(raftId: number): boolean;
}

export const quorumOf = (voters: number): number => Math.floor(voters / 2) + 1;

/** Throws ERR_CONFLICT naming the reason when removing `target` would leave no working quorum. */
export function checkRemoval(view: MembershipView, target: number): void {
  if (!view.voters.includes(target)) return; // a learner or a non-member: no quorum depends on it
  const remaining = view.voters.filter((v) => v !== target);
  if (remaining.length === 0) {
    throw new DomainError(
      'ERR_CONFLICT',
      `raft id ${target} is the cluster's last voter: removing it would leave no one to commit anything; add another node first`,
      'id',
    );
  }
  const reachable = remaining.filter((v) => view.isReachable(v));
  const quorum = quorumOf(remaining.length);
  if (reachable.length < quorum) {
    const down = remaining.filter((v) => !view.isReachable(v));
    throw new DomainError(
      'ERR_CONFLICT',
      `removing raft id ${target} would leave ${remaining.length} voters of which ${reachable.length} are reachable (not reachable: ${down.join(', ')}); a quorum needs ${quorum}. Remove an unreachable node first, or bring it back`,
      'id',
    );
  }
}

/** Whether `raftId` is in the configuration at all. */
export const isMember = (view: Pick<MembershipView, 'voters' | 'learners'>, raftId: number): boolean =>
  view.voters.includes(raftId) || view.learners.includes(raftId);

/** The voter to hand leadership to before the leader itself is removed: a reachable one, lowest id first. */
export function successorOf(view: MembershipView, leader: number): number | undefined {
  return [...view.voters].sort((a, b) => a - b).find((v) => v !== leader && view.isReachable(v));
}

//! What the driver hands back: the output of one Ready cycle, and status snapshots.

use raft::eraftpb::{ConfState, EntryType};
use raft::StateRole;

/// A message for a peer: `bytes` is a protobuf-encoded `eraftpb.Message`, to be handed to that
/// peer's `step` as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The recipient's node id.
    pub to: u64,
    /// The encoded message.
    pub bytes: Vec<u8>,
}

/// What a committed entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Application data (empty data: the no-op a new leader appends).
    Normal,
    /// A `ConfChange`: the caller must `apply_conf_change(index)` before the next `ready`.
    ConfChange,
    /// A `ConfChangeV2`: the same.
    ConfChangeV2,
}

impl From<EntryType> for EntryKind {
    fn from(t: EntryType) -> Self {
        match t {
            EntryType::EntryNormal => EntryKind::Normal,
            EntryType::EntryConfChange => EntryKind::ConfChange,
            EntryType::EntryConfChangeV2 => EntryKind::ConfChangeV2,
        }
    }
}

/// A committed log entry, to be applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEntry {
    /// Log index.
    pub index: u64,
    /// Term it was proposed in.
    pub term: u64,
    /// Normal data or a conf change.
    pub kind: EntryKind,
    /// The proposal's data (an encoded conf change for conf-change entries).
    pub data: Vec<u8>,
    /// The proposal's context.
    pub context: Vec<u8>,
}

/// A linearizable read is safe at `index` once the caller has applied up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index at the time the read was confirmed.
    pub index: u64,
    /// The context given to `read_index`.
    pub request_ctx: Vec<u8>,
}

/// A node's role in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for votes.
    Candidate,
    /// Leads the term.
    Leader,
    /// Asks whether it could win a vote, before disrupting anyone (pre-vote).
    PreCandidate,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
            StateRole::PreCandidate => Role::PreCandidate,
        }
    }
}

/// The leader or the role changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftStateChange {
    /// The leader this node knows of, 0 if none.
    pub leader_id: u64,
    /// This node's role.
    pub role: Role,
}

/// A snapshot the caller must replace its state machine with (`data`) before applying the
/// committed entries of the same Ready: one received from the leader, or the stored one on
/// restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredSnapshot {
    /// The last index the snapshot covers.
    pub index: u64,
    /// Its term.
    pub term: u64,
    /// The state machine bytes given to `compact` on the node that took it.
    pub data: Vec<u8>,
    /// The membership at that index.
    pub membership: Membership,
}

/// Voters and learners of a configuration (a joint configuration also has outgoing voters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voters, sorted.
    pub voters: Vec<u64>,
    /// Learners, sorted.
    pub learners: Vec<u64>,
    /// Voters of the outgoing half of a joint configuration, sorted; empty otherwise.
    pub voters_outgoing: Vec<u64>,
}

impl From<&ConfState> for Membership {
    fn from(cs: &ConfState) -> Self {
        let sorted = |ids: &[u64]| {
            let mut v = ids.to_vec();
            v.sort_unstable();
            v
        };
        Membership {
            voters: sorted(cs.get_voters()),
            learners: sorted(cs.get_learners()),
            voters_outgoing: sorted(cs.get_voters_outgoing()),
        }
    }
}

/// Everything one `ready()` produced. It has all been persisted (fsync'd) already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadyOutput {
    /// Messages to send, in order.
    pub messages: Vec<OutgoingMessage>,
    /// Entries to apply, in index order, after `snapshot` if there is one.
    pub committed_entries: Vec<CommittedEntry>,
    /// Reads that are now safe.
    pub read_states: Vec<ReadState>,
    /// Set when the leader or this node's role changed.
    pub soft_state: Option<SoftStateChange>,
    /// Set when a snapshot from the leader replaced the log, and in the first `ready()` after
    /// `open` (the stored snapshot): replace the state machine with it before applying
    /// `committed_entries`.
    pub snapshot: Option<RestoredSnapshot>,
    /// raft-rs needed a snapshot the stored one cannot serve (a peer is too far behind, or was
    /// added after it): call `compact` with the state machine soon.
    pub snapshot_requested: bool,
}

/// A conf change that a leader can propose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// Add a voter (or promote a learner).
    AddNode,
    /// Remove a voter or learner.
    RemoveNode,
    /// Add a learner: it receives the log but does not vote.
    AddLearner,
}

/// What applying one committed conf-change entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedConfChange {
    /// The membership in force after the entry (unchanged when it was rejected).
    pub membership: Membership,
    /// The single change the entry asked for; `None` for a joint change or one that does not
    /// decode.
    pub change: Option<(ConfChangeKind, u64)>,
    /// Why the entry changed nothing, when raft-rs refused it (e.g. it would remove the last
    /// voter) or it does not decode. Every replica reaches the same verdict, so a rejected entry
    /// is a no-op everywhere, now and when the log is replayed.
    pub rejected: Option<String>,
}

/// A node's state, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node's id.
    pub id: u64,
    /// Current term.
    pub term: u64,
    /// The leader this node knows of, 0 if none.
    pub leader_id: u64,
    /// This node's role.
    pub role: Role,
    /// Highest index known committed.
    pub commit: u64,
    /// Highest index handed to the caller to apply.
    pub applied: u64,
    /// First index in the log (the snapshot index + 1).
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// The current membership.
    pub membership: Membership,
    /// This node has applied its own removal: it no longer ticks, steps messages or proposes.
    pub removed: bool,
}

//! `NodeConfig`: what a node is opened with, checked with errors that name the field.

use crate::error::{AcpError, Result};

/// Index of the snapshot a new cluster starts from. Non-zero, as in TiKV, so that a node joining
/// with an empty log is always caught up by a snapshot, which carries the membership.
pub const BOOTSTRAP_INDEX: u64 = 5;
/// Term of that snapshot.
pub const BOOTSTRAP_TERM: u64 = 5;

/// The options of one Raft node. Field names in errors are the TS config's (camelCase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id: non-zero, unique in the cluster.
    pub id: u64,
    /// Ticks without a leader before a follower campaigns (raft-rs randomizes in `[e, 2e)`).
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; must be less than `election_tick`.
    pub heartbeat_tick: usize,
    /// Voters of a new cluster, used only when the data directory is blank. Empty for a node
    /// that joins an existing cluster: it learns the membership from the leader.
    pub initial_voters: Vec<u64>,
    /// Pre-vote: a partitioned node does not disrupt the cluster when it comes back.
    pub pre_vote: bool,
    /// A leader that loses contact with a quorum steps down.
    pub check_quorum: bool,
    /// Upper bound on the entry bytes in one append message.
    pub max_size_per_msg: u64,
    /// Append messages in flight to one follower.
    pub max_inflight_msgs: usize,
}

impl NodeConfig {
    /// Defaults for node `id`: election 10 ticks, heartbeat 2, pre-vote and check-quorum on.
    pub fn new(id: u64) -> Self {
        NodeConfig {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            initial_voters: Vec::new(),
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(AcpError::config("id", "must be non-zero"));
        }
        if self.heartbeat_tick == 0 {
            return Err(AcpError::config("heartbeatTick", "must be at least 1"));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(AcpError::config(
                "electionTick",
                format!(
                    "must be greater than heartbeatTick ({})",
                    self.heartbeat_tick
                ),
            ));
        }
        if self.max_inflight_msgs == 0 {
            return Err(AcpError::config("maxInflightMsgs", "must be at least 1"));
        }
        if self.max_size_per_msg == 0 {
            return Err(AcpError::config("maxSizePerMsg", "must be at least 1"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &v in &self.initial_voters {
            if v == 0 {
                return Err(AcpError::config("initialVoters", "ids must be non-zero"));
            }
            if !seen.insert(v) {
                return Err(AcpError::config(
                    "initialVoters",
                    format!("{v} is listed twice"),
                ));
            }
        }
        if !self.initial_voters.is_empty() && !seen.contains(&self.id) {
            return Err(AcpError::config(
                "initialVoters",
                format!(
                    "must include this node's id {} (a joining node passes none)",
                    self.id
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn to_raft(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: self.check_quorum,
            pre_vote: self.pre_vote,
            ..raft::Config::default()
        }
    }
}

//! The one error type of the ACP core, with stable codes for the JS boundary.

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, AcpError>;

/// Everything that can go wrong driving a Raft node or persisting its log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcpError {
    /// A configuration value or argument is out of range; `field` names it as the caller spells it.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// The field's name (camelCase, as in the TS config).
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Bytes handed to `step` are not a well-formed Raft message for this node.
    #[error("bad raft message: {0}")]
    BadMessage(String),
    /// A proposal was made on a node that is not the leader. `leader` is 0 when none is known.
    #[error("not the leader (leader is {leader})")]
    NotLeader {
        /// The leader this node knows of, 0 if none.
        leader: u64,
    },
    /// raft-rs refused the proposal (leadership transfer under way, a conf change still pending).
    #[error("proposal dropped: {0}")]
    ProposalDropped(String),
    /// A conf change was rejected by raft-rs (e.g. it would remove the last voter).
    #[error("conf change rejected: {0}")]
    ConfChange(String),
    /// This node has applied its own removal from the configuration and takes no further part.
    #[error("removed from the cluster: {0}")]
    Removed(String),
    /// The caller broke the Ready contract (e.g. `ready()` with a conf change left unapplied).
    #[error("ready contract: {0}")]
    Contract(String),
    /// A message came from, or a call names, a peer that is not in the configuration.
    #[error("unknown peer: {0}")]
    UnknownPeer(String),
    /// The on-disk store failed (I/O, locking, a commit that did not reach disk).
    #[error("raft storage {op}: {reason}")]
    Storage {
        /// The storage operation that failed.
        op: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// The on-disk store holds data that does not decode or contradicts itself.
    #[error("raft storage is corrupt: {0}")]
    Corrupt(String),
    /// An earlier failure (a storage error mid-Ready, or a panic inside raft-rs) left the in-memory
    /// node unusable. The disk holds the last persisted state: reopen from the data directory.
    #[error(
        "raft node is poisoned by an earlier failure ({0}); reopen it from its data directory"
    )]
    Poisoned(String),
}

impl AcpError {
    /// A stable, documented code for each kind, used as the JS error's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            AcpError::InvalidConfig { .. } => "ERR_ACP_INVALID_CONFIG",
            AcpError::BadMessage(_) => "ERR_ACP_BAD_MESSAGE",
            AcpError::NotLeader { .. } => "ERR_ACP_NOT_LEADER",
            AcpError::ProposalDropped(_) => "ERR_ACP_PROPOSAL_DROPPED",
            AcpError::ConfChange(_) => "ERR_ACP_CONF_CHANGE",
            AcpError::Removed(_) => "ERR_ACP_REMOVED",
            AcpError::Contract(_) => "ERR_ACP_CONTRACT",
            AcpError::UnknownPeer(_) => "ERR_ACP_UNKNOWN_PEER",
            AcpError::Storage { .. } => "ERR_ACP_STORAGE",
            AcpError::Corrupt(_) => "ERR_ACP_CORRUPT",
            AcpError::Poisoned(_) => "ERR_ACP_POISONED",
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        AcpError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn storage(op: &'static str, e: impl std::fmt::Display) -> Self {
        AcpError::Storage {
            op,
            reason: e.to_string(),
        }
    }
}

impl From<raft::Error> for AcpError {
    fn from(e: raft::Error) -> Self {
        match e {
            raft::Error::ProposalDropped | raft::Error::RequestSnapshotDropped => {
                AcpError::ProposalDropped(e.to_string())
            }
            raft::Error::StepLocalMsg | raft::Error::CodecError(_) => {
                AcpError::BadMessage(e.to_string())
            }
            raft::Error::StepPeerNotFound => AcpError::UnknownPeer(e.to_string()),
            raft::Error::ConfigInvalid(reason) => AcpError::InvalidConfig {
                field: "config",
                reason,
            },
            raft::Error::Exists { .. }
            | raft::Error::NotExists { .. }
            | raft::Error::ConfChangeError(_) => AcpError::ConfChange(e.to_string()),
            raft::Error::Io(_) | raft::Error::Store(_) => AcpError::storage("raft", e),
        }
    }
}

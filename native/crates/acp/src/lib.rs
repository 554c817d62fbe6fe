//! Adaptive Consensus Protocol (ACP): the Raft engine of DWCP's cluster state.
//!
//! [`RaftDriver`] wraps tikv's raft-rs [`raft::RawNode`] and is sans-IO: no sockets and no clock.
//! Time advances only through [`RaftDriver::tick`]; messages come in through
//! [`RaftDriver::step`] as protobuf bytes and go out of [`RaftDriver::ready`], which also persists
//! everything raft-rs asks for (fsync'd, in [`DiskStorage`]) before it returns. The replicated
//! state machine lives with the caller (TypeScript).

mod config;
mod driver;
mod error;
mod membership;
mod ready;
mod storage;

pub use config::{NodeConfig, BOOTSTRAP_INDEX, BOOTSTRAP_TERM};
pub use driver::RaftDriver;
pub use error::{AcpError, Result};
pub use raft;
pub use ready::{
    AppliedConfChange, CommittedEntry, ConfChangeKind, EntryKind, Membership, NodeStatus,
    OutgoingMessage, ReadState, ReadyOutput, RestoredSnapshot, Role, SoftStateChange,
};
pub use storage::{DiskStorage, DB_FILE};

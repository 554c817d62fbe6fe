//! AMST, the Adaptive Multi-Stream Transport: one ordered byte stream over N parallel connections.
//!
//! This crate is the sans-IO core: no sockets and no clock. Time is an argument
//! (`handle_*(.., now)`), and outputs are pulled (`poll_transmit`, `poll_timeout`, `poll_ack`).
//! The tokio runtime around it (TCP+TLS and QUIC) lives in `dwcp-transport`; the tests here drive
//! a sender and a receiver over a simulated network on a virtual clock.
//!
//! - [`Sender`] cuts the stream into frames, each with a CRC, puts each on the connection
//!   expected to deliver it first, keeps it until acknowledged, sends again what the receiver
//!   NACKed, and moves a dead connection's frames to the others.
//! - [`Receiver`] verifies frames and their CRC, NACKs damaged ones, drops duplicates, reorders
//!   within a bounded window and acks.
//! - [`StreamCountController`] adds connections while aggregate goodput grows and drops them
//!   when it does not.
//! - [`Pacer`] holds the sender to an optional rate cap.
//! - [`Probe`] measures the path with PROBE frames before the stream starts, and decides when
//!   to stop (BBR's startup exit).
//! - [`ConnectionPool`] is the sender's connection policy: what to dial, drain and close, what a
//!   lost connection costs, and when the transfer is lost for want of one.

mod adapt;
mod conn;
mod error;
pub mod frame;
mod pacer;
mod pool;
mod probe;
mod receiver;
mod sender;

pub use adapt::{AdaptConfig, StreamCountController};
pub use conn::{ConnId, ConnStats};
pub use error::{AmstError, Result};
pub use pacer::Pacer;
pub use pool::{ConnectionPool, Failure, Loss, PoolAction, PoolConfig, PoolFailure, StreamCount};
pub use probe::{
    Probe, ProbeConfig, ProbeConnResult, ProbeEnd, ProbeError, ProbeResult, ProbeTransmit,
};
pub use receiver::{Receiver, ReceiverConfig};
pub use receiver::{ReceiverStats, WINDOW_UPDATE_SEQ};
pub use sender::{Sender, SenderConfig, SenderEvent, SenderStats, Transmit, FIN_SEQ};

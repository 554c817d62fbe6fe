//! The AMST runtime: real connections around the sans-IO core of `dwcp-amst`.
//!
//! A transfer moves one ordered byte stream from a sender to a receiver over N connections,
//! each either TCP + TLS 1.3 (rustls, kernel congestion control selectable) or QUIC (quinn,
//! congestion controller selectable). Both ends always authenticate with certificates from the
//! cluster CA ([`pki`]); a peer whose certificate does not chain to it, or whose name is wrong,
//! is refused during the handshake.
//!
//! Every connection of a transfer starts with a [`hello`] naming the session, so the listener
//! can group connections that arrive in any order, and reconnections.

mod error;
mod fault;
mod gauge;
pub mod hello;
mod link;
pub mod pki;
mod probing;
mod quic;
mod receive;
mod recycle;
mod send;
mod tcp;
pub mod tls;

pub use error::{Result, TransportError};
#[cfg(feature = "fault-injection")]
pub use fault::FrameFault;
pub use gauge::{LinkGauge, LinkSample};
pub use link::{Congestion, Dialer, Link, LinkKind, Listener, ListenerConfig};
pub use probing::{ProbeInbox, ProbeReport, ProbeRequest};
pub use receive::{IncomingStream, ReceiveOptions, ReceiveStats};
pub use send::{send_stream, ConnectionStats, SendOptions, SendReport, StreamCount, TransferStats};
pub use tls::NodeIdentity;

//! Errors of the transport runtime, each with a stable code.

use dwcp_amst::AmstError;

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TransportError>;

/// What can go wrong while moving a stream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer broke the AMST protocol (bad frame, beyond window...).
    #[error(transparent)]
    Protocol(#[from] AmstError),
    /// The TLS handshake failed: unknown CA, wrong name, expired, or not TLS at all.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Tls {
        /// The address or name of the peer.
        peer: String,
        /// rustls' explanation.
        reason: String,
    },
    /// A certificate or key could not be made or read.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A socket operation failed.
    #[error("{context}: {reason}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        reason: String,
    },
    /// A connection's first bytes were not a valid hello.
    #[error("bad hello: {0}")]
    BadHello(String),
    /// The transfer was cancelled.
    #[error("transfer cancelled")]
    Cancelled,
    /// The path probe before the stream could not measure the path: a connection lost, no
    /// answer, an older receiver, or the transfer ended. The transfer itself goes on.
    #[error("probe failed: {0}")]
    Probe(String),
    /// Every connection failed and none could be made again in time.
    #[error("no connection left: {0}")]
    NoConnection(String),
    /// A setting is out of range.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParam {
        /// Its name as JS spells it.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl TransportError {
    /// A stable code per kind; protocol errors keep the core's code.
    pub fn code(&self) -> &'static str {
        match self {
            TransportError::Protocol(e) => e.code(),
            TransportError::Tls { .. } => "ERR_AMST_TLS",
            TransportError::Certificate(_) => "ERR_AMST_CERTIFICATE",
            TransportError::Io { .. } => "ERR_AMST_IO",
            TransportError::BadHello(_) => "ERR_AMST_BAD_HELLO",
            TransportError::Cancelled => "ERR_AMST_CANCELLED",
            TransportError::NoConnection(_) => "ERR_AMST_NO_CONNECTION",
            TransportError::Probe(_) => "ERR_AMST_PROBE_FAILED",
            TransportError::InvalidParam { .. } => "ERR_AMST_INVALID_PARAM",
        }
    }

    /// A failed read: a TLS alert from the peer (e.g. it refused our certificate) or a record
    /// that failed to decrypt is a TLS error, anything else is I/O.
    pub(crate) fn from_read(peer: &str, e: &std::io::Error) -> Self {
        match tls_error(e) {
            Some(tls) => TransportError::Tls {
                peer: peer.to_string(),
                reason: tls.to_string(),
            },
            None => TransportError::io(format!("read from {peer}"), e),
        }
    }

    pub(crate) fn io(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        TransportError::Io {
            context: context.into(),
            reason: e.to_string(),
        }
    }
}

/// The rustls error behind a failed read, if any.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Whether a failed read means a TLS record arrived damaged: it failed to decrypt (its
/// authentication tag did not match) or its header made no sense. That is corruption on the
/// wire below AMST, not a misbehaving peer.
pub(crate) fn damaged_record(e: &std::io::Error) -> bool {
    matches!(
        tls_error(e),
        Some(rustls::Error::DecryptError | rustls::Error::InvalidMessage(_))
    )
}

//! The pipeline's error type: the cores' errors keep their codes, the pipeline adds its own.

use dwcp_hde::HdeError;
use dwcp_transport::TransportError;

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, PipelineError>;

/// Everything that can stop a migration's data path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Encoding, decoding, verification or the chunk store failed (a corrupt chunk among them).
    #[error(transparent)]
    Hde(#[from] HdeError),
    /// AMST failed: TLS refused, every connection lost, the peer broke the protocol.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A unix socket operation with QEMU failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the socket's path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The destination QEMU's socket did not accept a connection in time.
    #[error("QEMU's socket {path} did not accept a connection within {waited_ms} ms: {reason}")]
    QemuUnreachable {
        /// The socket path.
        path: String,
        /// How long the sink kept trying.
        waited_ms: u64,
        /// The last error.
        reason: String,
    },
    /// The migration was cancelled.
    #[error("migration cancelled")]
    Cancelled,
    /// An option is out of range; `field` names it.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParam {
        /// The option's name as JS spells it.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// `finished` was awaited a second time.
    #[error("finished() was already awaited")]
    Ended,
    /// A pipeline stage panicked: a bug.
    #[error("a pipeline stage panicked: {0}")]
    Panic(String),
}

impl PipelineError {
    /// A stable code per kind; HDE and AMST errors keep their own.
    pub fn code(&self) -> &'static str {
        match self {
            PipelineError::Hde(e) => e.code(),
            PipelineError::Transport(e) => e.code(),
            PipelineError::Io { .. } => "ERR_MIGRATION_IO",
            PipelineError::QemuUnreachable { .. } => "ERR_MIGRATION_QEMU_UNREACHABLE",
            PipelineError::Cancelled => "ERR_MIGRATION_CANCELLED",
            PipelineError::InvalidParam { .. } => "ERR_MIGRATION_INVALID_PARAM",
            PipelineError::Ended => "ERR_MIGRATION_ENDED",
            PipelineError::Panic(_) => "ERR_NATIVE_PANIC",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        PipelineError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn joined(e: tokio::task::JoinError) -> Self {
        PipelineError::Panic(e.to_string())
    }
}

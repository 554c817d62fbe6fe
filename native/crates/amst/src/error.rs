//! Errors of the AMST core, with stable codes for the JS boundary.

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, AmstError>;

/// What can go wrong in the protocol core. A peer that causes one is closed; the process is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmstError {
    /// A frame header is not well formed.
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    /// A frame declares more payload than the limit.
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Declared payload length.
        len: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The peer sent data beyond the window the receiver advertised.
    #[error(
        "frame {seq} is beyond the receive window (next expected {next}, window {window} frames)"
    )]
    BeyondWindow {
        /// The frame's sequence number.
        seq: u64,
        /// The next in-order sequence number.
        next: u64,
        /// The window in frames.
        window: u64,
    },
    /// The peer contradicted itself (e.g. data after FIN, an ack for a frame never sent).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// One frame arrived with a wrong CRC more than [`CORRUPT_LIMIT`](crate::frame::CORRUPT_LIMIT)
    /// times: the sender's own copy is damaged, and sending it again cannot help.
    #[error("frame {seq} arrived corrupt {copies} times; the sender's copy is likely damaged")]
    FrameCorrupt {
        /// The frame's sequence number.
        seq: u64,
        /// Corrupt copies seen.
        copies: u32,
    },
    /// A parameter is out of range; `field` names it.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParam {
        /// The parameter's name as JS spells it.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// No connection is left to carry the stream.
    #[error("no connection left: {0}")]
    NoConnection(String),
}

impl AmstError {
    /// A stable code per kind.
    pub fn code(&self) -> &'static str {
        match self {
            AmstError::MalformedFrame(_) => "ERR_AMST_MALFORMED_FRAME",
            AmstError::FrameTooLarge { .. } => "ERR_AMST_FRAME_TOO_LARGE",
            AmstError::BeyondWindow { .. } => "ERR_AMST_BEYOND_WINDOW",
            AmstError::Protocol(_) => "ERR_AMST_PROTOCOL",
            AmstError::FrameCorrupt { .. } => "ERR_AMST_FRAME_CORRUPT",
            AmstError::InvalidParam { .. } => "ERR_AMST_INVALID_PARAM",
            AmstError::NoConnection(_) => "ERR_AMST_NO_CONNECTION",
        }
    }
}

//! The one error type of the HDE core, with stable codes for the JS boundary.

use crate::ChunkId;

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, HdeError>;

/// Everything that can go wrong in chunking, coding, the store or the stream format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HdeError {
    /// A caller-supplied parameter is out of range; `field` names it.
    #[error("invalid parameter `{field}`: {reason}")]
    InvalidParam {
        /// The parameter's name as the caller spells it.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A frame or record names a codec this build does not know.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// A frame or record ended before its declared length.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
        /// Bytes the header promised.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// A frame or record is not well formed (bad magic, bad tag, lengths that disagree).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A chunk's content does not hash to its id: it was corrupted on disk or on the wire.
    #[error("chunk {id} is corrupt: content hashes to {actual}")]
    ChunkCorrupt {
        /// The id the chunk claims.
        id: ChunkId,
        /// What its content actually hashes to.
        actual: ChunkId,
    },
    /// A reference names a chunk the receiver does not hold.
    #[error("chunk {0} is referenced but not present")]
    MissingChunk(ChunkId),
    /// The rebuilt stream's length or hash differs from what the sender declared.
    #[error("stream mismatch: {0}")]
    StreamMismatch(String),
    /// The encoder or decoder was used after `finish`.
    #[error("{0} already finished")]
    Finished(&'static str),
    /// A compressor or decompressor failed on its input.
    #[error("{codec} failed: {reason}")]
    Codec {
        /// The codec's name.
        codec: &'static str,
        /// The library's message.
        reason: String,
    },
    /// A filesystem operation of the chunk store failed.
    #[error("chunk store i/o at {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl HdeError {
    /// A stable, documented code for each kind, used as the JS error's `code`.
    pub fn code(&self) -> &'static str {
        match self {
            HdeError::InvalidParam { .. } => "ERR_HDE_INVALID_PARAM",
            HdeError::UnknownCodec(_) => "ERR_HDE_UNKNOWN_CODEC",
            HdeError::Truncated { .. } => "ERR_HDE_TRUNCATED",
            HdeError::Malformed { .. } => "ERR_HDE_MALFORMED",
            HdeError::ChunkCorrupt { .. } => "ERR_HDE_CHUNK_CORRUPT",
            HdeError::MissingChunk(_) => "ERR_HDE_MISSING_CHUNK",
            HdeError::StreamMismatch(_) => "ERR_HDE_STREAM_MISMATCH",
            HdeError::Finished(_) => "ERR_HDE_FINISHED",
            HdeError::Codec { .. } => "ERR_HDE_CODEC",
            HdeError::Io { .. } => "ERR_HDE_IO",
        }
    }

    pub(crate) fn param(field: &'static str, reason: impl Into<String>) -> Self {
        HdeError::InvalidParam {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        HdeError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

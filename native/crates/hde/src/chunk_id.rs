//! Chunk identity: the BLAKE3 hash of a chunk's raw content.

use std::fmt;

use crate::{HdeError, Result};

/// The BLAKE3-256 hash of a chunk's raw bytes. Equal ids mean equal content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `data` into its id.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(*blake3::hash(data).as_bytes())
    }

    /// Parses the 64-character lowercase hex form.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| HdeError::param("id", format!("not a 64-digit hex BLAKE3 id: {e}")))?;
        Ok(ChunkId(out))
    }

    /// The lowercase hex form, as used in file names and logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks that `data` hashes to this id.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        let actual = ChunkId::of(data);
        if actual == *self {
            Ok(())
        } else {
            Err(HdeError::ChunkCorrupt { id: *self, actual })
        }
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

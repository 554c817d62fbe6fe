//! The destination's inventory: which chunks its store holds, in the compact form that travels to
//! the source (over the control plane) before a migration starts.
//!
//! Format: the 32-byte BLAKE3 ids, sorted and concatenated, nothing else. Sorted so that two
//! inventories of the same store are byte-equal and can later be diffed or merged in one pass.
//! This is a one-shot have-list, not the pipelined per-chunk have/want of the design: chunks that
//! arrive at the destination after the list was taken are not known to the source.

use dwcp_hde::{ChunkId, HdeError};

use crate::Result;

/// Bytes per id in an inventory.
pub const ID_LEN: usize = 32;

/// Encodes ids as an inventory.
pub fn encode<'a>(ids: impl IntoIterator<Item = &'a ChunkId>) -> Vec<u8> {
    let mut sorted: Vec<&ChunkId> = ids.into_iter().collect();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(sorted.len() * ID_LEN);
    for id in sorted {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes an inventory; its length must be a whole number of ids.
pub fn decode(bytes: &[u8]) -> Result<Vec<ChunkId>> {
    if !bytes.len().is_multiple_of(ID_LEN) {
        return Err(HdeError::Malformed {
            what: "inventory",
            reason: format!("{} bytes is not a whole number of 32-byte ids", bytes.len()),
        }
        .into());
    }
    Ok(bytes
        .chunks_exact(ID_LEN)
        .map(|id| {
            let mut raw = [0u8; ID_LEN];
            raw.copy_from_slice(id);
            ChunkId(raw)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted_and_refuses_partial_ids() {
        let ids = [ChunkId::of(b"b"), ChunkId::of(b"a"), ChunkId::of(b"c")];
        let bytes = encode(&ids);
        assert_eq!(bytes.len(), 3 * ID_LEN);
        let mut expected = ids.to_vec();
        expected.sort();
        assert_eq!(decode(&bytes).expect("decode"), expected);
        assert_eq!(
            encode(ids.iter().rev()),
            bytes,
            "order of the store does not matter"
        );
        let err = decode(&bytes[..40]).expect_err("partial id");
        assert_eq!(err.code(), "ERR_HDE_MALFORMED");
        assert!(decode(&[]).expect("empty").is_empty());
    }
}

//! The HDE stream format: a header, then one record per chunk, then an end record.
//!
//! ```text
//! header  "HDE" 0x01
//! CHUNK   0x01 | id [32] | frame            (content the receiver lacks)
//! REF     0x02 | id [32] | raw_len u32 LE   (content the receiver already holds)
//! END     0x03 | total_len u64 LE | stream BLAKE3 [32]
//! ```
//! Format 2 (`"HDE" 0x02`, the page-aware encoder) replaces CHUNK and REF with
//! [`BATCH`](crate::batch) records; its END digest is BLAKE3 over each batch's ops followed by
//! its payload hash. A format 2 stream may start with `HELD 0x05 | count u32 LE | BLAKE3 [32]`:
//! the count and digest of the ordered list of chunks the encoder was told the receiver holds,
//! which the batches' index runs refer to.
//! Parsing is incremental: [`parse_record`] returns `None` until a whole record is buffered.

use crate::frame::{self, FrameHeader, MAX_RAW_LEN};
use crate::{ChunkId, HdeError, Result};

/// The four bytes every stream starts with (format version 1).
pub const STREAM_HEADER: [u8; 4] = *b"HDE\x01";
/// The header of a format 2 stream (BATCH records).
pub const STREAM_HEADER_V2: [u8; 4] = *b"HDE\x02";
const TAG_CHUNK: u8 = 1;
const TAG_REF: u8 = 2;
const TAG_END: u8 = 3;
const TAG_BATCH: u8 = 4;
const TAG_HELD: u8 = 5;
const HELD_LEN: usize = 1 + 4 + ID_LEN;
const BATCH_FIXED: usize = 1 + ID_LEN + 4;
const ID_LEN: usize = 32;
/// Length of a REF record.
pub const REF_LEN: usize = 1 + ID_LEN + 4;
const END_LEN: usize = 1 + 8 + ID_LEN;

/// One parsed record, borrowing its frame from the input buffer.
#[derive(Debug)]
pub enum Record<'a> {
    /// A chunk sent in full.
    Chunk {
        /// Its claimed id; the decoder verifies it.
        id: ChunkId,
        /// The frame's header.
        header: FrameHeader,
        /// The whole frame, header included.
        frame: &'a [u8],
    },
    /// A chunk the receiver must already hold.
    Ref {
        /// Its id.
        id: ChunkId,
        /// Its raw length, so the receiver can account for it before looking it up.
        raw_len: usize,
    },
    /// A batch of literals and units (format 2).
    Batch {
        /// BLAKE3 of the batch's decompressed payload.
        payload_hash: ChunkId,
        /// The ops section.
        ops: &'a [u8],
        /// The whole frame, header included.
        frame: &'a [u8],
    },
    /// The held list the index runs refer to (format 2).
    Held {
        /// Its length.
        count: u32,
        /// BLAKE3 over its ids in order.
        digest: ChunkId,
    },
    /// The end of the stream.
    End {
        /// Bytes in the original stream.
        total_len: u64,
        /// BLAKE3 of the whole original stream.
        stream_hash: ChunkId,
    },
}

/// Appends a CHUNK record around a frame already made with [`frame::encode_into`]. Returns
/// the bytes written.
pub fn write_chunk_frame(out: &mut Vec<u8>, id: &ChunkId, frame: &[u8]) -> usize {
    out.push(TAG_CHUNK);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(frame);
    1 + ID_LEN + frame.len()
}

/// Appends a REF record.
pub fn write_ref(out: &mut Vec<u8>, id: &ChunkId, raw_len: usize) -> Result<usize> {
    let len = u32::try_from(raw_len).map_err(|_| HdeError::param("raw_len", "over 4 GiB"))?;
    out.push(TAG_REF);
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&len.to_le_bytes());
    Ok(REF_LEN)
}

/// Appends a BATCH record; `frame` is a whole frame over the batch's payload.
pub fn write_batch(
    out: &mut Vec<u8>,
    payload_hash: &ChunkId,
    ops: &[u8],
    frame: &[u8],
) -> Result<usize> {
    let ops_len = u32::try_from(ops.len()).map_err(|_| HdeError::param("ops", "over 4 GiB"))?;
    out.push(TAG_BATCH);
    out.extend_from_slice(&payload_hash.0);
    out.extend_from_slice(&ops_len.to_le_bytes());
    out.extend_from_slice(ops);
    out.extend_from_slice(frame);
    Ok(BATCH_FIXED + ops.len() + frame.len())
}

/// Appends a HELD record.
pub fn write_held(out: &mut Vec<u8>, count: u32, digest: &ChunkId) -> usize {
    out.push(TAG_HELD);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&digest.0);
    HELD_LEN
}

/// BLAKE3 over ids in order: what a HELD record names.
pub fn held_digest<'a>(ids: impl IntoIterator<Item = &'a ChunkId>) -> ChunkId {
    let mut h = blake3::Hasher::new();
    for id in ids {
        h.update(&id.0);
    }
    ChunkId(*h.finalize().as_bytes())
}

/// Appends the END record.
pub fn write_end(out: &mut Vec<u8>, total_len: u64, stream_hash: &ChunkId) -> usize {
    out.push(TAG_END);
    out.extend_from_slice(&total_len.to_le_bytes());
    out.extend_from_slice(&stream_hash.0);
    END_LEN
}

/// Checks the stream header at the start of `buf`; `None` if fewer than 4 bytes are buffered.
pub fn parse_stream_header(buf: &[u8]) -> Result<Option<usize>> {
    Ok(parse_stream_version(buf)?.map(|_| STREAM_HEADER.len()))
}

/// Checks the stream header at the start of `buf` and returns the format version (1 or 2);
/// `None` if fewer than 4 bytes are buffered.
pub fn parse_stream_version(buf: &[u8]) -> Result<Option<u8>> {
    if buf.len() < STREAM_HEADER.len() {
        return Ok(None);
    }
    if buf[..STREAM_HEADER_V2.len()] == STREAM_HEADER_V2 {
        return Ok(Some(2));
    }
    if buf[..STREAM_HEADER.len()] != STREAM_HEADER {
        return Err(HdeError::Malformed {
            what: "stream header",
            reason: format!("expected {:02x?}, got {:02x?}", STREAM_HEADER, &buf[..4]),
        });
    }
    Ok(Some(1))
}

/// The frame at the start of `rest` with its header, once all of it is there (`None`: more
/// bytes needed).
fn whole_frame(rest: Option<&[u8]>) -> Result<Option<(frame::FrameHeader, &[u8])>> {
    let Some(rest) = rest else {
        return Ok(None);
    };
    if rest.len() < frame::HEADER_LEN {
        return Ok(None);
    }
    let header = frame::parse_header(rest)?;
    Ok(rest.get(..header.frame_len()).map(|f| (header, f)))
}

/// Parses one record from the start of `buf`. `Ok(None)` means "incomplete, buffer more".
pub fn parse_record(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    match tag {
        TAG_CHUNK => {
            let Some((header, frame)) = whole_frame(buf.get(1 + ID_LEN..))? else {
                return Ok(None);
            };
            let record = Record::Chunk {
                id: id_at(buf, 1),
                header,
                frame,
            };
            Ok(Some((record, 1 + ID_LEN + header.frame_len())))
        }
        TAG_REF => {
            if buf.len() < REF_LEN {
                return Ok(None);
            }
            let raw_len = frame::u32_at(buf, 1 + ID_LEN) as usize;
            if raw_len == 0 || raw_len > MAX_RAW_LEN {
                return Err(HdeError::Malformed {
                    what: "ref record",
                    reason: format!("raw length {raw_len} is outside 1..={MAX_RAW_LEN}"),
                });
            }
            Ok(Some((
                Record::Ref {
                    id: id_at(buf, 1),
                    raw_len,
                },
                REF_LEN,
            )))
        }
        TAG_BATCH => {
            if buf.len() < BATCH_FIXED {
                return Ok(None);
            }
            let ops_len = frame::u32_at(buf, 1 + ID_LEN) as usize;
            if ops_len == 0 || ops_len > crate::batch::MAX_OPS_LEN {
                return Err(HdeError::Malformed {
                    what: "batch record",
                    reason: format!(
                        "ops length {ops_len} is outside 1..={}",
                        crate::batch::MAX_OPS_LEN
                    ),
                });
            }
            let Some((header, frame)) = whole_frame(buf.get(BATCH_FIXED + ops_len..))? else {
                return Ok(None);
            };
            let record = Record::Batch {
                payload_hash: id_at(buf, 1),
                ops: &buf[BATCH_FIXED..BATCH_FIXED + ops_len],
                frame,
            };
            Ok(Some((record, BATCH_FIXED + ops_len + header.frame_len())))
        }
        TAG_HELD => {
            if buf.len() < HELD_LEN {
                return Ok(None);
            }
            let record = Record::Held {
                count: frame::u32_at(buf, 1),
                digest: id_at(buf, 5),
            };
            Ok(Some((record, HELD_LEN)))
        }
        TAG_END => {
            if buf.len() < END_LEN {
                return Ok(None);
            }
            let mut total = [0u8; 8];
            total.copy_from_slice(&buf[1..9]);
            let record = Record::End {
                total_len: u64::from_le_bytes(total),
                stream_hash: id_at(buf, 9),
            };
            Ok(Some((record, END_LEN)))
        }
        other => Err(HdeError::Malformed {
            what: "record",
            reason: format!("unknown tag 0x{other:02x}"),
        }),
    }
}

fn id_at(buf: &[u8], at: usize) -> ChunkId {
    let mut id = [0u8; ID_LEN];
    id.copy_from_slice(&buf[at..at + ID_LEN]);
    ChunkId(id)
}

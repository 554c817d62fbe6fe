//! The sending side of HDE: chunk, name, skip what the receiver holds, compress the rest.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::wire;
use crate::{ChunkId, Chunker, ChunkerParams, CodecLevel, HdeError, Result};

/// Counters for one encoded stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderStats {
    /// Raw bytes pushed in.
    pub bytes_in: u64,
    /// Stream bytes written out (records and frames).
    pub bytes_out: u64,
    /// Chunks cut.
    pub chunks: u64,
    /// Chunks sent as REF because the receiver holds them or they were sent earlier.
    pub dedup_chunks: u64,
    /// Raw bytes those REFs stand for.
    pub dedup_bytes: u64,
    /// Of `dedup_chunks`, those the receiver announced with `mark_present` (the rest repeat a
    /// chunk sent earlier in this stream).
    pub known_chunks: u64,
    /// Raw bytes of `known_chunks`.
    pub known_bytes: u64,
    /// Raw bytes of the chunks sent in full.
    pub sent_raw_bytes: u64,
    /// Frame bytes of the chunks sent in full.
    pub sent_frame_bytes: u64,
}

/// Turns a byte stream into the HDE wire format (see [`wire`]).
///
/// Feed it with [`push`](Self::push) and end with [`finish`](Self::finish); both append to
/// a caller-owned buffer, so one call can cover many chunks with no per-chunk allocation.
#[derive(Debug)]
pub struct Encoder {
    chunker: Chunker,
    records: Records,
    started: bool,
    finished: bool,
}

/// Everything that turns one cut chunk into a record; separate from the chunker so that the
/// chunker's callback can borrow it while the chunker is borrowed too.
#[derive(Debug)]
struct Records {
    level: CodecLevel,
    /// Chunks the receiver has, and how it got them.
    present: HashMap<ChunkId, Origin>,
    /// BLAKE3 over the ordered chunk ids: since every chunk is verified against its id,
    /// this pins the exact stream at a fraction of the cost of rehashing the content.
    stream_digest: blake3::Hasher,
    stats: EncoderStats,
}

/// Why the receiver holds a chunk, so that stats can tell the two kinds of dedup apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Announced,
    Sent,
}

impl Encoder {
    /// An encoder with validated chunking parameters and codec level.
    pub fn new(params: ChunkerParams, level: CodecLevel) -> Result<Self> {
        Ok(Encoder {
            chunker: Chunker::new(params)?,
            records: Records {
                level,
                present: HashMap::new(),
                stream_digest: blake3::Hasher::new(),
                stats: EncoderStats::default(),
            },
            started: false,
            finished: false,
        })
    }

    /// Records that the receiver already holds these chunks, so they go out as REFs.
    pub fn mark_present(&mut self, ids: impl IntoIterator<Item = ChunkId>) {
        for id in ids {
            self.records.present.entry(id).or_insert(Origin::Announced);
        }
    }

    /// Changes the codec level from the next chunk on, e.g. when the predicted bandwidth moves.
    pub fn set_level(&mut self, level: CodecLevel) {
        self.records.level = level;
    }

    /// The counters so far.
    pub fn stats(&self) -> EncoderStats {
        self.records.stats
    }

    /// Encodes `data`, appending whole records to `out`. A partial chunk is held back.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.start(out)?;
        let records = &mut self.records;
        records.stats.bytes_in += data.len() as u64;
        self.chunker.push(data, |chunk| records.emit(chunk, out))
    }

    /// Flushes the held-back chunk and writes the END record.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.start(out)?;
        let records = &mut self.records;
        self.chunker.finish(|chunk| records.emit(chunk, out))?;
        let digest = ChunkId(*records.stream_digest.finalize().as_bytes());
        records.stats.bytes_out += wire::write_end(out, records.stats.bytes_in, &digest) as u64;
        self.finished = true;
        Ok(())
    }

    fn start(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.finished {
            return Err(HdeError::Finished("encoder"));
        }
        if !self.started {
            out.extend_from_slice(&wire::STREAM_HEADER);
            self.records.stats.bytes_out += wire::STREAM_HEADER.len() as u64;
            self.started = true;
        }
        Ok(())
    }
}

impl Records {
    fn emit(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let id = ChunkId::of(chunk);
        self.stream_digest.update(&id.0);
        let stats = &mut self.stats;
        stats.chunks += 1;
        match self.present.entry(id) {
            Entry::Vacant(slot) => {
                slot.insert(Origin::Sent);
                let written = wire::write_chunk(out, &id, chunk, self.level)?;
                stats.sent_raw_bytes += chunk.len() as u64;
                stats.sent_frame_bytes += (written - 33) as u64;
                stats.bytes_out += written as u64;
            }
            Entry::Occupied(held) => {
                stats.dedup_chunks += 1;
                stats.dedup_bytes += chunk.len() as u64;
                if *held.get() == Origin::Announced {
                    stats.known_chunks += 1;
                    stats.known_bytes += chunk.len() as u64;
                }
                stats.bytes_out += wire::write_ref(out, &id, chunk.len())? as u64;
            }
        }
        Ok(())
    }
}

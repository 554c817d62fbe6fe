//! The receiving side of HDE: verify every chunk, resolve references, rebuild the exact stream.

use std::collections::HashMap;

use crate::frame;
use crate::wire::{self, Record};
use crate::{ChunkId, ChunkStore, HdeError, Result};

/// Where a decoder keeps chunks so that later references can be resolved.
pub trait ChunkCache: Send {
    /// Copies chunk `id`'s raw content into `out`; `false` if it is not held.
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> Result<bool>;
    /// Keeps a verified chunk; `frame` is its compressed form, for caches that store frames.
    fn keep(&mut self, id: &ChunkId, raw: &[u8], frame: &[u8]) -> Result<()>;
    /// Makes what `keep` wrote durable, for caches that defer it. Nothing to do by default.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Chunks of one stream held in memory, for a decoder with no store.
#[derive(Debug, Default)]
pub struct MemoryChunks(HashMap<ChunkId, Vec<u8>>);

impl ChunkCache for MemoryChunks {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> Result<bool> {
        match self.0.get(id) {
            Some(raw) => {
                out.clear();
                out.extend_from_slice(raw);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn keep(&mut self, id: &ChunkId, raw: &[u8], _frame: &[u8]) -> Result<()> {
        self.0.entry(*id).or_insert_with(|| raw.to_vec());
        Ok(())
    }
}

impl ChunkCache for ChunkStore {
    fn fetch(&mut self, id: &ChunkId, out: &mut Vec<u8>) -> Result<bool> {
        self.get_into(id, out)
    }

    fn keep(&mut self, id: &ChunkId, _raw: &[u8], frame: &[u8]) -> Result<()> {
        self.put_frame(id, frame).map(|_| ())
    }
}

/// Counters for one decoded stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Stream bytes consumed.
    pub bytes_in: u64,
    /// Raw bytes rebuilt.
    pub bytes_out: u64,
    /// Chunks received in full and verified.
    pub chunks_received: u64,
    /// Chunks resolved from the cache.
    pub chunks_reused: u64,
}

/// Rebuilds a stream from the HDE wire format, in pieces of any size.
pub struct Decoder {
    cache: Box<dyn ChunkCache>,
    /// Stream bytes not yet forming a whole record; `consumed` of them are already parsed.
    pending: Vec<u8>,
    consumed: usize,
    header_seen: bool,
    end_seen: bool,
    stream_digest: blake3::Hasher,
    scratch: Vec<u8>,
    stats: DecoderStats,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder that keeps chunks in `cache` (a [`ChunkStore`] or [`MemoryChunks`]).
    pub fn new(cache: Box<dyn ChunkCache>) -> Self {
        Decoder {
            cache,
            pending: Vec::new(),
            consumed: 0,
            header_seen: false,
            end_seen: false,
            stream_digest: blake3::Hasher::new(),
            scratch: Vec::new(),
            stats: DecoderStats::default(),
        }
    }

    /// Makes the chunks kept so far durable (see [`ChunkCache::flush`]).
    pub fn flush_cache(&mut self) -> Result<()> {
        self.cache.flush()
    }

    /// A decoder that keeps this stream's chunks in memory.
    pub fn in_memory() -> Self {
        Decoder::new(Box::new(MemoryChunks::default()))
    }

    /// The counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Whether the END record has been seen and checked.
    pub fn is_complete(&self) -> bool {
        self.end_seen
    }

    /// Consumes stream bytes, appending rebuilt raw bytes to `out`. A chunk that fails
    /// verification is an error and nothing of it reaches `out`.
    pub fn push(&mut self, wire_bytes: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.stats.bytes_in += wire_bytes.len() as u64;
        self.pending.extend_from_slice(wire_bytes);
        let result = self.drain(out);
        // Compact once per push, not per record.
        self.pending.drain(..self.consumed);
        self.consumed = 0;
        result
    }

    /// Checks that the stream ended cleanly: END seen, nothing left over.
    pub fn finish(&mut self) -> Result<()> {
        if !self.end_seen {
            return Err(HdeError::Truncated {
                what: "stream",
                needed: self.pending.len() + 1,
                available: self.pending.len(),
            });
        }
        Ok(())
    }

    fn drain(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if !self.header_seen {
            match wire::parse_stream_header(&self.pending)? {
                Some(n) => {
                    self.consumed = n;
                    self.header_seen = true;
                }
                None => return Ok(()),
            }
        }
        loop {
            let rest = &self.pending[self.consumed..];
            if self.end_seen {
                if rest.is_empty() {
                    return Ok(());
                }
                return Err(HdeError::Malformed {
                    what: "stream",
                    reason: format!("{} bytes after the END record", rest.len()),
                });
            }
            let Some((record, len)) = wire::parse_record(rest)? else {
                return Ok(());
            };
            match record {
                Record::Chunk { id, frame, .. } => {
                    frame::decode_into(frame, &mut self.scratch)?;
                    id.verify(&self.scratch)?;
                    self.cache.keep(&id, &self.scratch, frame)?;
                    self.stats.chunks_received += 1;
                    self.accept(&id, out);
                }
                Record::Ref { id, raw_len } => {
                    if !self.cache.fetch(&id, &mut self.scratch)? {
                        return Err(HdeError::MissingChunk(id));
                    }
                    if self.scratch.len() != raw_len {
                        return Err(HdeError::Malformed {
                            what: "ref record",
                            reason: format!(
                                "chunk {id} is {} bytes, ref says {raw_len}",
                                self.scratch.len()
                            ),
                        });
                    }
                    self.stats.chunks_reused += 1;
                    self.accept(&id, out);
                }
                Record::End {
                    total_len,
                    stream_hash,
                } => {
                    let digest = ChunkId(*self.stream_digest.finalize().as_bytes());
                    if total_len != self.stats.bytes_out {
                        return Err(HdeError::StreamMismatch(format!(
                            "sender declared {total_len} bytes, rebuilt {}",
                            self.stats.bytes_out
                        )));
                    }
                    if digest != stream_hash {
                        return Err(HdeError::StreamMismatch(format!(
                            "stream digest {digest} differs from the declared {stream_hash}"
                        )));
                    }
                    self.end_seen = true;
                }
            }
            self.consumed += len;
        }
    }

    fn accept(&mut self, id: &ChunkId, out: &mut Vec<u8>) {
        self.stream_digest.update(&id.0);
        self.stats.bytes_out += self.scratch.len() as u64;
        out.extend_from_slice(&self.scratch);
    }
}

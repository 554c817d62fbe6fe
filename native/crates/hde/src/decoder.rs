//! The receiving side of HDE: verify every chunk, resolve references, rebuild the exact stream.

use std::collections::HashMap;

use crate::batch::{Op, OpReader};
use crate::frame;
use crate::wire::{self, Record};
use crate::{ChunkId, ChunkStore, Codec, CodecLevel, HdeError, Result, Workers};

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
    workers: Workers,
    /// Stream bytes not yet forming a whole record; `consumed` of them are already parsed.
    pending: Vec<u8>,
    consumed: usize,
    /// The stream's format version, once its header is seen.
    version: Option<u8>,
    end_seen: bool,
    stream_digest: blake3::Hasher,
    scratch: Vec<u8>,
    /// Format 2: a batch's payload, its rebuilt bytes, and a unit's frame for the cache.
    payload: Vec<u8>,
    staged: Vec<u8>,
    unit_frame: Vec<u8>,
    undelta: Vec<u8>,
    /// Format 2: the HELD list this decoder was given, and the index the stream's runs use
    /// (the HELD list if the stream names it, then each new unit in order).
    held: Vec<ChunkId>,
    index: Vec<ChunkId>,
    batches_seen: bool,
    /// Where the last index run ended (runs code their start relative to it).
    run_end: i64,
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
            workers: Workers::default(),
            pending: Vec::new(),
            consumed: 0,
            version: None,
            end_seen: false,
            stream_digest: blake3::Hasher::new(),
            scratch: Vec::new(),
            payload: Vec::new(),
            staged: Vec::new(),
            unit_frame: Vec::new(),
            undelta: Vec::new(),
            held: Vec::new(),
            index: Vec::new(),
            batches_seen: false,
            run_end: 0,
            stats: DecoderStats::default(),
        }
    }

    /// Gives the decoder the ordered list of chunks the encoder was told it holds (what the
    /// encoder's `mark_present` got before its first push); a format 2 stream's HELD record
    /// must name exactly this list.
    pub fn set_held(&mut self, ids: Vec<ChunkId>) {
        self.held = ids;
    }

    /// Spreads decompression and verification over `threads` threads from the next push on
    /// (format 1). Fails with `ERR_HDE_INVALID_PARAM` outside 1..=[`MAX_THREADS`](crate::MAX_THREADS).
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        if threads != self.workers.threads() {
            self.workers = Workers::new(threads)?;
        }
        Ok(())
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
        self.push_many(&[wire_bytes], out)
    }

    /// Consumes `pieces` one after another, as pushing each would, but decodes the records
    /// they hold together: with several [threads](Self::set_threads), the more records at
    /// once, the more of them are decompressed and verified side by side.
    pub fn push_many<P: AsRef<[u8]>>(&mut self, pieces: &[P], out: &mut Vec<u8>) -> Result<()> {
        for piece in pieces {
            let piece = piece.as_ref();
            self.stats.bytes_in += piece.len() as u64;
            self.pending.extend_from_slice(piece);
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.drain(&pending, out);
        self.pending = pending;
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

    fn drain(&mut self, pending: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.version.is_none() {
            match wire::parse_stream_version(pending)? {
                Some(v) => {
                    self.consumed = wire::STREAM_HEADER.len();
                    self.version = Some(v);
                }
                None => return Ok(()),
            }
        }
        let v2 = self.version == Some(2);
        loop {
            let rest = &pending[self.consumed..];
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
            let v1_record = matches!(record, Record::Chunk { .. } | Record::Ref { .. });
            let v2_record = matches!(record, Record::Batch { .. } | Record::Held { .. });
            if (v2 && v1_record) || (!v2 && v2_record) {
                return Err(HdeError::Malformed {
                    what: "record",
                    reason: format!(
                        "a {} record in a format {} stream",
                        if v1_record { "format 1" } else { "format 2" },
                        if v2 { 2 } else { 1 }
                    ),
                });
            }
            match record {
                Record::Held { count, digest } => {
                    if self.batches_seen || !self.index.is_empty() {
                        return Err(HdeError::Malformed {
                            what: "held record",
                            reason: "not at the start of the stream".into(),
                        });
                    }
                    let mine = wire::held_digest(&self.held);
                    if count as usize != self.held.len() || digest != mine {
                        return Err(HdeError::StreamMismatch(format!(
                            "the stream refers to a held list of {count} chunks ({digest}); \
                             this decoder was given {} ({mine})",
                            self.held.len()
                        )));
                    }
                    self.stream_digest.update(&digest.0);
                    self.index = std::mem::take(&mut self.held);
                }
                Record::Batch {
                    payload_hash,
                    ops,
                    frame,
                } => {
                    self.batches_seen = true;
                    self.batch(&payload_hash, ops, frame)?;
                    out.extend_from_slice(&self.staged);
                }
                Record::Chunk { id, frame, .. } => {
                    self.chunk_run(rest, RunRecord::Chunk(id, frame), len, out)?;
                    continue;
                }
                Record::Ref { id, raw_len } => self.resolve(&id, raw_len, out)?,
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

    /// Rebuilds one BATCH into `staged`, checking its payload against the payload hash before
    /// the caller emits any of it; new units are named by hashing what was rebuilt.
    fn batch(&mut self, payload_hash: &ChunkId, ops: &[u8], frame: &[u8]) -> Result<()> {
        frame::decode_into(frame, &mut self.payload)?;
        payload_hash.verify(&self.payload)?;
        self.staged.clear();
        let mut at = 0usize;
        let mut reader = OpReader::new(ops);
        let (mut received, mut reused) = (0u64, 0u64);
        while let Some(op) = reader.next_op()? {
            match op {
                Op::Literal(len) | Op::New(len) => {
                    let bytes = payload_part(&self.payload, &mut at, len)?;
                    if let Op::New(_) = op {
                        let id = ChunkId::of(bytes);
                        self.unit_frame.clear();
                        frame::encode_into(
                            bytes,
                            CodecLevel::fast(Codec::Lz4),
                            &mut self.unit_frame,
                        )?;
                        self.cache.keep(&id, bytes, &self.unit_frame)?;
                        self.stream_digest.update(&id.0);
                        self.index.push(id);
                        received += 1;
                    }
                    self.staged.extend_from_slice(bytes);
                }
                Op::Ref(id, len) => {
                    if !self.cache.fetch(&id, &mut self.scratch)? {
                        return Err(HdeError::MissingChunk(id));
                    }
                    if self.scratch.len() != len {
                        return Err(HdeError::Malformed {
                            what: "batch ops",
                            reason: format!(
                                "chunk {id} is {} bytes, the op says {len}",
                                self.scratch.len()
                            ),
                        });
                    }
                    self.stream_digest.update(&id.0);
                    self.staged.extend_from_slice(&self.scratch);
                    reused += 1;
                }
                Op::Delta(base, raw_len, len) => {
                    let delta = payload_part(&self.payload, &mut at, len)?;
                    if raw_len > frame::MAX_RAW_LEN {
                        return Err(HdeError::Malformed {
                            what: "delta unit",
                            reason: format!("raw length {raw_len} is over {}", frame::MAX_RAW_LEN),
                        });
                    }
                    let base_id =
                        *self
                            .index
                            .get(base as usize)
                            .ok_or_else(|| HdeError::Malformed {
                                what: "batch ops",
                                reason: format!(
                                    "delta base {base} is outside the {} indexed chunks",
                                    self.index.len()
                                ),
                            })?;
                    if !self.cache.fetch(&base_id, &mut self.scratch)? {
                        return Err(HdeError::MissingChunk(base_id));
                    }
                    crate::codec::zstd_undelta(delta, &self.scratch, raw_len, &mut self.undelta)?;
                    let id = ChunkId::of(&self.undelta);
                    self.unit_frame.clear();
                    frame::encode_into(
                        &self.undelta,
                        CodecLevel::fast(Codec::Lz4),
                        &mut self.unit_frame,
                    )?;
                    self.cache.keep(&id, &self.undelta, &self.unit_frame)?;
                    self.stream_digest.update(&id.0);
                    self.index.push(id);
                    self.staged.extend_from_slice(&self.undelta);
                    received += 1;
                }
                Op::Run(skip, count) | Op::PagedRun(skip, count) => {
                    let paged = matches!(op, Op::PagedRun(..));
                    let start = self.run_end.checked_add(skip).filter(|s| *s >= 0);
                    let ids = start
                        .and_then(|s| usize::try_from(s).ok())
                        .and_then(|s| Some(s..s.checked_add(count as usize)?))
                        .and_then(|range| self.index.get(range))
                        .ok_or_else(|| HdeError::Malformed {
                            what: "batch ops",
                            reason: format!(
                                "run {}{skip:+}, {count} long, is outside the {} indexed chunks",
                                self.run_end,
                                self.index.len()
                            ),
                        })?;
                    for id in ids {
                        if paged {
                            let header = self.payload.get(at..at + 8).ok_or_else(|| {
                                HdeError::Malformed {
                                    what: "batch record",
                                    reason: "a paged run needs more payload".into(),
                                }
                            })?;
                            self.staged.extend_from_slice(header);
                            at += 8;
                        }
                        if !self.cache.fetch(id, &mut self.scratch)? {
                            return Err(HdeError::MissingChunk(*id));
                        }
                        self.stream_digest.update(&id.0);
                        self.staged.extend_from_slice(&self.scratch);
                        reused += 1;
                        if self.staged.len() > 4 * frame::MAX_RAW_LEN {
                            return Err(HdeError::Malformed {
                                what: "batch record",
                                reason: "rebuilds more than 64 MiB".into(),
                            });
                        }
                    }
                    self.run_end += skip + i64::from(count);
                }
            }
        }
        if at != self.payload.len() {
            return Err(HdeError::Malformed {
                what: "batch record",
                reason: format!("ops use {at} of the payload's {} bytes", self.payload.len()),
            });
        }
        self.stream_digest.update(ops);
        self.stream_digest.update(&payload_hash.0);
        self.stats.chunks_received += received;
        self.stats.chunks_reused += reused;
        self.stats.bytes_out += self.staged.len() as u64;
        Ok(())
    }

    /// Format 1: the CHUNK record at the start of `rest`, and the CHUNK and REF records after
    /// it that are already buffered (up to [`RUN_RECORDS`] with several workers). Their frames
    /// are decompressed and verified on the workers; then, in order, each chunk is kept and
    /// emitted and each REF resolved (it may name a chunk of the same run). `consumed` moves
    /// past each record as it is done, so on an error the records before the failing one have
    /// been emitted, as one at a time would.
    fn chunk_run(
        &mut self,
        rest: &[u8],
        first: RunRecord<'_>,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut run = vec![(first, len)];
        let mut at = len;
        while run.len() < RUN_RECORDS && self.workers.threads() > 1 {
            let record = match wire::parse_record(&rest[at..])? {
                Some((Record::Chunk { id, frame, .. }, len)) => (RunRecord::Chunk(id, frame), len),
                Some((Record::Ref { id, raw_len }, len)) => (RunRecord::Ref(id, raw_len), len),
                _ => break,
            };
            at += record.1;
            run.push(record);
        }
        let raws = self.workers.map(&run, |(record, _)| match record {
            RunRecord::Chunk(id, frame) => {
                let mut raw = Vec::new();
                frame::decode_into(frame, &mut raw)?;
                id.verify(&raw)?;
                Ok(raw)
            }
            RunRecord::Ref(..) => Ok(Vec::new()),
        });
        for ((record, len), raw) in run.into_iter().zip(raws) {
            match record {
                RunRecord::Chunk(id, frame) => {
                    let raw = raw?;
                    self.cache.keep(&id, &raw, frame)?;
                    self.stats.chunks_received += 1;
                    self.accept(&id, &raw, out);
                }
                RunRecord::Ref(id, raw_len) => self.resolve(&id, raw_len, out)?,
            }
            self.consumed += len;
        }
        Ok(())
    }

    /// A REF: the chunk from the cache, which must hold it at the length the record says.
    fn resolve(&mut self, id: &ChunkId, raw_len: usize, out: &mut Vec<u8>) -> Result<()> {
        let mut raw = std::mem::take(&mut self.scratch);
        let found = self.cache.fetch(id, &mut raw);
        let checked = match found {
            Ok(true) if raw.len() == raw_len => Ok(()),
            Ok(true) => Err(HdeError::Malformed {
                what: "ref record",
                reason: format!("chunk {id} is {} bytes, ref says {raw_len}", raw.len()),
            }),
            Ok(false) => Err(HdeError::MissingChunk(*id)),
            Err(e) => Err(e),
        };
        if checked.is_ok() {
            self.stats.chunks_reused += 1;
            self.accept(id, &raw, out);
        }
        self.scratch = raw;
        checked
    }

    fn accept(&mut self, id: &ChunkId, raw: &[u8], out: &mut Vec<u8>) {
        self.stream_digest.update(&id.0);
        self.stats.bytes_out += raw.len() as u64;
        out.extend_from_slice(raw);
    }
}

/// A format 1 record of a run that [`Decoder::chunk_run`] decodes together.
enum RunRecord<'a> {
    Chunk(ChunkId, &'a [u8]),
    Ref(ChunkId, usize),
}

/// Most records decoded together: enough for every worker to have several frames, few enough
/// that the run's raw bytes stay a few MiB.
const RUN_RECORDS: usize = 64;

/// The next `len` bytes of a batch's payload at `*at`, which moves past them; a batch whose ops
/// need more than its payload holds is malformed.
fn payload_part<'a>(payload: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8]> {
    let part = payload
        .get(*at..*at + len)
        .ok_or_else(|| HdeError::Malformed {
            what: "batch record",
            reason: format!("ops need more than the payload's {} bytes", payload.len()),
        })?;
    *at += len;
    Ok(part)
}

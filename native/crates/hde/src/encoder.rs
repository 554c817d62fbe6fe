//! The sending side of HDE: chunk, name, skip what the receiver holds, compress the rest.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::split::{PageSplitter, Unit};
use crate::{batch, frame, wire};
use crate::{ChunkId, Chunker, ChunkerParams, CodecLevel, Cut, HdeError, Result, Workers};

/// How the encoder cuts its input into dedup units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Split {
    /// FastCDC chunks, each its own CHUNK or REF record (stream format 1; the JS path reads it).
    #[default]
    Cdc,
    /// QEMU RAM pages as units, record headers as literals, FastCDC for the rest, all in BATCH
    /// records (stream format 2; see [`crate::split`]).
    Pages,
}

/// A batch's payload is flushed once it reaches this many raw bytes (4 MiB compressed
/// together beat 1 MiB frames and plain zstd -3 on captured streams).
const BATCH_PAYLOAD: usize = 4 << 20;
/// ... or its ops this many bytes (well under [`batch::MAX_OPS_LEN`]),
const BATCH_OPS: usize = 256 * 1024;
/// ... or it rebuilds this many bytes (runs of references cost almost nothing on the wire; the
/// decoder refuses batches that rebuild more than 64 MiB).
const BATCH_REBUILT: usize = 8 << 20;
/// The literal before each unit of a paged run: a CONTINUE page record's header.
const PAGED_LITERAL: usize = 8;

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
    /// Frame bytes of the chunks sent in full (format 2: the batches' frames, literals included).
    pub sent_frame_bytes: u64,
    /// Format 2: raw bytes sent as literals (record headers, short gaps), not as units.
    pub literal_bytes: u64,
    /// Format 2: changed pages sent as a delta against their previous version.
    pub delta_units: u64,
}

/// Turns a byte stream into the HDE wire format (see [`wire`]).
///
/// Feed it with [`push`](Self::push) and end with [`finish`](Self::finish); both append to
/// a caller-owned buffer, so one call can cover many chunks with no per-chunk allocation.
#[derive(Debug)]
pub struct Encoder {
    cutter: Cutter,
    workers: Workers,
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
    /// Format 2: the batch being filled.
    batch: Batch,
    /// Format 2: ids announced before the stream started, in order (the HELD list), then the
    /// units sent, each with its index for the batches' index runs.
    held: Vec<ChunkId>,
    index_of: HashMap<ChunkId, u32>,
    /// Format 2: the previous image of this VM, if the caller has it, for page deltas.
    reference: Option<Reference>,
}

/// A previous stream of the same VM: its bytes and where each page's last version sits in it.
#[derive(Debug)]
struct Reference {
    content: Vec<u8>,
    pages: HashMap<u64, (ChunkId, usize)>,
}

/// A changed page as zstd against its previous version, when the receiver holds that version
/// under an index and the delta is less than half the page: `(base index, delta)`.
fn page_delta(
    reference: Option<&Reference>,
    index_of: &HashMap<ChunkId, u32>,
    level: CodecLevel,
    key: Option<u64>,
    id: &ChunkId,
    raw: &[u8],
) -> Result<Option<(u32, Vec<u8>)>> {
    let (Some(reference), Some(key)) = (reference, key) else {
        return Ok(None);
    };
    // Deltas cost CPU; when the governor has stepped down from zstd, the encoder is the
    // bottleneck and they are skipped.
    if level.codec() != crate::Codec::Zstd {
        return Ok(None);
    }
    let Some(&(base_id, at)) = reference.pages.get(&key) else {
        return Ok(None);
    };
    let Some(&base) = index_of.get(&base_id) else {
        return Ok(None);
    };
    if base_id == *id {
        return Ok(None);
    }
    let delta =
        crate::codec::zstd_delta(raw, &reference.content[at..at + raw.len()], level.level())?;
    Ok((delta.len() < raw.len() / 2).then_some((base, delta)))
}

#[derive(Debug)]
enum Cutter {
    Cdc(Chunker),
    Pages(PageSplitter),
}

/// A BATCH record being filled: its ops, its payload (literals and new units) and the pending
/// literal run, which becomes one op when the next unit or the flush comes.
#[derive(Debug, Default)]
struct Batch {
    ops: Vec<u8>,
    payload: Vec<u8>,
    literal_run: usize,
    /// Raw bytes the batch stands for.
    rebuilt: usize,
    /// An index run not yet written: start, count, and whether each unit follows an 8-byte
    /// literal (a page record header).
    index_run: Option<(u32, u32, bool)>,
    /// Where the last written run ended: the next run's start is coded relative to it.
    run_end: i64,
    frame: Vec<u8>,
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
        Self::with_split(params, level, Split::Cdc)
    }

    /// An encoder that cuts its input as `split` says; `params` size the FastCDC chunks.
    pub fn with_split(params: ChunkerParams, level: CodecLevel, split: Split) -> Result<Self> {
        let cutter = match split {
            Split::Cdc => Cutter::Cdc(Chunker::new(params)?),
            Split::Pages => Cutter::Pages(PageSplitter::new(params)?),
        };
        Ok(Encoder {
            cutter,
            workers: Workers::default(),
            records: Records {
                level,
                present: HashMap::new(),
                stream_digest: blake3::Hasher::new(),
                stats: EncoderStats::default(),
                batch: Batch::default(),
                held: Vec::new(),
                index_of: HashMap::new(),
                reference: None,
            },
            started: false,
            finished: false,
        })
    }

    /// Records that the receiver already holds these chunks, so they go out as REFs.
    ///
    /// In format 2, ids announced before the first push are the stream's HELD list, referred to
    /// by index: the decoder must be given the same list in the same order
    /// ([`Decoder::set_held`](crate::Decoder::set_held)), or it refuses the stream with
    /// `ERR_HDE_STREAM_MISMATCH`. Ids announced later go out as references by id.
    pub fn mark_present(&mut self, ids: impl IntoIterator<Item = ChunkId>) {
        let records = &mut self.records;
        for id in ids {
            if let Entry::Vacant(slot) = records.present.entry(id) {
                slot.insert(Origin::Announced);
                if !self.started && matches!(self.cutter, Cutter::Pages(_)) {
                    records.held.push(id);
                }
            }
        }
    }

    /// Format 2: gives the encoder the previous stream of this VM (what the receiver's HELD list
    /// came from), so that a page that changed is sent as zstd against its previous version
    /// (`D` op) when the receiver holds that version. Keeps a copy of `previous`.
    pub fn set_reference(&mut self, previous: &[u8]) -> Result<()> {
        let Cutter::Pages(splitter) = &self.cutter else {
            return Err(HdeError::param("reference", "needs split: pages"));
        };
        let mut scan = PageSplitter::new(*splitter.params())?;
        let mut pages = HashMap::new();
        let mut at = 0usize;
        let mut note = |unit: Unit<'_>| {
            if let Unit::Page(bytes, key) = unit {
                pages.insert(key, (ChunkId::of(bytes), at));
            }
            at += unit.bytes().len();
            Ok(())
        };
        scan.push(previous, &mut note)?;
        scan.finish(&mut note)?;
        self.records.reference = Some(Reference {
            content: previous.to_vec(),
            pages,
        });
        Ok(())
    }

    /// The HELD list so far: ids announced before the stream started, in order.
    pub fn held(&self) -> &[ChunkId] {
        &self.records.held
    }

    /// Spreads hashing and compression over `threads` threads from the next push on (format 1;
    /// the output is the same at any count). Fails with `ERR_HDE_INVALID_PARAM` outside
    /// 1..=[`MAX_THREADS`](crate::MAX_THREADS).
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        if threads != self.workers.threads() {
            self.workers = Workers::new(threads)?;
        }
        Ok(())
    }

    /// The threads hashing and compression may use.
    pub fn threads(&self) -> usize {
        self.workers.threads()
    }

    /// Changes the codec level from the next chunk on, e.g. when the predicted bandwidth moves.
    pub fn set_level(&mut self, level: CodecLevel) {
        self.records.level = level;
    }

    /// Ids of every unit the receiver holds once it has this stream: those announced with
    /// [`mark_present`](Self::mark_present) and those sent so far. In format 2 they come in
    /// stream order (the HELD list, then units as first sent), which is the order that makes a
    /// later stream of the same VM cheapest as a HELD list: unchanged pages become long runs.
    pub fn held_ids(&self) -> Vec<ChunkId> {
        let r = &self.records;
        let mut ordered = vec![None; r.index_of.len()];
        for (id, &i) in &r.index_of {
            ordered[i as usize] = Some(*id);
        }
        let mut ids: Vec<ChunkId> = ordered.into_iter().flatten().collect();
        ids.extend(r.present.keys().filter(|id| !r.index_of.contains_key(id)));
        ids
    }

    /// The counters so far.
    pub fn stats(&self) -> EncoderStats {
        self.records.stats
    }

    /// Encodes `data`, appending whole records to `out`. A partial chunk is held back.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.push_many(&[data], out)
    }

    /// Encodes `pieces` one after another, as pushing each would, but hashes and compresses
    /// their chunks together: with several [threads](Self::set_threads), the more chunks at
    /// once, the more of them run side by side.
    pub fn push_many<P: AsRef<[u8]>>(&mut self, pieces: &[P], out: &mut Vec<u8>) -> Result<()> {
        self.start(out)?;
        let records = &mut self.records;
        for data in pieces {
            records.stats.bytes_in += data.as_ref().len() as u64;
        }
        match &mut self.cutter {
            Cutter::Cdc(chunker) => {
                let mut chunks = Vec::new();
                for data in pieces {
                    let data = data.as_ref();
                    chunker.push_cuts(data, |cut| {
                        chunks.push(match cut {
                            Cut::Input(at, len) => Cow::Borrowed(&data[at..at + len]),
                            Cut::Carried(chunk) => Cow::Owned(chunk.to_vec()),
                        });
                        Ok(())
                    })?;
                }
                records.emit_all(&chunks, &self.workers, out)
            }
            Cutter::Pages(splitter) => {
                for data in pieces {
                    splitter.push(data.as_ref(), |unit| records.unit(unit, out))?;
                }
                Ok(())
            }
        }
    }

    /// Flushes the held-back chunk and writes the END record.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.start(out)?;
        let records = &mut self.records;
        match &mut self.cutter {
            Cutter::Cdc(chunker) => {
                let mut chunks = Vec::new();
                chunker.finish(|chunk| {
                    chunks.push(Cow::Owned(chunk.to_vec()));
                    Ok(())
                })?;
                records.emit_all(&chunks, &self.workers, out)?;
            }
            Cutter::Pages(splitter) => {
                splitter.finish(|unit| records.unit(unit, out))?;
                records.flush_batch(out)?;
            }
        }
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
            out.extend_from_slice(match self.cutter {
                Cutter::Cdc(_) => &wire::STREAM_HEADER,
                Cutter::Pages(_) => &wire::STREAM_HEADER_V2,
            });
            self.records.stats.bytes_out += wire::STREAM_HEADER.len() as u64;
            self.started = true;
            let records = &mut self.records;
            if !records.held.is_empty() {
                let count = u32::try_from(records.held.len())
                    .map_err(|_| HdeError::param("present", "over 2^32 chunks"))?;
                let digest = wire::held_digest(&records.held);
                records.stats.bytes_out += wire::write_held(out, count, &digest) as u64;
                records.stream_digest.update(&digest.0);
                for (i, id) in (0..count).zip(&records.held) {
                    records.index_of.insert(*id, i);
                }
            }
        }
        Ok(())
    }
}

impl Records {
    /// Format 1: one CHUNK or REF record per chunk, in order. BLAKE3 and compression run on
    /// `workers`; which chunks go out in full is decided here in order (first occurrence wins),
    /// so the records are the same at any thread count.
    fn emit_all(
        &mut self,
        chunks: &[Cow<'_, [u8]>],
        workers: &Workers,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let ids = workers.map(chunks, |chunk| ChunkId::of(chunk));
        let mut fresh = Vec::new();
        for (i, (chunk, id)) in chunks.iter().zip(&ids).enumerate() {
            self.stream_digest.update(&id.0);
            self.stats.chunks += 1;
            match self.present.entry(*id) {
                Entry::Vacant(slot) => {
                    slot.insert(Origin::Sent);
                    fresh.push(i);
                }
                Entry::Occupied(held) => {
                    self.stats.dedup_chunks += 1;
                    self.stats.dedup_bytes += chunk.len() as u64;
                    if *held.get() == Origin::Announced {
                        self.stats.known_chunks += 1;
                        self.stats.known_bytes += chunk.len() as u64;
                    }
                }
            }
        }
        let level = self.level;
        let frames = workers.map(&fresh, |&i| {
            let mut frame = Vec::new();
            frame::encode_into(&chunks[i], level, &mut frame).map(|_| frame)
        });
        let mut frames = fresh.iter().zip(frames).peekable();
        let stats = &mut self.stats;
        for (i, (chunk, id)) in chunks.iter().zip(&ids).enumerate() {
            match frames.next_if(|(&f, _)| f == i) {
                Some((_, frame)) => {
                    let frame = frame?;
                    stats.sent_raw_bytes += chunk.len() as u64;
                    stats.sent_frame_bytes += frame.len() as u64;
                    stats.bytes_out += wire::write_chunk_frame(out, id, &frame) as u64;
                }
                None => stats.bytes_out += wire::write_ref(out, id, chunk.len())? as u64,
            }
        }
        Ok(())
    }

    /// Format 2: adds one unit to the batch, flushing the batch when it is full.
    fn unit(&mut self, unit: Unit<'_>, out: &mut Vec<u8>) -> Result<()> {
        let batch = &mut self.batch;
        let stats = &mut self.stats;
        match unit {
            Unit::Literal(bytes) => {
                if bytes.is_empty() {
                    return Ok(());
                }
                batch.payload.extend_from_slice(bytes);
                batch.literal_run += bytes.len();
                stats.literal_bytes += bytes.len() as u64;
                stats.sent_raw_bytes += bytes.len() as u64;
            }
            Unit::Page(..) | Unit::Chunk(_) => {
                let (bytes, key) = match unit {
                    Unit::Page(bytes, key) => (bytes, Some(key)),
                    Unit::Chunk(bytes) | Unit::Literal(bytes) => (bytes, None),
                };
                let id = ChunkId::of(bytes);
                self.stream_digest.update(&id.0);
                stats.chunks += 1;
                match self.present.entry(id) {
                    Entry::Vacant(slot) => {
                        slot.insert(Origin::Sent);
                        batch.end_runs();
                        let index = u32::try_from(self.index_of.len())
                            .map_err(|_| HdeError::param("stream", "over 2^32 units"))?;
                        let delta = page_delta(
                            self.reference.as_ref(),
                            &self.index_of,
                            self.level,
                            key,
                            &id,
                            bytes,
                        )?;
                        self.index_of.insert(id, index);
                        match delta {
                            Some((base, delta)) => {
                                batch::put_delta(&mut batch.ops, base, bytes.len(), delta.len());
                                batch.payload.extend_from_slice(&delta);
                                stats.delta_units += 1;
                            }
                            None => {
                                batch::put_new(&mut batch.ops, bytes.len());
                                batch.payload.extend_from_slice(bytes);
                            }
                        }
                        stats.sent_raw_bytes += bytes.len() as u64;
                    }
                    Entry::Occupied(held) => {
                        stats.dedup_chunks += 1;
                        stats.dedup_bytes += bytes.len() as u64;
                        if *held.get() == Origin::Announced {
                            stats.known_chunks += 1;
                            stats.known_bytes += bytes.len() as u64;
                        }
                        match self.index_of.get(&id) {
                            Some(&i) => batch.extend_index_run(i),
                            None => {
                                batch.end_runs();
                                batch::put_ref(&mut batch.ops, &id, bytes.len());
                            }
                        }
                    }
                }
            }
        }
        batch.rebuilt += unit.bytes().len();
        if batch.payload.len() >= BATCH_PAYLOAD
            || batch.ops.len() >= BATCH_OPS
            || batch.rebuilt >= BATCH_REBUILT
        {
            self.flush_batch(out)?;
        }
        Ok(())
    }

    /// Format 2: writes the batch being filled, if it holds anything.
    fn flush_batch(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let batch = &mut self.batch;
        batch.end_runs();
        if batch.ops.is_empty() {
            return Ok(());
        }
        let payload_hash = ChunkId::of(&batch.payload);
        batch.frame.clear();
        frame::encode_into(&batch.payload, self.level, &mut batch.frame)?;
        let written = wire::write_batch(out, &payload_hash, &batch.ops, &batch.frame)?;
        self.stream_digest.update(&batch.ops);
        self.stream_digest.update(&payload_hash.0);
        self.stats.sent_frame_bytes += batch.frame.len() as u64;
        self.stats.bytes_out += written as u64;
        batch.ops.clear();
        batch.payload.clear();
        batch.rebuilt = 0;
        Ok(())
    }
}

impl Batch {
    /// A unit held under `index` follows the pending literal bytes: extend the run in progress
    /// if it continues it (a paged run absorbs one 8-byte record header per unit), else start one.
    fn extend_index_run(&mut self, index: u32) {
        let paged = self.literal_run == PAGED_LITERAL;
        if let Some(run) = &mut self.index_run {
            let continues = run.0.checked_add(run.1) == Some(index);
            if continues && run.2 == paged && (paged || self.literal_run == 0) {
                run.1 += 1;
                self.literal_run = 0;
                return;
            }
        }
        self.end_index_run();
        if !paged {
            self.end_literal_run();
        }
        self.literal_run = 0;
        self.index_run = Some((index, 1, paged));
    }

    /// Writes what is pending, in stream order: the run, then the literal bytes after it.
    fn end_runs(&mut self) {
        self.end_index_run();
        self.end_literal_run();
    }

    fn end_index_run(&mut self) {
        if let Some((start, count, paged)) = self.index_run.take() {
            let skip = i64::from(start) - self.run_end;
            if paged {
                batch::put_paged_run(&mut self.ops, skip, count);
            } else {
                batch::put_run(&mut self.ops, skip, count);
            }
            self.run_end = i64::from(start) + i64::from(count);
        }
    }

    fn end_literal_run(&mut self) {
        if self.literal_run > 0 {
            batch::put_literal(&mut self.ops, self.literal_run);
            self.literal_run = 0;
        }
    }
}

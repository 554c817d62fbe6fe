//! Streaming FastCDC: feed buffers of any size, get the same chunks as chunking the whole input.
//!
//! A cut is only searched with `max_size` bytes in view (or at end of input), which is exactly
//! what whole-input FastCDC sees, so boundaries never depend on how the input was split. Only the
//! tail of each buffer that does not yet end a chunk (< `max_size` bytes) is copied.

use fastcdc::v2020;

use crate::{ChunkerParams, Result};

/// Where a chunk cut by [`Chunker::push_cuts`] lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut<'a> {
    /// Bytes `at..at + len` of the pushed data.
    Input(usize, usize),
    /// A chunk that began in an earlier push, held by the chunker.
    Carried(&'a [u8]),
}

/// Cuts a byte stream into content-defined chunks.
#[derive(Debug)]
pub struct Chunker {
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    /// Bytes of the current, not yet cut chunk that arrived in earlier pushes.
    carry: Vec<u8>,
}

impl Chunker {
    /// A chunker with validated parameters.
    pub fn new(params: ChunkerParams) -> Result<Self> {
        params.validate()?;
        let (mask_s, mask_l) = params.masks();
        Ok(Chunker {
            params,
            mask_s,
            mask_l,
            carry: Vec::with_capacity(params.max_size),
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &ChunkerParams {
        &self.params
    }

    /// Bytes held back waiting for more input.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Feeds `data`; calls `emit` with each chunk that is now complete, in order.
    pub fn push<E: FnMut(&[u8]) -> Result<()>>(&mut self, data: &[u8], mut emit: E) -> Result<()> {
        self.push_cuts(data, |cut| match cut {
            Cut::Carried(chunk) => emit(chunk),
            Cut::Input(at, len) => emit(&data[at..at + len]),
        })
    }

    /// As [`push`](Self::push), but says where each chunk lies: in `data` (so the caller can
    /// keep a run of them without copying) or in bytes carried over from earlier pushes.
    pub fn push_cuts<E: FnMut(Cut<'_>) -> Result<()>>(
        &mut self,
        data: &[u8],
        mut emit: E,
    ) -> Result<()> {
        let max = self.params.max_size;
        let mut pos = 0;
        // First finish the chunk that began in an earlier push, topping the carry up to max.
        while !self.carry.is_empty() {
            let carried = self.carry.len();
            let take = (max - carried).min(data.len() - pos);
            self.carry.extend_from_slice(&data[pos..pos + take]);
            if self.carry.len() < max {
                return Ok(()); // all of `data` is carried; not enough in view to cut yet
            }
            let len = self.cut(&self.carry);
            emit(Cut::Carried(&self.carry[..len]))?;
            if len >= carried {
                // The chunk reached into `data`: continue in place from there, copying no more.
                pos += len - carried;
                self.carry.clear();
            } else {
                // Give back the borrowed bytes; the next round borrows them again.
                self.carry.truncate(carried);
                self.carry.drain(..len);
            }
        }
        while data.len() - pos >= max {
            let len = self.cut(&data[pos..]);
            emit(Cut::Input(pos, len))?;
            pos += len;
        }
        self.carry.extend_from_slice(&data[pos..]);
        Ok(())
    }

    /// Ends the stream: emits whatever is held back, as FastCDC cuts the end of an input.
    pub fn finish<E: FnMut(&[u8]) -> Result<()>>(&mut self, mut emit: E) -> Result<()> {
        let carry = std::mem::take(&mut self.carry);
        let mut rest = &carry[..];
        while !rest.is_empty() {
            let len = self.cut(rest);
            emit(&rest[..len])?;
            rest = &rest[len..];
        }
        self.carry = carry;
        self.carry.clear();
        Ok(())
    }

    /// Chunk lengths of a whole input, for tests and cross-checks.
    pub fn chunk_lengths(params: ChunkerParams, data: &[u8]) -> Result<Vec<usize>> {
        let mut chunker = Chunker::new(params)?;
        let mut out = Vec::with_capacity(data.len() / params.avg_size + 1);
        chunker.push(data, |c| {
            out.push(c.len());
            Ok(())
        })?;
        chunker.finish(|c| {
            out.push(c.len());
            Ok(())
        })?;
        Ok(out)
    }

    /// The length of the first chunk FastCDC cuts from `source` (all of it if it is short).
    pub(crate) fn cut_one(&self, source: &[u8]) -> usize {
        self.cut(source)
    }

    fn cut(&self, source: &[u8]) -> usize {
        let p = &self.params;
        let (_, len) = v2020::cut(
            source,
            p.min_size,
            p.avg_size,
            p.max_size,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len.max(1).min(source.len())
    }
}

//! Page-aware splitting of a QEMU precopy stream: each RAM page's 4 KiB payload becomes its own
//! dedup unit, the record headers between pages become literal bytes, and whatever is not
//! recognised (device state, unknown flags, a stream that is not QEMU's) is cut by FastCDC.
//!
//! Recognition only chooses cut points: the units always concatenate to the input, so a
//! misreading costs dedup, never correctness. Every decision looks at a fixed window ahead (or
//! the end of input), so units never depend on how the input was split into buffers.
//!
//! QEMU's RAM records (migration/ram.c): `be64 offset | flags`, then, without
//! `RAM_SAVE_FLAG_CONTINUE`, `u8 len | block idstr`; a `PAGE` record carries 4096 bytes, a `ZERO`
//! record one fill byte. `EOS` ends the RAM part of a section; section framing follows.

use crate::{Chunker, ChunkerParams, Result};

/// Bytes in one target page (x86).
pub const PAGE_SIZE: usize = 4096;
const FLAG_ZERO: u64 = 0x02;
const FLAG_PAGE: u64 = 0x08;
const FLAG_EOS: u64 = 0x10;
const FLAG_CONTINUE: u64 = 0x20;
const FLAG_MULTIFD_FLUSH: u64 = 0x200;
const FLAG_MASK: u64 = 0xfff;
/// How far an unsynced scan looks for the next page record before it cuts a FastCDC chunk.
const SCAN_WINDOW: usize = 256 * 1024;
/// Gaps shorter than this between page records travel as literal bytes, not as chunks.
const LITERAL_GAP: usize = 4096;
/// Header of a record: 8 bytes, a length byte and an idstr of up to 255 bytes.
const MAX_HEADER: usize = 8 + 1 + 255;

/// One piece of the input, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit<'a> {
    /// Bytes sent as they are (record headers, section framing), compressed with their batch.
    Literal(&'a [u8]),
    /// One RAM page's payload: a dedup unit, and where it lives in the guest (the block's
    /// number in order of first appearance in the stream, times 2^48, plus the page offset), so
    /// the same page can be found in the previous image.
    Page(&'a [u8], u64),
    /// A FastCDC chunk of bytes not recognised as pages: a dedup unit.
    Chunk(&'a [u8]),
}

impl Unit<'_> {
    /// The unit's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Unit::Literal(b) | Unit::Page(b, _) | Unit::Chunk(b) => b,
        }
    }
}

/// What a record at some position is.
enum Parsed {
    /// Not enough bytes buffered to tell.
    Incomplete,
    /// Not a RAM record we know.
    Unknown,
    /// A page record: header length (the payload follows).
    Page(usize),
    /// Another RAM record of this length; `true` if page records follow directly.
    Other(usize, bool),
}

fn be64(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[..8]);
    u64::from_be_bytes(b)
}

/// Length of the record header at the start of `buf` (offset word plus idstr if present).
fn header_len(buf: &[u8], flags: u64) -> Option<Option<usize>> {
    if flags & FLAG_CONTINUE != 0 {
        return Some(Some(8));
    }
    let Some(&len) = buf.get(8) else {
        return Some(None);
    };
    let len = len as usize;
    if len == 0 {
        return None;
    }
    let Some(id) = buf.get(9..9 + len) else {
        return Some(None);
    };
    if !id.iter().all(|c| c.is_ascii_graphic()) {
        return None;
    }
    Some(Some(9 + len))
}

fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < 8 {
        return Parsed::Incomplete;
    }
    let word = be64(buf);
    // RAM offsets are far below 2^48; anything else is not a RAM record.
    if word >> 48 != 0 {
        return Parsed::Unknown;
    }
    let flags = word & FLAG_MASK;
    let kind = flags & !FLAG_CONTINUE;
    match kind {
        FLAG_PAGE | FLAG_ZERO => match header_len(buf, flags) {
            None => Parsed::Unknown,
            Some(None) => Parsed::Incomplete,
            Some(Some(h)) if kind == FLAG_PAGE => Parsed::Page(h),
            Some(Some(h)) => Parsed::Other(h + 1, true),
        },
        FLAG_EOS if flags == FLAG_EOS => Parsed::Other(8, false),
        FLAG_MULTIFD_FLUSH if flags == FLAG_MULTIFD_FLUSH => Parsed::Other(8, true),
        _ => Parsed::Unknown,
    }
}

/// Whether a page record starts at `buf[0]`, confirmed by a known record right after its page.
/// `None` if the window is too short to tell.
fn page_record_at(buf: &[u8]) -> Option<bool> {
    match parse(buf) {
        Parsed::Incomplete => None,
        Parsed::Unknown | Parsed::Other(..) => Some(false),
        Parsed::Page(h) => {
            let next = buf.get(h + PAGE_SIZE..)?;
            match parse(next) {
                Parsed::Incomplete => None,
                Parsed::Unknown => Some(false),
                Parsed::Page(_) | Parsed::Other(..) => Some(true),
            }
        }
    }
}

/// Cuts a byte stream into [`Unit`]s; see the module header.
#[derive(Debug)]
pub struct PageSplitter {
    chunker: Chunker,
    synced: bool,
    /// Input not yet emitted.
    carry: Vec<u8>,
    /// RAM block idstrs in order of first appearance, and the one CONTINUE records refer to.
    blocks: Vec<Vec<u8>>,
    block: u64,
}

impl PageSplitter {
    /// A splitter whose unrecognised regions are cut with `params`.
    pub fn new(params: ChunkerParams) -> Result<Self> {
        Ok(PageSplitter {
            chunker: Chunker::new(params)?,
            synced: false,
            carry: Vec::new(),
            blocks: Vec::new(),
            block: 0,
        })
    }

    /// Bytes held back waiting for more input.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// The FastCDC parameters for unrecognised regions.
    pub fn params(&self) -> &ChunkerParams {
        self.chunker.params()
    }

    /// Feeds `data`; calls `emit` with each unit that is now decided, in order.
    pub fn push<E: FnMut(Unit<'_>) -> Result<()>>(&mut self, data: &[u8], emit: E) -> Result<()> {
        self.carry.extend_from_slice(data);
        self.drain(false, emit)
    }

    /// Ends the stream: emits everything held back.
    pub fn finish<E: FnMut(Unit<'_>) -> Result<()>>(&mut self, emit: E) -> Result<()> {
        self.drain(true, emit)?;
        self.carry.clear();
        self.synced = false;
        self.blocks.clear();
        self.block = 0;
        Ok(())
    }

    fn drain<E: FnMut(Unit<'_>) -> Result<()>>(&mut self, at_end: bool, mut emit: E) -> Result<()> {
        let carry = std::mem::take(&mut self.carry);
        let mut pos = 0;
        let result = loop {
            let buf = &carry[pos..];
            if buf.is_empty() {
                break Ok(());
            }
            match self.step(buf, at_end, &mut emit) {
                Ok(Some(n)) => pos += n,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.carry = carry;
        self.carry.drain(..pos);
        result
    }

    /// Emits the next units from the start of `buf`; returns the bytes consumed, or `None` to
    /// wait for more input.
    fn step<E: FnMut(Unit<'_>) -> Result<()>>(
        &mut self,
        buf: &[u8],
        at_end: bool,
        emit: &mut E,
    ) -> Result<Option<usize>> {
        if self.synced {
            match parse(buf) {
                Parsed::Page(h) if buf.len() >= h + PAGE_SIZE => {
                    let key = self.page_key(&buf[..h]);
                    emit(Unit::Literal(&buf[..h]))?;
                    emit(Unit::Page(&buf[h..h + PAGE_SIZE], key))?;
                    return Ok(Some(h + PAGE_SIZE));
                }
                Parsed::Other(len, stay) if buf.len() >= len => {
                    emit(Unit::Literal(&buf[..len]))?;
                    self.synced = stay;
                    return Ok(Some(len));
                }
                Parsed::Unknown => self.synced = false,
                _ if !at_end => return Ok(None),
                _ => self.synced = false,
            }
        }
        // Unsynced: find the next confirmed page record within the scan window.
        let need = SCAN_WINDOW + 2 * MAX_HEADER + PAGE_SIZE + 8;
        if buf.len() < need && !at_end {
            return Ok(None);
        }
        let window = buf.len().min(SCAN_WINDOW);
        let found = (0..window).find(|&q| {
            let b = buf[q..].get(7).copied().unwrap_or(0);
            // Cheap filter: the low byte of a page record's word is 0x08 or 0x28.
            (b == 0x08 || b == 0x28) && page_record_at(&buf[q..]) == Some(true)
        });
        match found {
            Some(0) => {
                self.synced = true;
                Ok(Some(0))
            }
            Some(gap) => {
                self.emit_gap(&buf[..gap], emit)?;
                self.synced = true;
                Ok(Some(gap))
            }
            None if buf.len() <= window => {
                // End of input with no page record: the rest is one gap.
                self.emit_gap(buf, emit)?;
                Ok(Some(buf.len()))
            }
            None => {
                let len = self.chunker.cut_one(buf);
                emit(Unit::Chunk(&buf[..len]))?;
                Ok(Some(len))
            }
        }
    }

    /// The page's place in the guest, from its record header (see [`Unit::Page`]).
    fn page_key(&mut self, header: &[u8]) -> u64 {
        let word = be64(header);
        if header.len() > 8 {
            let id = &header[9..];
            self.block = match self.blocks.iter().position(|b| b == id) {
                Some(i) => i as u64,
                None => {
                    self.blocks.push(id.to_vec());
                    (self.blocks.len() - 1) as u64
                }
            };
        }
        (self.block << 48) | (word & !FLAG_MASK)
    }

    fn emit_gap<E: FnMut(Unit<'_>) -> Result<()>>(&self, gap: &[u8], emit: &mut E) -> Result<()> {
        if gap.len() < LITERAL_GAP {
            return emit(Unit::Literal(gap));
        }
        let mut rest = gap;
        while !rest.is_empty() {
            let len = self.chunker.cut_one(rest);
            emit(Unit::Chunk(&rest[..len]))?;
            rest = &rest[len..];
        }
        Ok(())
    }
}

//! The BATCH record of stream format 2: many small units (RAM pages, record headers) under one
//! compressed frame, so 4 KiB pages keep a compression context and cost few bytes of framing.
//!
//! ```text
//! BATCH 0x04 | payload BLAKE3 [32] | ops_len u32 LE | ops | frame
//! op    0x00 L | len varint               literal bytes, next in the frame's payload
//!       0x01 N | len varint               a unit the receiver lacks, next in the payload
//!       0x02 R | id [32] | len varint     a unit the receiver holds
//!       0x03 I | skip zigzag varint | count varint
//!                                         `count` units by index: the stream's HELD list
//!                                         first, then its new units in the order sent; the
//!                                         run starts `skip` after the previous run's end
//!       0x05 P | skip zigzag varint | count varint
//!                                         as I, but each unit follows 8 literal bytes from
//!                                         the payload (a page record's header)
//!       0x04 D | base varint | raw_len varint | len varint
//!                                         a new unit as zstd of `len` payload bytes with unit
//!                                         `base` (an index) as its dictionary: a changed page
//!                                         against its previous version
//! ```
//! The frame's payload is the literals and new units in op order. The payload hash covers all
//! of it, so a batch is checked whole before any byte of it is emitted, and new units need no
//! id on the wire: the receiver names them by hashing what it rebuilt (32 bytes a page saved).

use crate::{ChunkId, HdeError, Result};

/// Largest ops section a decoder accepts.
pub const MAX_OPS_LEN: usize = 1 << 20;
const OP_LITERAL: u8 = 0;
const OP_NEW: u8 = 1;
const OP_REF: u8 = 2;
const OP_RUN: u8 = 3;
const OP_DELTA: u8 = 4;
const OP_PAGED_RUN: u8 = 5;

/// One decoded op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Literal bytes from the payload.
    Literal(usize),
    /// A new unit from the payload.
    New(usize),
    /// A unit from the receiver's cache.
    Ref(ChunkId, usize),
    /// `count` units by index, starting this far (signed) after the previous run's end.
    Run(i64, u32),
    /// As `Run`, each unit after 8 literal bytes.
    PagedRun(i64, u32),
    /// A new unit (base index, raw length) coded against the base in `len` payload bytes.
    Delta(u32, usize, usize),
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    // LEB128: seven bits a byte, low bits first, the top bit set on all but the last.
    let low7 = |v: usize| v.to_le_bytes()[0] & 0x7f;
    while v >= 0x80 {
        out.push(low7(v) | 0x80);
        v >>= 7;
    }
    out.push(low7(v));
}

/// Appends a literal op.
pub fn put_literal(ops: &mut Vec<u8>, len: usize) {
    ops.push(OP_LITERAL);
    put_varint(ops, len);
}

/// Appends a new-unit op.
pub fn put_new(ops: &mut Vec<u8>, len: usize) {
    ops.push(OP_NEW);
    put_varint(ops, len);
}

/// Appends an index run op; `skip` is its start minus the previous run's end.
pub fn put_run(ops: &mut Vec<u8>, skip: i64, count: u32) {
    ops.push(OP_RUN);
    put_run_body(ops, skip, count);
}

/// Appends a paged run op (each unit after 8 literal bytes).
pub fn put_paged_run(ops: &mut Vec<u8>, skip: i64, count: u32) {
    ops.push(OP_PAGED_RUN);
    put_run_body(ops, skip, count);
}

fn put_run_body(ops: &mut Vec<u8>, skip: i64, count: u32) {
    // Zigzag: small skips either way take one byte.
    let zigzag = (skip << 1) ^ (skip >> 63);
    put_varint64(ops, zigzag.cast_unsigned());
    put_varint(ops, count as usize);
}

fn put_varint64(out: &mut Vec<u8>, mut v: u64) {
    let low7 = |v: u64| v.to_le_bytes()[0] & 0x7f;
    while v >= 0x80 {
        out.push(low7(v) | 0x80);
        v >>= 7;
    }
    out.push(low7(v));
}

/// Appends a delta op.
pub fn put_delta(ops: &mut Vec<u8>, base: u32, raw_len: usize, len: usize) {
    ops.push(OP_DELTA);
    put_varint(ops, base as usize);
    put_varint(ops, raw_len);
    put_varint(ops, len);
}

/// Appends a reference op.
pub fn put_ref(ops: &mut Vec<u8>, id: &ChunkId, len: usize) {
    ops.push(OP_REF);
    ops.extend_from_slice(&id.0);
    put_varint(ops, len);
}

fn malformed(reason: impl Into<String>) -> HdeError {
    HdeError::Malformed {
        what: "batch ops",
        reason: reason.into(),
    }
}

/// Reads the ops of a batch one by one; every error is `ERR_HDE_MALFORMED`.
#[derive(Debug)]
pub struct OpReader<'a> {
    buf: &'a [u8],
}

impl<'a> OpReader<'a> {
    /// A reader over an ops section.
    pub fn new(buf: &'a [u8]) -> Self {
        OpReader { buf }
    }

    fn len(&mut self) -> Result<usize> {
        match self.varint()? {
            0 => Err(malformed("a zero length")),
            v => Ok(v as usize),
        }
    }

    fn varint(&mut self) -> Result<u32> {
        u32::try_from(self.varint64()?).map_err(|_| malformed("a number over 2^32"))
    }

    fn varint64(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("a length ends early"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("a number over 10 bytes"))
    }

    fn id(&mut self) -> Result<ChunkId> {
        if self.buf.len() < 32 {
            return Err(malformed("an id ends early"));
        }
        let mut id = [0u8; 32];
        id.copy_from_slice(&self.buf[..32]);
        self.buf = &self.buf[32..];
        Ok(ChunkId(id))
    }

    /// The next op, or `None` at the end.
    pub fn next_op(&mut self) -> Result<Option<Op>> {
        let Some((&tag, rest)) = self.buf.split_first() else {
            return Ok(None);
        };
        self.buf = rest;
        let op = match tag {
            OP_LITERAL => Op::Literal(self.len()?),
            OP_NEW => Op::New(self.len()?),
            OP_REF => {
                let id = self.id()?;
                Op::Ref(id, self.len()?)
            }
            OP_DELTA => {
                let base = self.varint()?;
                let raw_len = self.len()?;
                Op::Delta(base, raw_len, self.len()?)
            }
            OP_RUN | OP_PAGED_RUN => {
                let zigzag = self.varint64()?;
                let skip = (zigzag >> 1).cast_signed() ^ -((zigzag & 1).cast_signed());
                match self.varint()? {
                    0 => return Err(malformed("an empty run")),
                    count if tag == OP_RUN => Op::Run(skip, count),
                    count => Op::PagedRun(skip, count),
                }
            }
            other => return Err(malformed(format!("unknown op 0x{other:02x}"))),
        };
        Ok(Some(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_reject_garbage() {
        let id = ChunkId::of(b"page");
        let mut ops = Vec::new();
        put_literal(&mut ops, 8);
        put_new(&mut ops, 4096);
        put_ref(&mut ops, &id, 300_000);
        put_run(&mut ops, -5, u32::MAX);
        put_delta(&mut ops, 7, 4096, 33);
        put_paged_run(&mut ops, 3, 2);
        let mut r = OpReader::new(&ops);
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Literal(8)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::New(4096)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Ref(id, 300_000)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Run(-5, u32::MAX)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Delta(7, 4096, 33)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::PagedRun(3, 2)));
        assert!(matches!(r.next_op(), Ok(None)));
        for bad in [
            &[9u8][..],
            &[0, 0],
            &[0, 0x80, 0x80, 0x80, 0x80, 0x80, 1],
            &[0, 0x80, 0x80, 0x80, 0x80, 0x10],
            &[1],
            &[2, 1, 2],
            &[0],
            &[3, 0, 0],
        ] {
            let mut r = OpReader::new(bad);
            assert_eq!(r.next_op().map_err(|e| e.code()), Err("ERR_HDE_MALFORMED"));
        }
    }
}

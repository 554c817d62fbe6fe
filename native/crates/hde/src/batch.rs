//! The BATCH record of stream format 2: many small units (RAM pages, record headers) under one
//! compressed frame, so 4 KiB pages keep a compression context and cost few bytes of framing.
//!
//! ```text
//! BATCH 0x04 | literal BLAKE3 [32] | ops_len u32 LE | ops | frame
//! op    0x00 L | len varint               literal bytes, next in the frame's payload
//!       0x01 N | id [32] | len varint     a unit the receiver lacks, next in the payload
//!       0x02 R | id [32] | len varint     a unit the receiver holds
//!       0x03 I | start varint | count varint
//!                                         `count` units by index: the stream's HELD list
//!                                         first, then its new units in the order sent
//! ```
//! The frame's payload is the literals and new units in op order. The literal hash covers the
//! batch's literal bytes, so a batch is checked whole before any byte of it is emitted.

use crate::{ChunkId, HdeError, Result};

/// Largest ops section a decoder accepts.
pub const MAX_OPS_LEN: usize = 1 << 20;
const OP_LITERAL: u8 = 0;
const OP_NEW: u8 = 1;
const OP_REF: u8 = 2;
const OP_RUN: u8 = 3;

/// One decoded op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Literal bytes from the payload.
    Literal(usize),
    /// A new unit from the payload.
    New(ChunkId, usize),
    /// A unit from the receiver's cache.
    Ref(ChunkId, usize),
    /// `count` units by index, from `start`.
    Run(u32, u32),
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
pub fn put_new(ops: &mut Vec<u8>, id: &ChunkId, len: usize) {
    ops.push(OP_NEW);
    ops.extend_from_slice(&id.0);
    put_varint(ops, len);
}

/// Appends an index run op.
pub fn put_run(ops: &mut Vec<u8>, start: u32, count: u32) {
    ops.push(OP_RUN);
    put_varint(ops, start as usize);
    put_varint(ops, count as usize);
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
        let mut v: u64 = 0;
        for i in 0..5 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("a length ends early"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(v).map_err(|_| malformed("a number over 2^32"));
            }
        }
        Err(malformed("a number over 5 bytes"))
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
            OP_NEW => {
                let id = self.id()?;
                Op::New(id, self.len()?)
            }
            OP_REF => {
                let id = self.id()?;
                Op::Ref(id, self.len()?)
            }
            OP_RUN => {
                let start = self.varint()?;
                match self.varint()? {
                    0 => return Err(malformed("an empty run")),
                    count => Op::Run(start, count),
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
        put_new(&mut ops, &id, 4096);
        put_ref(&mut ops, &id, 300_000);
        put_run(&mut ops, 0, u32::MAX);
        let mut r = OpReader::new(&ops);
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Literal(8)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::New(id, 4096)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Ref(id, 300_000)));
        assert_eq!(r.next_op().ok().flatten(), Some(Op::Run(0, u32::MAX)));
        assert!(matches!(r.next_op(), Ok(None)));
        for bad in [
            &[9u8][..],
            &[0, 0],
            &[0, 0x80, 0x80, 0x80, 0x80, 0x80, 1],
            &[0, 0x80, 0x80, 0x80, 0x80, 0x10],
            &[1, 2, 3],
            &[0],
            &[3, 0, 0],
        ] {
            let mut r = OpReader::new(bad);
            assert_eq!(r.next_op().map_err(|e| e.code()), Err("ERR_HDE_MALFORMED"));
        }
    }
}

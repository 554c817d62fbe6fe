//! Frames on each connection. Every connection carries a sequence of frames:
//!
//! ```text
//! DATA  0xA5 0x01 | seq u64 | len u32 | payload[len]
//! ACK   0xA5 0x02 | seq u64 | cumulative u64 | window u32
//! FIN   0xA5 0x03 | total_frames u64 | total_bytes u64
//! ```
//! All integers little-endian. An ACK names the DATA frame it answers (`seq`, so the sender can
//! time that connection), the next in-order frame (`cumulative`) and the receive window in frames.

use crate::{AmstError, Result};

const MAGIC: u8 = 0xA5;
const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_FIN: u8 = 3;
/// Bytes before a DATA payload.
pub const DATA_HEADER_LEN: usize = 2 + 8 + 4;
/// Length of an ACK frame.
pub const ACK_LEN: usize = 2 + 8 + 8 + 4;
/// Length of a FIN frame.
pub const FIN_LEN: usize = 2 + 8 + 8;

/// A parsed frame. DATA borrows its payload from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A piece of the stream.
    Data {
        /// Position in the stream, in frames from 0.
        seq: u64,
        /// The bytes.
        payload: &'a [u8],
    },
    /// The receiver's answer to one DATA frame.
    Ack(Ack),
    /// The sender's declaration of the stream's end.
    Fin {
        /// Frames in the whole stream.
        total_frames: u64,
        /// Bytes in the whole stream.
        total_bytes: u64,
    },
}

/// An acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The DATA frame this answers.
    pub seq: u64,
    /// Every frame below this has been delivered in order.
    pub cumulative: u64,
    /// Frames the receiver accepts beyond `cumulative`.
    pub window: u32,
}

/// Writes a DATA header for a payload of `len` bytes.
pub fn data_header(seq: u64, len: usize) -> [u8; DATA_HEADER_LEN] {
    let mut h = [0u8; DATA_HEADER_LEN];
    h[0] = MAGIC;
    h[1] = KIND_DATA;
    h[2..10].copy_from_slice(&seq.to_le_bytes());
    // Payloads are bounded by the configured frame size (≤ 16 MiB), so this never truncates.
    #[allow(clippy::cast_possible_truncation)]
    h[10..14].copy_from_slice(&(len as u32).to_le_bytes());
    h
}

/// Encodes an ACK.
pub fn encode_ack(ack: &Ack) -> [u8; ACK_LEN] {
    let mut b = [0u8; ACK_LEN];
    b[0] = MAGIC;
    b[1] = KIND_ACK;
    b[2..10].copy_from_slice(&ack.seq.to_le_bytes());
    b[10..18].copy_from_slice(&ack.cumulative.to_le_bytes());
    b[18..22].copy_from_slice(&ack.window.to_le_bytes());
    b
}

/// Encodes a FIN.
pub fn encode_fin(total_frames: u64, total_bytes: u64) -> [u8; FIN_LEN] {
    let mut b = [0u8; FIN_LEN];
    b[0] = MAGIC;
    b[1] = KIND_FIN;
    b[2..10].copy_from_slice(&total_frames.to_le_bytes());
    b[10..18].copy_from_slice(&total_bytes.to_le_bytes());
    b
}

/// Parses one frame from the start of `buf`. `Ok(None)` means incomplete: read more.
/// Payloads over `max_payload` are refused from the header alone, before buffering them.
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(Frame<'_>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] != MAGIC {
        return Err(AmstError::MalformedFrame(format!(
            "bad magic 0x{:02x}",
            buf[0]
        )));
    }
    match buf[1] {
        KIND_DATA => {
            if buf.len() < DATA_HEADER_LEN {
                return Ok(None);
            }
            let seq = u64_at(buf, 2);
            let len = u32_at(buf, 10) as usize;
            if len > max_payload {
                return Err(AmstError::FrameTooLarge {
                    len,
                    limit: max_payload,
                });
            }
            if len == 0 {
                return Err(AmstError::MalformedFrame("empty DATA frame".into()));
            }
            let Some(payload) = buf.get(DATA_HEADER_LEN..DATA_HEADER_LEN + len) else {
                return Ok(None);
            };
            Ok(Some((Frame::Data { seq, payload }, DATA_HEADER_LEN + len)))
        }
        KIND_ACK => {
            if buf.len() < ACK_LEN {
                return Ok(None);
            }
            let ack = Ack {
                seq: u64_at(buf, 2),
                cumulative: u64_at(buf, 10),
                window: u32_at(buf, 18),
            };
            Ok(Some((Frame::Ack(ack), ACK_LEN)))
        }
        KIND_FIN => {
            if buf.len() < FIN_LEN {
                return Ok(None);
            }
            let fin = Frame::Fin {
                total_frames: u64_at(buf, 2),
                total_bytes: u64_at(buf, 10),
            };
            Ok(Some((fin, FIN_LEN)))
        }
        other => Err(AmstError::MalformedFrame(format!(
            "unknown kind 0x{other:02x}"
        ))),
    }
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data generators
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_parse_incrementally() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&data_header(7, 5));
        wire.extend_from_slice(b"hello");
        let ack = Ack {
            seq: 7,
            cumulative: 8,
            window: 64,
        };
        wire.extend_from_slice(&encode_ack(&ack));
        wire.extend_from_slice(&encode_fin(8, 1234));
        for cut in 0..DATA_HEADER_LEN + 5 {
            assert_eq!(
                parse(&wire[..cut], 1024).expect("prefix"),
                None,
                "prefix {cut}"
            );
        }
        let (f, n) = parse(&wire, 1024).expect("data").expect("complete");
        assert_eq!(
            f,
            Frame::Data {
                seq: 7,
                payload: b"hello"
            }
        );
        let (f, m) = parse(&wire[n..], 1024).expect("ack").expect("complete");
        assert_eq!(f, Frame::Ack(ack));
        let (f, _) = parse(&wire[n + m..], 1024).expect("fin").expect("complete");
        assert_eq!(
            f,
            Frame::Fin {
                total_frames: 8,
                total_bytes: 1234
            }
        );
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert!(matches!(
            parse(&[0x00, 1], 10),
            Err(AmstError::MalformedFrame(_))
        ));
        assert!(matches!(
            parse(&[MAGIC, 9], 10),
            Err(AmstError::MalformedFrame(_))
        ));
        let big = data_header(0, 1 << 30);
        assert!(matches!(
            parse(&big, 1 << 20),
            Err(AmstError::FrameTooLarge { .. })
        ));
        let empty = data_header(0, 0);
        assert!(matches!(
            parse(&empty, 10),
            Err(AmstError::MalformedFrame(_))
        ));
    }
}

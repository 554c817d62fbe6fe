//! Frames on each connection. Every connection carries a sequence of frames:
//!
//! ```text
//! DATA  0xA5 0x01 | seq u64 | len u32 | crc u32 | payload[len]    (v1: no crc)
//! ACK   0xA5 0x02 | seq u64 | cumulative u64 | window u32
//! FIN   0xA5 0x03 | total_frames u64 | total_bytes u64
//! NACK  0xA5 0x04 | seq u64 | crc u32                              (v2 and later)
//! PROBE 0xA5 0x05 | id u64 | len u32 | payload[len]                (v3 only)
//! PROBE_ACK 0xA5 0x06 | id u64 | len u32                           (v3 only)
//! ```
//! A PROBE is not part of the stream: the receiver answers it with a PROBE_ACK on the same
//! connection and discards its payload, so the sender can measure the path before the stream
//! starts. A peer older than v3 never receives one (it does not offer v3 in TLS).
//! All integers little-endian. An ACK names the DATA frame it answers (`seq`, so the sender can
//! time that connection), the next in-order frame (`cumulative`) and the receive window in frames.
//!
//! `crc` is the CRC-32 (IEEE) of `seq | len | payload` as they appear on the wire, computed when
//! the sender takes the bytes in. A receiver that finds it wrong neither acks nor delivers the
//! frame and answers with a NACK that echoes the frame's `seq` and `crc`, and the sender sends
//! its own intact copy again. The echo tells the sender whether the damage spared the header: if
//! `seq` names a frame with another CRC, the sender cannot know which frame was lost and treats
//! the connection as failed, moving all its frames. TLS already
//! rejects damage on the wire; this catches damage above it (the sender's memory, a bug between
//! framing and encryption). A connection speaks the [`Version`] both ends agreed on in TLS.

use crate::{AmstError, Result};

const MAGIC: u8 = 0xA5;
const KIND_DATA: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_FIN: u8 = 3;
const KIND_NACK: u8 = 4;
const KIND_PROBE: u8 = 5;
const KIND_PROBE_ACK: u8 = 6;
/// Bytes before a PROBE payload.
pub const PROBE_HEADER_LEN: usize = 2 + 8 + 4;
/// Length of a PROBE_ACK frame.
pub const PROBE_ACK_LEN: usize = 2 + 8 + 4;
/// Bytes before a DATA payload in the newest version.
pub const DATA_HEADER_LEN: usize = 2 + 8 + 4 + 4;
/// Length of an ACK frame.
pub const ACK_LEN: usize = 2 + 8 + 8 + 4;
/// Length of a FIN frame.
pub const FIN_LEN: usize = 2 + 8 + 8;
/// Length of a NACK frame.
pub const NACK_LEN: usize = 2 + 8 + 4;
/// How many corrupt copies of one frame either end accepts; one more fails the transfer with
/// [`AmstError::FrameCorrupt`]. Random damage almost never hits one frame this often, so a frame
/// that keeps arriving bad is bad where the sender keeps it.
pub const CORRUPT_LIMIT: u32 = 8;

/// The frame format a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// DATA frames without a checksum, no NACK. Peers from before v2 (and the TypeScript
    /// reference path) speak it.
    V1 = 1,
    /// DATA frames carry a CRC-32; a receiver NACKs a frame whose CRC is wrong.
    V2 = 2,
    /// v2, plus PROBE frames that the receiver acknowledges and discards.
    V3 = 3,
}

impl Version {
    /// What this build sends when the peer speaks it too.
    pub const LATEST: Version = Version::V3;

    /// Whether the peer answers PROBE frames.
    pub fn probes(self) -> bool {
        self >= Version::V3
    }

    /// The version a hello's version byte names, if known.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Version::V1),
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }

    /// Bytes before a DATA payload.
    pub fn data_header_len(self) -> usize {
        match self {
            Version::V1 => 2 + 8 + 4,
            Version::V2 | Version::V3 => DATA_HEADER_LEN,
        }
    }
}

/// A parsed frame. DATA borrows its payload from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A piece of the stream.
    Data {
        /// Position in the stream, in frames from 0.
        seq: u64,
        /// The bytes.
        payload: &'a [u8],
        /// The CRC the sender computed (v2), unchecked: the receiver compares it.
        crc: Option<u32>,
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
    /// The receiver got a DATA frame on this connection whose CRC did not match: send it again.
    Nack {
        /// The sequence number the damaged frame carried.
        seq: u64,
        /// The CRC it carried.
        crc: u32,
    },
    /// Path-measurement bytes before the stream (v3): acknowledge and discard.
    Probe {
        /// Names this probe frame in its PROBE_ACK.
        id: u64,
        /// Payload bytes, already skipped.
        len: u32,
    },
    /// The receiver's answer to one PROBE frame (v3).
    ProbeAck {
        /// The PROBE frame answered.
        id: u64,
        /// Its payload length.
        len: u32,
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

/// The CRC a v2 DATA frame carries: over `seq | len | payload`, so a damaged sequence number or
/// length is caught like damaged data.
pub fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&payload_len(payload.len()).to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Writes a DATA header for a payload of `len` bytes in `version`; `crc` is left out of v1.
/// Returns the buffer and how much of it is the header.
pub fn data_header(
    version: Version,
    seq: u64,
    len: usize,
    crc: u32,
) -> ([u8; DATA_HEADER_LEN], usize) {
    let mut h = [0u8; DATA_HEADER_LEN];
    h[0] = MAGIC;
    h[1] = KIND_DATA;
    h[2..10].copy_from_slice(&seq.to_le_bytes());
    h[10..14].copy_from_slice(&payload_len(len).to_le_bytes());
    if version >= Version::V2 {
        h[14..18].copy_from_slice(&crc.to_le_bytes());
    }
    (h, version.data_header_len())
}

/// Payloads are bounded by the configured frame size (≤ 16 MiB), so this never truncates.
#[allow(clippy::cast_possible_truncation)]
fn payload_len(len: usize) -> u32 {
    len as u32
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

/// Encodes a NACK (v2 only), echoing the damaged frame's `seq` and `crc`.
pub fn encode_nack(seq: u64, crc: u32) -> [u8; NACK_LEN] {
    let mut b = [0u8; NACK_LEN];
    b[0] = MAGIC;
    b[1] = KIND_NACK;
    b[2..10].copy_from_slice(&seq.to_le_bytes());
    b[10..14].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Writes a PROBE header for `len` payload bytes (v3 only; the payload's content is ignored).
pub fn probe_header(id: u64, len: usize) -> [u8; PROBE_HEADER_LEN] {
    let mut h = [0u8; PROBE_HEADER_LEN];
    h[0] = MAGIC;
    h[1] = KIND_PROBE;
    h[2..10].copy_from_slice(&id.to_le_bytes());
    h[10..14].copy_from_slice(&payload_len(len).to_le_bytes());
    h
}

/// Encodes a PROBE_ACK (v3 only).
pub fn encode_probe_ack(id: u64, len: u32) -> [u8; PROBE_ACK_LEN] {
    let mut b = [0u8; PROBE_ACK_LEN];
    b[0] = MAGIC;
    b[1] = KIND_PROBE_ACK;
    b[2..10].copy_from_slice(&id.to_le_bytes());
    b[10..14].copy_from_slice(&len.to_le_bytes());
    b
}

/// How many more bytes to read so that the frame at the start of `buf` is complete: the rest
/// of a DATA or PROBE header, then the rest of its payload once the header says how long it
/// is. A reader that reads exactly this much holds each frame alone in its buffer, so a DATA
/// payload can be kept without a copy. Only a hint: with too few bytes for the kind, it counts
/// a DATA header, and a wrong guess only means `parse` asks for more.
pub fn bytes_wanted(buf: &[u8], version: Version) -> usize {
    let (header, len_at) = match buf.get(1) {
        Some(&KIND_PROBE) => (PROBE_HEADER_LEN, 10),
        Some(&KIND_ACK) => (ACK_LEN, 0),
        Some(&KIND_FIN) => (FIN_LEN, 0),
        Some(&KIND_NACK | &KIND_PROBE_ACK) => (NACK_LEN, 0),
        _ => (version.data_header_len(), 10),
    };
    if buf.len() < header || len_at == 0 {
        return header.saturating_sub(buf.len()).max(1);
    }
    let total = header + u32_at(buf, len_at) as usize;
    total.saturating_sub(buf.len()).max(1)
}

/// Parses one frame of `version` from the start of `buf`. `Ok(None)` means incomplete: read
/// more. Payloads over `max_payload` are refused from the header alone, before buffering them.
pub fn parse(
    buf: &[u8],
    version: Version,
    max_payload: usize,
) -> Result<Option<(Frame<'_>, usize)>> {
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
            let header = version.data_header_len();
            if buf.len() < header {
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
            let crc = (version >= Version::V2).then(|| u32_at(buf, 14));
            let Some(payload) = buf.get(header..header + len) else {
                return Ok(None);
            };
            Ok(Some((Frame::Data { seq, payload, crc }, header + len)))
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
        KIND_NACK if version >= Version::V2 => {
            if buf.len() < NACK_LEN {
                return Ok(None);
            }
            let nack = Frame::Nack {
                seq: u64_at(buf, 2),
                crc: u32_at(buf, 10),
            };
            Ok(Some((nack, NACK_LEN)))
        }
        KIND_PROBE if version.probes() => {
            if buf.len() < PROBE_HEADER_LEN {
                return Ok(None);
            }
            let (id, len) = (u64_at(buf, 2), u32_at(buf, 10));
            let total = PROBE_HEADER_LEN + len as usize;
            if len as usize > max_payload {
                return Err(AmstError::FrameTooLarge {
                    len: len as usize,
                    limit: max_payload,
                });
            }
            if buf.len() < total {
                return Ok(None);
            }
            Ok(Some((Frame::Probe { id, len }, total)))
        }
        KIND_PROBE_ACK if version.probes() => {
            if buf.len() < PROBE_ACK_LEN {
                return Ok(None);
            }
            let ack = Frame::ProbeAck {
                id: u64_at(buf, 2),
                len: u32_at(buf, 10),
            };
            Ok(Some((ack, PROBE_ACK_LEN)))
        }
        other => Err(AmstError::MalformedFrame(format!(
            "unknown kind 0x{other:02x} in v{}",
            version as u8
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

    fn data(version: Version, seq: u64, payload: &[u8]) -> Vec<u8> {
        let (h, n) = data_header(version, seq, payload.len(), crc(seq, payload));
        let mut wire = h[..n].to_vec();
        wire.extend_from_slice(payload);
        wire
    }

    #[test]
    fn frames_round_trip_and_parse_incrementally() {
        let mut wire = data(Version::V2, 7, b"hello");
        let ack = Ack {
            seq: 7,
            cumulative: 8,
            window: 64,
        };
        wire.extend_from_slice(&encode_ack(&ack));
        wire.extend_from_slice(&encode_fin(8, 1234));
        wire.extend_from_slice(&encode_nack(5, 0xdead_beef));
        for cut in 0..DATA_HEADER_LEN + 5 {
            assert_eq!(
                parse(&wire[..cut], Version::V2, 1024).expect("prefix"),
                None,
                "prefix {cut}"
            );
        }
        let (f, n) = parse(&wire, Version::V2, 1024)
            .expect("data")
            .expect("complete");
        assert_eq!(
            f,
            Frame::Data {
                seq: 7,
                payload: b"hello",
                crc: Some(crc(7, b"hello")),
            }
        );
        let mut at = n;
        let (f, m) = parse(&wire[at..], Version::V2, 1024)
            .expect("ack")
            .expect("complete");
        assert_eq!(f, Frame::Ack(ack));
        at += m;
        let (f, m) = parse(&wire[at..], Version::V2, 1024)
            .expect("fin")
            .expect("complete");
        assert_eq!(
            f,
            Frame::Fin {
                total_frames: 8,
                total_bytes: 1234
            }
        );
        at += m;
        let (f, m) = parse(&wire[at..], Version::V2, 1024)
            .expect("nack")
            .expect("complete");
        assert_eq!(
            f,
            Frame::Nack {
                seq: 5,
                crc: 0xdead_beef
            }
        );
        assert_eq!(at + m, wire.len());
    }

    #[test]
    fn bytes_wanted_reads_each_frame_to_its_end() {
        for version in [Version::V1, Version::V2, Version::V3] {
            let mut wire = data(version, 9, &[7u8; 1000]);
            let first = wire.len();
            wire.extend_from_slice(&encode_fin(10, 1000));
            let mut at = 0;
            let mut reads = 0;
            while at < first {
                at += bytes_wanted(&wire[..at], version);
                reads += 1;
            }
            assert_eq!((at, reads), (first, 2), "{version:?}");
            let fin = &wire[first..];
            assert_eq!(bytes_wanted(&fin[..3], version), FIN_LEN - 3);
        }
        let probe = probe_header(1, 100);
        assert_eq!(bytes_wanted(&probe, Version::V3), 100);
    }

    #[test]
    fn v1_data_has_no_crc_and_no_nack() {
        let wire = data(Version::V1, 3, b"old peer");
        assert_eq!(wire.len(), 14 + 8);
        let (f, n) = parse(&wire, Version::V1, 1024)
            .expect("data")
            .expect("complete");
        assert_eq!(
            f,
            Frame::Data {
                seq: 3,
                payload: b"old peer",
                crc: None,
            }
        );
        assert_eq!(n, wire.len());
        assert!(matches!(
            parse(&encode_nack(3, 0), Version::V1, 1024),
            Err(AmstError::MalformedFrame(_))
        ));
    }

    #[test]
    fn probes_round_trip_in_v3_and_are_refused_before() {
        let mut wire = probe_header(4, 3).to_vec();
        wire.extend_from_slice(b"xyz");
        wire.extend_from_slice(&encode_probe_ack(4, 3));
        for cut in 0..PROBE_HEADER_LEN + 3 {
            assert_eq!(
                parse(&wire[..cut], Version::V3, 1024).expect("prefix"),
                None
            );
        }
        let (f, n) = parse(&wire, Version::V3, 1024)
            .expect("probe")
            .expect("complete");
        assert_eq!(
            (f, n),
            (Frame::Probe { id: 4, len: 3 }, PROBE_HEADER_LEN + 3)
        );
        let (f, m) = parse(&wire[n..], Version::V3, 1024)
            .expect("ack")
            .expect("complete");
        assert_eq!(f, Frame::ProbeAck { id: 4, len: 3 });
        assert_eq!(n + m, wire.len());
        assert!(matches!(
            parse(&probe_header(1, 1 << 20), Version::V3, 1024),
            Err(AmstError::FrameTooLarge { .. })
        ));
        for old in [Version::V1, Version::V2] {
            assert!(matches!(
                parse(&wire, old, 1024),
                Err(AmstError::MalformedFrame(_))
            ));
            assert!(matches!(
                parse(&wire[n..], old, 1024),
                Err(AmstError::MalformedFrame(_))
            ));
        }
    }

    #[test]
    fn the_crc_covers_sequence_length_and_payload() {
        let payload = vec![0x5au8; 4096];
        let good = crc(9, &payload);
        assert_ne!(crc(8, &payload), good, "another seq");
        assert_ne!(crc(9, &payload[..4095]), good, "another length");
        for bit in [0, 7, 4096 * 8 - 1] {
            let mut bad = payload.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(crc(9, &bad), good, "bit {bit}");
        }
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert!(matches!(
            parse(&[0x00, 1], Version::V2, 10),
            Err(AmstError::MalformedFrame(_))
        ));
        assert!(matches!(
            parse(&[MAGIC, 9], Version::V2, 10),
            Err(AmstError::MalformedFrame(_))
        ));
        let (big, n) = data_header(Version::V2, 0, 1 << 30, 0);
        assert!(matches!(
            parse(&big[..n], Version::V2, 1 << 20),
            Err(AmstError::FrameTooLarge { .. })
        ));
        let (empty, n) = data_header(Version::V2, 0, 0, 0);
        assert!(matches!(
            parse(&empty[..n], Version::V2, 10),
            Err(AmstError::MalformedFrame(_))
        ));
    }
}

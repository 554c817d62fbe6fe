//! The compressed-chunk frame: one self-describing unit, used on the wire and in the store.
//!
//! ```text
//! magic 0xDC | codec u8 | raw_len u32 LE | payload_len u32 LE | payload
//! ```

use crate::codec::{decompress_into, Codec, CodecLevel};
use crate::{HdeError, Result};

/// The first byte of every frame; catches a stream that is out of step early.
pub const MAGIC: u8 = 0xDC;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 10;
/// The largest raw chunk a frame may declare: FastCDC's maximum chunk size.
pub const MAX_RAW_LEN: usize = 16 * 1024 * 1024;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// How the payload is coded.
    pub codec: Codec,
    /// The chunk's length once decoded.
    pub raw_len: usize,
    /// The payload's length on the wire.
    pub payload_len: usize,
}

impl FrameHeader {
    /// The whole frame's length.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }
}

/// Appends a frame for `raw` to `out`, falling back to [`Codec::None`] when compression does
/// not shrink the chunk (random data would otherwise grow). Returns the frame's length.
pub fn encode_into(raw: &[u8], level: CodecLevel, out: &mut Vec<u8>) -> Result<usize> {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    level.compress_into(raw, out)?;
    let mut codec = level.codec();
    if out.len() - start - HEADER_LEN >= raw.len() && codec != Codec::None {
        out.truncate(start + HEADER_LEN);
        out.extend_from_slice(raw);
        codec = Codec::None;
    }
    let payload_len = out.len() - start - HEADER_LEN;
    write_header(
        &mut out[start..start + HEADER_LEN],
        codec,
        raw.len(),
        payload_len,
    )?;
    Ok(out.len() - start)
}

fn write_header(h: &mut [u8], codec: Codec, raw_len: usize, payload_len: usize) -> Result<()> {
    let raw = u32::try_from(raw_len).map_err(|_| HdeError::param("raw_len", "over 4 GiB"))?;
    let payload =
        u32::try_from(payload_len).map_err(|_| HdeError::param("payload_len", "over 4 GiB"))?;
    h[0] = MAGIC;
    h[1] = codec.id();
    h[2..6].copy_from_slice(&raw.to_le_bytes());
    h[6..10].copy_from_slice(&payload.to_le_bytes());
    Ok(())
}

/// Parses a frame header from the start of `buf`, checking magic, codec and limits.
pub fn parse_header(buf: &[u8]) -> Result<FrameHeader> {
    if buf.len() < HEADER_LEN {
        return Err(HdeError::Truncated {
            what: "frame header",
            needed: HEADER_LEN,
            available: buf.len(),
        });
    }
    if buf[0] != MAGIC {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!("bad magic 0x{:02x}", buf[0]),
        });
    }
    let codec = Codec::from_id(buf[1])?;
    let raw_len = u32_at(buf, 2) as usize;
    let payload_len = u32_at(buf, 6) as usize;
    if raw_len > MAX_RAW_LEN {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!("raw length {raw_len} exceeds the {MAX_RAW_LEN}-byte limit"),
        });
    }
    if codec == Codec::None && payload_len != raw_len {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!("stored frame with payload {payload_len} != raw {raw_len}"),
        });
    }
    if payload_len > MAX_RAW_LEN + MAX_RAW_LEN / 8 {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!("payload length {payload_len} is implausible"),
        });
    }
    Ok(FrameHeader {
        codec,
        raw_len,
        payload_len,
    })
}

/// Decodes one whole frame (exactly `buf`, no trailing bytes) into `out`.
pub fn decode_into(buf: &[u8], out: &mut Vec<u8>) -> Result<FrameHeader> {
    let header = parse_header(buf)?;
    let payload = payload_of(buf, &header)?;
    if buf.len() > header.frame_len() {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!("{} trailing bytes", buf.len() - header.frame_len()),
        });
    }
    decompress_into(header.codec, payload, header.raw_len, out)?;
    Ok(header)
}

/// The payload slice of a frame whose header was parsed from `buf`.
pub fn payload_of<'a>(buf: &'a [u8], header: &FrameHeader) -> Result<&'a [u8]> {
    buf.get(HEADER_LEN..header.frame_len())
        .ok_or(HdeError::Truncated {
            what: "frame payload",
            needed: header.frame_len(),
            available: buf.len(),
        })
}

pub(crate) fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data generators
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..100_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect();
        for codec in [Codec::None, Codec::Lz4, Codec::Zstd, Codec::Deflate] {
            let mut frame = Vec::new();
            encode_into(&raw, CodecLevel::fast(codec), &mut frame).expect("encode");
            let mut out = Vec::new();
            let h = decode_into(&frame, &mut out).expect("decode");
            assert_eq!(out, raw, "{codec:?}");
            assert_eq!(h.raw_len, raw.len());
            if codec != Codec::None {
                assert!(
                    frame.len() < raw.len() / 2,
                    "{codec:?} should compress this"
                );
            }
        }
    }

    #[test]
    fn incompressible_data_is_stored() {
        let raw: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut frame = Vec::new();
        encode_into(&raw, CodecLevel::fast(Codec::Zstd), &mut frame).expect("encode");
        assert!(frame.len() <= raw.len() + HEADER_LEN);
    }

    #[test]
    fn bad_frames_get_typed_errors() {
        let mut frame = Vec::new();
        encode_into(
            b"hello hello hello hello",
            CodecLevel::fast(Codec::Lz4),
            &mut frame,
        )
        .expect("encode");
        let mut out = Vec::new();
        let truncated = decode_into(&frame[..frame.len() - 1], &mut out);
        assert!(
            matches!(truncated, Err(HdeError::Truncated { .. })),
            "{truncated:?}"
        );
        let mut bad_codec = frame.clone();
        bad_codec[1] = 9;
        assert!(matches!(
            decode_into(&bad_codec, &mut out),
            Err(HdeError::UnknownCodec(9))
        ));
        let mut bad_magic = frame.clone();
        bad_magic[0] = 0;
        assert!(matches!(
            decode_into(&bad_magic, &mut out),
            Err(HdeError::Malformed { .. })
        ));
        let mut huge = frame.clone();
        huge[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_into(&huge, &mut out),
            Err(HdeError::Malformed { .. })
        ));
        let mut lying = frame.clone();
        lying[2] = lying[2].wrapping_add(1);
        assert!(decode_into(&lying, &mut out).is_err());
        assert!(matches!(
            CodecLevel::new(Codec::Zstd, 30),
            Err(HdeError::InvalidParam { field: "level", .. })
        ));
        assert!(matches!(
            Codec::from_name("brotli"),
            Err(HdeError::InvalidParam { field: "codec", .. })
        ));
    }
}

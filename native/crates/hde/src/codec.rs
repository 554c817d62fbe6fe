//! Compression codecs. Each frame records which one it used, so a receiver needs no agreement.

use std::cell::RefCell;
use std::io::{Read, Write};

use crate::{HdeError, Result};

thread_local! {
    // zstd contexts are large and slow to create; one per thread serves every chunk.
    static ZSTD_CCTX: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A compression codec, identified on the wire by one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Stored as is. Chosen automatically when compressing would not shrink a chunk.
    None,
    /// LZ4 block format (`lz4_flex`): the cheapest CPU per byte.
    Lz4,
    /// Zstandard at a given level; negative levels are zstd's fast modes.
    Zstd,
    /// Raw DEFLATE: what the pure-JS path can produce with `node:zlib`.
    Deflate,
}

impl Codec {
    /// The byte that names this codec in a frame.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Lz4 => 1,
            Codec::Zstd => 2,
            Codec::Deflate => 3,
        }
    }

    /// The codec a frame byte names.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Lz4),
            2 => Ok(Codec::Zstd),
            3 => Ok(Codec::Deflate),
            other => Err(HdeError::UnknownCodec(other)),
        }
    }

    /// The name used in configuration and the JS API.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
            Codec::Deflate => "deflate",
        }
    }

    /// The codec a name selects.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Codec::None),
            "lz4" => Ok(Codec::Lz4),
            "zstd" => Ok(Codec::Zstd),
            "deflate" => Ok(Codec::Deflate),
            other => Err(HdeError::param(
                "codec",
                format!("unknown codec `{other}`; expected none, lz4, zstd or deflate"),
            )),
        }
    }
}

/// A codec with its level, validated against the codec's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecLevel {
    codec: Codec,
    level: i32,
}

impl CodecLevel {
    /// zstd: -7..=19 (negative are the fast modes); deflate: 0..=9; lz4 and none: 0 only.
    pub fn new(codec: Codec, level: i32) -> Result<Self> {
        let (lo, hi) = match codec {
            Codec::Zstd => (-7, 19),
            Codec::Deflate => (0, 9),
            Codec::Lz4 | Codec::None => (0, 0),
        };
        if level < lo || level > hi {
            return Err(HdeError::param(
                "level",
                format!("{level} is outside {lo}..={hi} for {}", codec.name()),
            ));
        }
        Ok(CodecLevel { codec, level })
    }

    /// The codec's usual fast setting: zstd 1, deflate 1.
    pub fn fast(codec: Codec) -> Self {
        let level = match codec {
            Codec::Zstd | Codec::Deflate => 1,
            Codec::Lz4 | Codec::None => 0,
        };
        CodecLevel { codec, level }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The level.
    pub fn level(&self) -> i32 {
        self.level
    }

    /// Appends the compressed form of `raw` to `out`.
    pub fn compress_into(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self.codec {
            Codec::None => out.extend_from_slice(raw),
            Codec::Lz4 => {
                let start = out.len();
                out.resize(
                    start + lz4_flex::block::get_maximum_output_size(raw.len()),
                    0,
                );
                let n = lz4_flex::block::compress_into(raw, &mut out[start..])
                    .map_err(|e| codec_err(Codec::Lz4, e))?;
                out.truncate(start + n);
            }
            Codec::Zstd => {
                let start = out.len();
                out.resize(start + zstd::zstd_safe::compress_bound(raw.len()), 0);
                let n = ZSTD_CCTX
                    .with(|cell| {
                        let mut cell = cell.borrow_mut();
                        let cctx = match &mut *cell {
                            Some(c) => c,
                            empty => empty.insert(zstd::bulk::Compressor::new(self.level)?),
                        };
                        cctx.set_compression_level(self.level)?;
                        cctx.compress_to_buffer(raw, &mut out[start..])
                    })
                    .map_err(|e| codec_err(Codec::Zstd, e))?;
                out.truncate(start + n);
            }
            Codec::Deflate => {
                let level = flate2::Compression::new(self.level.unsigned_abs());
                let mut enc = flate2::write::DeflateEncoder::new(out, level);
                enc.write_all(raw)
                    .map_err(|e| codec_err(Codec::Deflate, e))?;
                enc.finish().map_err(|e| codec_err(Codec::Deflate, e))?;
            }
        }
        Ok(())
    }
}

/// Decompresses `payload` into `out`, which must end up exactly `raw_len` bytes long.
pub fn decompress_into(
    codec: Codec,
    payload: &[u8],
    raw_len: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    match codec {
        Codec::None => out.extend_from_slice(payload),
        Codec::Lz4 => {
            out.resize(raw_len, 0);
            let n =
                lz4_flex::block::decompress_into(payload, out).map_err(|e| codec_err(codec, e))?;
            out.truncate(n);
        }
        Codec::Zstd => {
            out.reserve(raw_len);
            ZSTD_DCTX
                .with(|cell| {
                    let mut cell = cell.borrow_mut();
                    let dctx = match &mut *cell {
                        Some(d) => d,
                        empty => empty.insert(zstd::bulk::Decompressor::new()?),
                    };
                    dctx.decompress_to_buffer(payload, out)
                })
                .map_err(|e| codec_err(codec, e))?;
        }
        Codec::Deflate => {
            out.reserve(raw_len);
            // Bound the output: a hostile payload must not inflate past the declared length.
            flate2::read::DeflateDecoder::new(payload)
                .take(raw_len as u64 + 1)
                .read_to_end(out)
                .map_err(|e| codec_err(codec, e))?;
        }
    }
    if out.len() != raw_len {
        return Err(HdeError::Malformed {
            what: "frame",
            reason: format!(
                "{} payload decodes to {} bytes, header says {raw_len}",
                codec.name(),
                out.len()
            ),
        });
    }
    Ok(())
}

fn codec_err(codec: Codec, e: impl std::fmt::Display) -> HdeError {
    HdeError::Codec {
        codec: codec.name(),
        reason: e.to_string(),
    }
}

/// Compresses `raw` with zstd, using `base` (the previous version of the same page) as a raw
/// content dictionary, so a page that changed a little costs a few bytes.
pub fn zstd_delta(raw: &[u8], base: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::Compressor::with_dictionary(level, base)
        .and_then(|mut c| c.compress(raw))
        .map_err(|e| codec_err(Codec::Zstd, e))
}

/// Inverts [`zstd_delta`]; the output must be exactly `raw_len` bytes.
pub fn zstd_undelta(delta: &[u8], base: &[u8], raw_len: usize, out: &mut Vec<u8>) -> Result<()> {
    let raw = zstd::bulk::Decompressor::with_dictionary(base)
        .and_then(|mut d| d.decompress(delta, raw_len))
        .map_err(|e| codec_err(Codec::Zstd, e))?;
    if raw.len() != raw_len {
        return Err(HdeError::Malformed {
            what: "delta unit",
            reason: format!("decodes to {} bytes, the op says {raw_len}", raw.len()),
        });
    }
    out.clear();
    out.extend_from_slice(&raw);
    Ok(())
}

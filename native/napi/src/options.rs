//! JS-facing option objects and their checked conversion into core types. Range errors name the
//! field as JS spells it.

use dwcp_hde::{ChunkerParams, Codec, CodecLevel, HdeError, Normalization};
use napi_derive::napi;

/// FastCDC sizes in bytes. Omitted fields take the defaults (16 KiB / 64 KiB / 256 KiB, level 1).
#[napi(object)]
#[derive(Clone, Default)]
pub struct BindingChunkerOptions {
    pub min_size: Option<u32>,
    pub avg_size: Option<u32>,
    pub max_size: Option<u32>,
    pub normalization: Option<u32>,
}

impl TryFrom<BindingChunkerOptions> for ChunkerParams {
    type Error = HdeError;

    fn try_from(o: BindingChunkerOptions) -> Result<Self, HdeError> {
        let d = ChunkerParams::default();
        let params = ChunkerParams {
            min_size: o.min_size.map_or(d.min_size, |v| v as usize),
            avg_size: o.avg_size.map_or(d.avg_size, |v| v as usize),
            max_size: o.max_size.map_or(d.max_size, |v| v as usize),
            normalization: match o.normalization {
                Some(level) => Normalization::from_level(level)?,
                None => d.normalization,
            },
        };
        params.validate()?;
        Ok(params)
    }
}

/// A codec by name (`none`, `lz4`, `zstd`, `deflate`) and an optional level.
#[napi(object)]
#[derive(Clone, Default)]
pub struct BindingCodecOptions {
    pub codec: Option<String>,
    pub level: Option<i32>,
}

impl TryFrom<BindingCodecOptions> for CodecLevel {
    type Error = HdeError;

    fn try_from(o: BindingCodecOptions) -> Result<Self, HdeError> {
        let codec = Codec::from_name(o.codec.as_deref().unwrap_or("zstd"))?;
        match o.level {
            Some(level) => CodecLevel::new(codec, level),
            None => Ok(CodecLevel::fast(codec)),
        }
    }
}

/// Converts a JS byte count, which arrives as a double, to `u64`, naming the field when bad.
pub fn byte_count(field: &'static str, value: f64) -> Result<u64, HdeError> {
    if !(value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value <= 2f64.powi(53)) {
        return Err(HdeError::InvalidParam {
            field,
            reason: format!("{value} is not a positive whole number of bytes"),
        });
    }
    // Checked above: a whole number in 1..=2^53, exactly representable as u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(value as u64)
}

//! Chunking parameters and their validation.

use fastcdc::v2020;

use crate::{HdeError, Result};

/// How strongly FastCDC pulls chunk sizes toward the average (FastCDC paper §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// No normalization: the widest spread of sizes.
    Level0,
    /// The default: a few chunks outside the desired range.
    Level1,
    /// Most chunks near the average.
    Level2,
    /// Nearly all chunks near the average.
    Level3,
}

impl Normalization {
    /// Parses 0..=3.
    pub fn from_level(level: u32) -> Result<Self> {
        match level {
            0 => Ok(Normalization::Level0),
            1 => Ok(Normalization::Level1),
            2 => Ok(Normalization::Level2),
            3 => Ok(Normalization::Level3),
            _ => Err(HdeError::param(
                "normalization",
                format!("{level} is not 0, 1, 2 or 3"),
            )),
        }
    }

    pub(crate) fn to_fastcdc(self) -> v2020::Normalization {
        match self {
            Normalization::Level0 => v2020::Normalization::Level0,
            Normalization::Level1 => v2020::Normalization::Level1,
            Normalization::Level2 => v2020::Normalization::Level2,
            Normalization::Level3 => v2020::Normalization::Level3,
        }
    }
}

/// Minimum, average and maximum chunk sizes in bytes, plus the normalization level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    /// No chunk is shorter, except the last one of a stream.
    pub min_size: usize,
    /// The target size.
    pub avg_size: usize,
    /// No chunk is longer.
    pub max_size: usize,
    /// How tightly sizes cluster around `avg_size`.
    pub normalization: Normalization,
}

impl Default for ChunkerParams {
    /// 16 KiB / 64 KiB / 256 KiB: large enough that per-chunk costs (hash lookup, frame header,
    /// have/want round trip) stay small against a 1 Gbit/s link, small enough to find repeats.
    fn default() -> Self {
        ChunkerParams {
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
            normalization: Normalization::Level1,
        }
    }
}

impl ChunkerParams {
    /// Checks the ranges FastCDC supports and that min ≤ avg ≤ max, naming the bad field.
    pub fn validate(&self) -> Result<()> {
        check_range(
            "minSize",
            self.min_size,
            v2020::MINIMUM_MIN,
            v2020::MINIMUM_MAX,
        )?;
        check_range(
            "avgSize",
            self.avg_size,
            v2020::AVERAGE_MIN,
            v2020::AVERAGE_MAX,
        )?;
        check_range(
            "maxSize",
            self.max_size,
            v2020::MAXIMUM_MIN,
            v2020::MAXIMUM_MAX,
        )?;
        if self.min_size > self.avg_size {
            return Err(HdeError::param(
                "minSize",
                format!(
                    "{} is greater than avgSize {}",
                    self.min_size, self.avg_size
                ),
            ));
        }
        if self.avg_size > self.max_size {
            return Err(HdeError::param(
                "avgSize",
                format!(
                    "{} is greater than maxSize {}",
                    self.avg_size, self.max_size
                ),
            ));
        }
        Ok(())
    }

    /// The strict and relaxed cut masks for these sizes.
    pub(crate) fn masks(&self) -> (u64, u64) {
        v2020::select_masks(self.avg_size, self.normalization.to_fastcdc())
    }
}

fn check_range(field: &'static str, value: usize, min: usize, max: usize) -> Result<()> {
    if value < min || value > max {
        return Err(HdeError::param(
            field,
            format!("{value} is outside {min}..={max}"),
        ));
    }
    // The crate's two-bytes-per-step scan silently shifts odd boundaries by one byte.
    if !value.is_multiple_of(2) {
        return Err(HdeError::param(field, format!("{value} must be even")));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data generators
mod tests {
    use super::*;

    fn field_of(p: ChunkerParams) -> &'static str {
        match p.validate() {
            Err(HdeError::InvalidParam { field, .. }) => field,
            other => panic!("expected InvalidParam, got {other:?}"),
        }
    }

    #[test]
    fn default_is_valid() {
        ChunkerParams::default().validate().expect("default params");
    }

    #[test]
    fn bad_params_name_their_field() {
        let d = ChunkerParams::default();
        assert_eq!(field_of(ChunkerParams { min_size: 0, ..d }), "minSize");
        assert_eq!(field_of(ChunkerParams { avg_size: 0, ..d }), "avgSize");
        assert_eq!(field_of(ChunkerParams { max_size: 0, ..d }), "maxSize");
        assert_eq!(
            field_of(ChunkerParams {
                min_size: 128 * 1024,
                ..d
            }),
            "minSize"
        );
        assert_eq!(
            field_of(ChunkerParams {
                avg_size: 512 * 1024,
                ..d
            }),
            "avgSize"
        );
        assert_eq!(
            field_of(ChunkerParams {
                min_size: 16385,
                ..d
            }),
            "minSize"
        );
        assert!(Normalization::from_level(4).is_err());
    }
}

//! A bottleneck rate that changes over time (`--rate-trace`): a schedule of `seconds Mbit/s`
//! lines, the format of the throughput traces under bench/traces/ (and of Mahimahi's traces once
//! cooked into rates), so a test can change the link under a running transfer.
//!
//! Each value holds from its timestamp until the next one; the last value holds for ever (the
//! schedule does not loop). Times count from the first line's timestamp, which is the moment the
//! emulator starts.

use std::time::Duration;

/// A parsed rate schedule: at least one step, times strictly increasing from zero.
#[derive(Debug, Clone, PartialEq)]
pub struct RateSchedule {
    /// (offset from the first line, rate in bits/s), in time order.
    steps: Vec<(Duration, u64)>,
}

/// A line of the schedule that could not be used, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The highest rate a step may ask for, the same bound as `--rate-mbit`.
const MAX_MBIT: f64 = 10_000_000.0;

impl RateSchedule {
    /// Parses `seconds Mbit/s` lines (whitespace between; blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut steps: Vec<(Duration, u64)> = Vec::new();
        let mut first_t: Option<f64> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: String| ParseError {
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [t, mbit] = fields[..] else {
                return Err(bad(format!("expected \"seconds Mbit/s\", got \"{line}\"")));
            };
            let (Ok(t), Ok(mbit)) = (t.parse::<f64>(), mbit.parse::<f64>()) else {
                return Err(bad(format!("expected \"seconds Mbit/s\", got \"{line}\"")));
            };
            if !(t.is_finite() && t >= 0.0) {
                return Err(bad(format!("time must be a finite number >= 0, got {t}")));
            }
            // A GCRA bucket at rate 0 never releases anything; an outage is not modelled.
            if !(mbit.is_finite() && mbit > 0.0 && mbit <= MAX_MBIT) {
                return Err(bad(format!(
                    "rate must be above 0 and at most {MAX_MBIT} Mbit/s, got {mbit}"
                )));
            }
            let t0 = *first_t.get_or_insert(t);
            let at = Duration::from_secs_f64(t - t0);
            if let Some(&(prev, _)) = steps.last()
                && at <= prev
            {
                return Err(bad(format!(
                    "time must increase, got {t} after {}",
                    (prev.as_secs_f64() + t0)
                )));
            }
            steps.push((at, (mbit * 1e6).round() as u64));
        }
        if steps.is_empty() {
            return Err(ParseError {
                line: 0,
                reason: "no \"seconds Mbit/s\" lines".into(),
            });
        }
        Ok(Self { steps })
    }

    // --- getters ---

    /// The rate in bits/s at `elapsed` since the start, and when (since the start) it next
    /// changes; `None` once the last step holds.
    pub fn rate_at(&self, elapsed: Duration) -> (u64, Option<Duration>) {
        // The first step starts at zero, so there is always one at or before `elapsed`.
        let idx = self.steps.partition_point(|&(at, _)| at <= elapsed) - 1;
        (
            self.steps[idx].1,
            self.steps.get(idx + 1).map(|&(at, _)| at),
        )
    }

    /// The rate of the first step, in bits/s.
    pub fn first_rate_bps(&self) -> u64 {
        self.steps[0].1
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Offset of the last step from the first.
    pub fn last_change(&self) -> Duration {
        self.steps[self.steps.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_lines_and_holds_the_last_value() {
        let s = RateSchedule::parse("# a comment\n\n3.0\t80\n5.5  40\n6 120.5\n").unwrap();
        assert_eq!(s.len(), 3);
        let secs = Duration::from_secs_f64;
        // Times count from the first line's 3.0.
        assert_eq!(s.rate_at(secs(0.0)), (80_000_000, Some(secs(2.5))));
        assert_eq!(s.rate_at(secs(2.49)), (80_000_000, Some(secs(2.5))));
        assert_eq!(s.rate_at(secs(2.5)), (40_000_000, Some(secs(3.0))));
        assert_eq!(s.rate_at(secs(3.0)), (120_500_000, None));
        assert_eq!(s.rate_at(secs(1e6)), (120_500_000, None));
        assert_eq!(s.last_change(), secs(3.0));
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        for (text, line, says) in [
            (
                "0 80\n1 fast\n",
                2,
                "expected \"seconds Mbit/s\", got \"1 fast\"",
            ),
            ("0 80\n\n1 40 7\n", 3, "expected \"seconds Mbit/s\""),
            ("0 80\n2 40\n1 20\n", 3, "time must increase, got 1 after 2"),
            ("0 80\n2 40\n2 20\n", 3, "time must increase"),
            ("0 0\n", 1, "rate must be above 0"),
            ("0 -5\n", 1, "rate must be above 0"),
            ("-1 5\n", 1, "time must be a finite number"),
            ("0 inf\n", 1, "rate must be above 0"),
        ] {
            let e = RateSchedule::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(says), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
        let e = RateSchedule::parse("# only a comment\n").unwrap_err();
        assert!(e.reason.contains("no \"seconds Mbit/s\" lines"), "{e}");
    }

    #[test]
    fn reads_the_shipped_fcc_traces() {
        // (The HSDPA set has outages, 0 Mbit/s lines, which the emulator refuses.)
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../traces/fcc/evaluation");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return; // The crate can be built outside the repository.
        };
        let mut read = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let s =
                RateSchedule::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(s.len() > 1, "{}", path.display());
            read += 1;
        }
        assert!(read > 0);
    }
}

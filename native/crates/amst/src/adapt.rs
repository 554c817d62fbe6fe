//! Chooses how many parallel connections to use: add one while aggregate goodput grows by a
//! margin, take it back when it did not, and now and then test whether one fewer does as well.

use std::time::{Duration, Instant};

use crate::{AmstError, Result};

/// Settings of the stream-count controller.
#[derive(Debug, Clone)]
pub struct AdaptConfig {
    /// Never fewer connections.
    pub min: u32,
    /// Never more connections.
    pub max: u32,
    /// Connections at start.
    pub initial: u32,
    /// How long one measurement lasts. A few RTTs at least, so a new connection can ramp up.
    pub epoch: Duration,
    /// Relative goodput gain that justifies a connection (0.1 = 10%).
    pub gain: f64,
    /// Epochs to hold after a rejected probe before probing again.
    pub hold_epochs: u32,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        AdaptConfig {
            min: 1,
            max: 16,
            initial: 2,
            epoch: Duration::from_millis(500),
            gain: 0.1,
            hold_epochs: 6,
        }
    }
}

impl AdaptConfig {
    /// Checks ranges, naming the bad field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, reason: &str| {
            Err(AmstError::InvalidParam {
                field,
                reason: reason.into(),
            })
        };
        if self.min == 0 {
            return bad("minStreams", "must be at least 1");
        }
        if self.max < self.min || self.max > 256 {
            return bad("maxStreams", "must be between minStreams and 256");
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return bad(
                "initialStreams",
                "must be between minStreams and maxStreams",
            );
        }
        if self.epoch < Duration::from_millis(10) {
            return bad("epoch", "must be at least 10 ms");
        }
        if !(self.gain > 0.0 && self.gain < 10.0) {
            return bad("gain", "must be in (0, 10)");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Measuring the current count.
    Measure,
    /// Just added one: skip an epoch while it ramps up, then judge it against `before`.
    Settle {
        before: f64,
    },
    Judge {
        before: f64,
    },
    /// Just removed one: judge whether goodput held within the margin of `before`.
    JudgeFewer {
        before: f64,
    },
    /// Waiting `left` epochs before probing again.
    Hold {
        left: u32,
    },
}

/// The sans-IO controller: feed it the stream's delivered byte count, read the target count.
#[derive(Debug)]
pub struct StreamCountController {
    config: AdaptConfig,
    target: u32,
    phase: Phase,
    epoch_start: Option<(Instant, u64)>,
    last_goodput: f64,
    probes_down: bool,
}

impl StreamCountController {
    /// A controller with validated settings.
    pub fn new(config: AdaptConfig) -> Result<Self> {
        config.validate()?;
        Ok(StreamCountController {
            target: config.initial,
            config,
            phase: Phase::Measure,
            epoch_start: None,
            last_goodput: 0.0,
            probes_down: false,
        })
    }

    /// How many connections to run now.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Goodput in bytes per second over the last finished epoch.
    pub fn last_goodput(&self) -> f64 {
        self.last_goodput
    }

    /// When the current epoch ends.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.epoch_start.map(|(t, _)| t + self.config.epoch)
    }

    /// Reports the total bytes delivered so far. Returns the new target when it changes.
    pub fn handle_progress(&mut self, delivered: u64, now: Instant) -> Option<u32> {
        let Some((start, at_start)) = self.epoch_start else {
            self.epoch_start = Some((now, delivered));
            return None;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.config.epoch {
            return None;
        }
        let goodput = delivered.saturating_sub(at_start) as f64 / elapsed.as_secs_f64();
        self.epoch_start = Some((now, delivered));
        self.last_goodput = goodput;
        let before = self.target;
        self.step(goodput);
        (self.target != before).then_some(self.target)
    }

    fn step(&mut self, goodput: f64) {
        let c = &self.config;
        self.phase = match self.phase {
            Phase::Measure if self.target < c.max => {
                self.target += 1;
                Phase::Settle { before: goodput }
            }
            Phase::Measure => Phase::Hold {
                left: c.hold_epochs,
            },
            Phase::Settle { before } => Phase::Judge { before },
            Phase::Judge { before } => {
                if goodput >= before * (1.0 + c.gain) {
                    Phase::Measure
                } else {
                    self.target -= 1;
                    Phase::Hold {
                        left: c.hold_epochs,
                    }
                }
            }
            Phase::JudgeFewer { before } => {
                if goodput < before * (1.0 - c.gain) {
                    self.target += 1;
                }
                Phase::Hold {
                    left: c.hold_epochs,
                }
            }
            Phase::Hold { left } if left > 1 => Phase::Hold { left: left - 1 },
            Phase::Hold { .. } => {
                // Alternate probes: up to find more goodput, down to shed useless connections.
                self.probes_down = !self.probes_down;
                if self.probes_down && self.target > c.min {
                    self.target -= 1;
                    Phase::JudgeFewer { before: goodput }
                } else {
                    Phase::Measure
                }
            }
        };
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data generators
mod tests {
    use super::*;

    /// Goodput of `n` connections when each gets at most `per_conn` and they share `link`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn run(per_conn: f64, link: f64, epochs: u32) -> Vec<u32> {
        let t0 = Instant::now();
        let mut c = StreamCountController::new(AdaptConfig::default()).expect("config");
        let mut delivered = 0.0;
        let mut now = t0;
        let mut history = Vec::new();
        c.handle_progress(0, now);
        for _ in 0..epochs {
            let rate = (f64::from(c.target()) * per_conn).min(link);
            now += c.config.epoch;
            delivered += rate * c.config.epoch.as_secs_f64();
            c.handle_progress(delivered as u64, now);
            history.push(c.target());
        }
        history
    }

    #[test]
    fn climbs_until_the_link_is_full_then_stays_near() {
        // Each connection is loss-limited to 1.4 MB/s, the link carries 12.5 MB/s: 9 fill it.
        let h = run(1.4e6, 12.5e6, 200);
        let tail = &h[100..];
        assert!(tail.iter().all(|&n| (8..=11).contains(&n)), "{tail:?}");
    }

    #[test]
    fn stays_low_when_one_connection_fills_the_link() {
        let h = run(100e6, 100e6, 100);
        assert!(h[50..].iter().all(|&n| n <= 3), "{h:?}");
        assert!(h[50..].contains(&1) || h[50..].contains(&2));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = StreamCountController::new(AdaptConfig {
            max: 0,
            ..AdaptConfig::default()
        })
        .expect_err("max 0");
        assert!(matches!(
            e,
            AmstError::InvalidParam {
                field: "maxStreams",
                ..
            }
        ));
    }
}

//! A token bucket that holds the sender to an optional rate cap.

use std::time::{Duration, Instant};

/// Paces transmissions to `rate` bytes per second with bursts of up to `burst` bytes.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: Option<u64>,
    burst: u64,
    tokens: f64,
    updated: Option<Instant>,
}

impl Pacer {
    /// A pacer; `None` means uncapped.
    pub fn new(rate: Option<u64>, burst: u64) -> Self {
        Pacer {
            rate,
            burst,
            tokens: burst as f64,
            updated: None,
        }
    }

    /// The cap in bytes per second, if any.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Changes the cap; tokens already earned are kept up to the burst.
    pub fn set_rate(&mut self, rate: Option<u64>) {
        self.rate = rate;
    }

    /// When `len` bytes may go, or `None` for now (uncapped or enough tokens).
    pub fn delay_until(&mut self, len: usize, now: Instant) -> Option<Instant> {
        let rate = self.rate?;
        self.refill(now);
        let need = len as f64 - self.tokens;
        if need <= 0.0 {
            return None;
        }
        Some(now + Duration::from_secs_f64(need / rate as f64))
    }

    /// Spends tokens for `len` bytes sent at `now`.
    pub fn on_sent(&mut self, len: usize, now: Instant) {
        if self.rate.is_some() {
            self.refill(now);
            self.tokens -= len as f64;
        }
    }

    fn refill(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        if let Some(last) = self.updated {
            let earned = now.saturating_duration_since(last).as_secs_f64() * rate as f64;
            self.tokens = (self.tokens + earned).min(self.burst as f64);
        }
        self.updated = Some(now);
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data generators
mod tests {
    use super::*;

    #[test]
    fn holds_to_the_rate_after_the_burst() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Some(1_000_000), 100_000);
        let mut now = t0;
        let mut sent = 0usize;
        while now < t0 + Duration::from_secs(2) {
            match p.delay_until(10_000, now) {
                Some(at) => now = at,
                None => {
                    p.on_sent(10_000, now);
                    sent += 10_000;
                }
            }
        }
        // 100 kB burst + 2 s at 1 MB/s, within one frame.
        assert!((2_090_000..=2_110_000).contains(&sent), "{sent}");
        assert_eq!(Pacer::new(None, 0).delay_until(1 << 20, t0), None);
    }
}

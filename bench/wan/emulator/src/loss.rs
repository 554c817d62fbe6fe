//! Random packet loss on the emulated path.
//!
//! Bernoulli (independent per packet), like netem's `loss random`. Real WAN loss is burstier; the
//! scenarios only need an average rate, and independent loss is the case congestion control
//! models (Mathis, BBR's loss threshold) are stated for, so results stay comparable.

use rand::RngExt;

/// Drops each packet independently with a fixed probability.
#[derive(Debug, Clone, Copy)]
pub struct LossModel {
    probability: f64,
}

impl LossModel {
    /// `probability` in `[0, 1]`; the CLI checks the range before we get here.
    pub fn bernoulli(probability: f64) -> Self {
        debug_assert!((0.0..=1.0).contains(&probability));
        Self { probability }
    }

    /// Decides the fate of one packet.
    pub fn should_drop(&self, rng: &mut impl rand::Rng) -> bool {
        // Skip the draw on a lossless path: it is the common case and sits on the hot path.
        self.probability > 0.0 && rng.random_bool(self.probability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn drops(p: f64, n: u32, seed: u64) -> u32 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let loss = LossModel::bernoulli(p);
        (0..n).filter(|_| loss.should_drop(&mut rng)).count() as u32
    }

    #[test]
    fn zero_and_one_are_exact() {
        assert_eq!(drops(0.0, 100_000, 1), 0);
        assert_eq!(drops(1.0, 100_000, 1), 100_000);
    }

    #[test]
    fn rate_matches_probability() {
        // 1% over 1e6 packets: sd = sqrt(n p (1-p)) ~ 99.5, so +-600 is a 6-sigma band.
        let n = drops(0.01, 1_000_000, 42);
        assert!((9_400..=10_600).contains(&n), "{n} drops");
    }

    #[test]
    fn same_seed_same_drops() {
        assert_eq!(drops(0.02, 50_000, 9), drops(0.02, 50_000, 9));
    }
}

//! Propagation delay with jitter: packets wait in a min-heap keyed by release time.
//!
//! Sans-IO: the caller says when a packet is ready (after the bottleneck) and asks, with the current
//! time, for the packets that are due. Jitter reorders packets on a real path only when the path
//! itself reorders, which TCP punishes hard; so by default a packet never leaves before the one
//! ahead of it (netem's behaviour with rate set), and `allow_reorder` lifts that.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::RngExt;
use rand_distr::{Distribution, Normal};

/// Shape of the random part of the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterDist {
    /// Uniform in `[-jitter, +jitter]`: bounded, easy to reason about.
    Uniform,
    /// Normal with standard deviation `jitter`: a long tail, closer to queueing on real paths.
    Normal,
}

/// The delay each packet gets: `base + jitter sample`, never below zero.
#[derive(Debug, Clone, Copy)]
pub struct DelayModel {
    /// Fixed one-way delay.
    pub base: Duration,
    /// Spread of the random part (half-width for uniform, standard deviation for normal).
    pub jitter: Duration,
    /// Which distribution the random part follows.
    pub dist: JitterDist,
    /// Whether a packet may overtake one that arrived before it.
    pub allow_reorder: bool,
}

impl DelayModel {
    /// Draws one packet's delay.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Duration {
        if self.jitter.is_zero() {
            return self.base;
        }
        let j = self.jitter.as_secs_f64();
        let offset = match self.dist {
            JitterDist::Uniform => rng.random_range(-j..=j),
            JitterDist::Normal => Normal::new(0.0, j)
                .expect("jitter is finite and >= 0")
                .sample(rng),
        };
        Duration::from_secs_f64((self.base.as_secs_f64() + offset).max(0.0))
    }
}

/// Packets in flight on the emulated wire, released in order of their release time.
#[derive(Debug)]
pub struct DelayLine<T> {
    model: DelayModel,
    heap: BinaryHeap<Slot<T>>,
    /// Release time of the newest packet, the floor for the next one when reordering is off.
    last_release: Option<Instant>,
    /// Arrival counter: ties in release time leave in arrival order.
    next_seq: u64,
}

impl<T> DelayLine<T> {
    /// An empty line with the given delay model.
    pub fn new(model: DelayModel) -> Self {
        Self {
            model,
            heap: BinaryHeap::new(),
            last_release: None,
            next_seq: 0,
        }
    }

    // --- getters ---

    /// Packets waiting on the line.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    // --- inputs ---

    /// Puts `item`, ready to travel at `ready`, on the line and returns when it will come out.
    pub fn handle_packet(&mut self, ready: Instant, item: T, rng: &mut impl rand::Rng) -> Instant {
        let mut release = ready + self.model.sample(rng);
        if let (false, Some(last)) = (self.model.allow_reorder, self.last_release) {
            release = release.max(last);
        }
        self.last_release = Some(self.last_release.map_or(release, |l| l.max(release)));
        self.heap.push(Slot {
            release,
            seq: self.next_seq,
            item,
        });
        self.next_seq += 1;
        release
    }

    // --- outputs ---

    /// Takes the next packet whose release time is at or before `now`.
    pub fn poll_release(&mut self, now: Instant) -> Option<T> {
        if self.heap.peek()?.release > now {
            return None;
        }
        self.heap.pop().map(|slot| slot.item)
    }

    /// When the next packet falls due, for the caller's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|slot| slot.release)
    }
}

#[derive(Debug)]
struct Slot<T> {
    release: Instant,
    seq: u64,
    item: T,
}

// BinaryHeap is a max-heap; order by reversed (release, seq) so the earliest comes out first.
impl<T> Ord for Slot<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl<T> Eq for Slot<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn model(base_ms: u64, jitter_ms: u64, dist: JitterDist, allow_reorder: bool) -> DelayModel {
        DelayModel {
            base: Duration::from_millis(base_ms),
            jitter: Duration::from_millis(jitter_ms),
            dist,
            allow_reorder,
        }
    }

    #[test]
    fn fixed_delay_releases_exactly_on_time() {
        let mut rng = SmallRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut line = DelayLine::new(model(50, 0, JitterDist::Uniform, false));
        assert_eq!(
            line.handle_packet(t0, 'a', &mut rng),
            t0 + Duration::from_millis(50)
        );
        line.handle_packet(t0 + Duration::from_millis(1), 'b', &mut rng);
        assert_eq!(line.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(line.poll_release(t0 + Duration::from_micros(49_999)), None);
        assert_eq!(line.poll_release(t0 + Duration::from_millis(50)), Some('a'));
        assert_eq!(line.poll_release(t0 + Duration::from_millis(50)), None);
        assert_eq!(line.poll_release(t0 + Duration::from_millis(60)), Some('b'));
        assert_eq!(line.len(), 0);
        assert_eq!(line.poll_timeout(), None);
    }

    #[test]
    fn jitter_without_reorder_keeps_arrival_order() {
        let mut rng = SmallRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut line = DelayLine::new(model(20, 10, JitterDist::Normal, false));
        for i in 0..10_000u32 {
            line.handle_packet(t0 + Duration::from_micros(u64::from(i) * 100), i, &mut rng);
        }
        let out: Vec<u32> =
            std::iter::from_fn(|| line.poll_release(t0 + Duration::from_secs(10))).collect();
        assert_eq!(out, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn jitter_with_reorder_allowed_does_reorder_and_stays_in_bounds() {
        let mut rng = SmallRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut line = DelayLine::new(model(20, 10, JitterDist::Uniform, true));
        let mut releases = Vec::new();
        for i in 0..1000u32 {
            let ready = t0 + Duration::from_micros(u64::from(i) * 100);
            let release = line.handle_packet(ready, i, &mut rng);
            let delay = release - ready;
            assert!(
                delay >= Duration::from_millis(10) && delay <= Duration::from_millis(30),
                "{delay:?}"
            );
            releases.push(release);
        }
        let out: Vec<u32> =
            std::iter::from_fn(|| line.poll_release(t0 + Duration::from_secs(10))).collect();
        assert_ne!(
            out,
            (0..1000).collect::<Vec<_>>(),
            "uniform 10 ms jitter at 100 us spacing must reorder"
        );
        // Released strictly by release time.
        let times: Vec<Instant> = out.iter().map(|&i| releases[i as usize]).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn uniform_jitter_mean_is_base_when_packets_are_sparse() {
        let mut rng = SmallRng::seed_from_u64(3);
        let m = model(50, 10, JitterDist::Uniform, false);
        let n = 20_000;
        let mean = (0..n)
            .map(|_| m.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / f64::from(n);
        assert!((mean - 0.050).abs() < 0.0005, "mean {mean}");
    }

    #[test]
    fn negative_samples_clamp_to_zero_delay() {
        let mut rng = SmallRng::seed_from_u64(5);
        let m = model(1, 50, JitterDist::Normal, true);
        let zeros = (0..10_000).filter(|_| m.sample(&mut rng).is_zero()).count();
        assert!((4_000..6_000).contains(&zeros), "{zeros} of 10000 clamped");
    }
}

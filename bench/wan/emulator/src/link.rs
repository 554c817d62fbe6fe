//! One direction of the emulated path: loss, then the bottleneck (token bucket), then the wire
//! (delay line). Sans-IO, so both the TUN forwarder and the TCP relay drive the same code, and the
//! tests drive it on a virtual clock.
//!
//! The order matters: random loss models corruption on the path and costs no queue space; the
//! bottleneck queue sits in front of the long-haul wire, so queueing delay adds to propagation
//! delay, as on a real access link.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::delay_line::{DelayLine, DelayModel};
use crate::loss::LossModel;
use crate::rate_schedule::RateSchedule;
use crate::token_bucket::TokenBucket;

/// Everything that shapes one direction.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Propagation delay and jitter.
    pub delay: DelayModel,
    /// Probability in `[0, 1]` that a packet is lost.
    pub loss: f64,
    /// Bottleneck rate in bits/s; `None` means uncapped.
    pub rate_bps: Option<u64>,
    /// Token bucket depth in bytes.
    pub burst_bytes: u64,
    /// Drop-tail limit of the bottleneck queue in bytes.
    pub queue_bytes: u64,
}

/// Why a packet did not make it onto the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Random loss.
    Lost,
    /// The bottleneck queue was full.
    QueueFull,
}

/// One direction's pipeline. `P` is the packet (a buffer), handed back on drop so it can be reused.
#[derive(Debug)]
pub struct Link<P> {
    loss: LossModel,
    bucket: Bottleneck,
    line: DelayLine<P>,
    rng: SmallRng,
    in_flight_bytes: u64,
    schedule: Option<Scheduled>,
}

/// The bottleneck of this link alone, or one shared by several links (the relay's connections, so
/// that they compete for one rate as flows on one path do).
#[derive(Debug)]
enum Bottleneck {
    Own(TokenBucket),
    Shared(Arc<Mutex<TokenBucket>>),
}

impl Bottleneck {
    fn with<R>(&mut self, f: impl FnOnce(&mut TokenBucket) -> R) -> R {
        match self {
            Self::Own(b) => f(b),
            // A poisoned lock only means another relay thread panicked; the bucket is still whole.
            Self::Shared(b) => f(&mut b.lock().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

/// A rate schedule and where this link is in it.
#[derive(Debug)]
struct Scheduled {
    schedule: Arc<RateSchedule>,
    /// The instant the schedule's time zero stands for.
    epoch: Instant,
    /// When the rate next changes; `None` once the last step holds.
    next_change: Option<Instant>,
}

impl<P: AsRef<[u8]>> Link<P> {
    /// A pipeline with its own random stream, seeded so a run can be repeated.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            loss: LossModel::bernoulli(config.loss),
            bucket: Bottleneck::Own(TokenBucket::new(
                config.rate_bps,
                config.burst_bytes,
                config.queue_bytes,
            )),
            line: DelayLine::new(config.delay),
            rng: SmallRng::seed_from_u64(seed),
            in_flight_bytes: 0,
            schedule: None,
        }
    }

    /// The same pipeline with its bottleneck rate following `schedule` from `epoch` on (which
    /// replaces `rate_bps`). Every link of one emulator shares the epoch, so all directions and
    /// connections see the same step at the same time.
    pub fn with_schedule(mut self, schedule: Arc<RateSchedule>, epoch: Instant) -> Self {
        let first = schedule.first_rate_bps();
        self.bucket.with(|b| b.set_rate(first));
        self.schedule = Some(Scheduled {
            schedule,
            epoch,
            next_change: Some(epoch),
        });
        self
    }

    /// The same pipeline with `bucket` as its bottleneck, shared with other links (make it with
    /// [`TokenBucket::new`] from the same config). Call before [`Link::with_schedule`].
    pub fn with_shared_bottleneck(mut self, bucket: Arc<Mutex<TokenBucket>>) -> Self {
        self.bucket = Bottleneck::Shared(bucket);
        self
    }

    // --- getters ---

    /// Packets held (queued at the bottleneck or on the wire).
    pub fn in_flight_packets(&self) -> usize {
        self.line.len()
    }

    /// Bytes held (queued at the bottleneck or on the wire).
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }

    // --- inputs ---

    /// A packet arrives at `now`. On success returns when it will come out of the far end.
    pub fn handle_packet(&mut self, now: Instant, packet: P) -> Result<Instant, (Drop, P)> {
        self.follow_schedule(now);
        if self.loss.should_drop(&mut self.rng) {
            return Err((Drop::Lost, packet));
        }
        let len = packet.as_ref().len() as u64;
        let Ok(departure) = self.bucket.with(|b| b.handle_packet(now, len)) else {
            return Err((Drop::QueueFull, packet));
        };
        self.in_flight_bytes += len;
        Ok(self.line.handle_packet(departure, packet, &mut self.rng))
    }

    /// Applies the schedule's step for `now`, if it changed since the last packet. The rate only
    /// matters when a packet arrives (its departure is fixed then), so no timer is needed.
    fn follow_schedule(&mut self, now: Instant) {
        let Some(s) = self.schedule.as_mut() else {
            return;
        };
        if s.next_change.is_none_or(|at| now < at) {
            return;
        }
        let (rate, next) = s.schedule.rate_at(now.saturating_duration_since(s.epoch));
        s.next_change = next.map(|d| s.epoch + d);
        self.bucket.with(|b| b.set_rate(rate));
    }

    // --- outputs ---

    /// The next packet due at the far end by `now`, if any.
    pub fn poll_release(&mut self, now: Instant) -> Option<P> {
        let packet = self.line.poll_release(now)?;
        self.in_flight_bytes -= packet.as_ref().len() as u64;
        Some(packet)
    }

    /// When the next packet falls due; `None` when nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.line.poll_timeout()
    }
}

/// How long until `deadline`, or zero if it has passed.
pub fn until(now: Instant, deadline: Instant) -> Duration {
    deadline.saturating_duration_since(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay_line::JitterDist;

    fn config(delay_ms: u64, loss: f64, rate_mbit: Option<u64>, queue_bytes: u64) -> LinkConfig {
        LinkConfig {
            delay: DelayModel {
                base: Duration::from_millis(delay_ms),
                jitter: Duration::ZERO,
                dist: JitterDist::Uniform,
                allow_reorder: false,
            },
            loss,
            rate_bps: rate_mbit.map(|m| m * 1_000_000),
            burst_bytes: 1500,
            queue_bytes,
        }
    }

    #[test]
    fn queueing_delay_adds_to_propagation_delay() {
        let t0 = Instant::now();
        // 12 Mbit/s: a 1500 B packet takes 1 ms to serialise.
        let mut link = Link::new(config(50, 0.0, Some(12), 1_000_000), 1);
        assert_eq!(
            link.handle_packet(t0, vec![0u8; 1500]),
            Ok(t0 + Duration::from_millis(50))
        );
        assert_eq!(
            link.handle_packet(t0, vec![1u8; 1500]),
            Ok(t0 + Duration::from_millis(51))
        );
        assert_eq!(link.in_flight_bytes(), 3000);
        assert_eq!(link.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        assert_eq!(
            link.poll_release(t0 + Duration::from_millis(50))
                .map(|p| p[0]),
            Some(0)
        );
        assert_eq!(link.poll_release(t0 + Duration::from_millis(50)), None);
        assert_eq!(
            link.poll_release(t0 + Duration::from_millis(51))
                .map(|p| p[0]),
            Some(1)
        );
        assert_eq!(link.in_flight_bytes(), 0);
    }

    #[test]
    fn full_queue_drops_tail_and_returns_buffer() {
        let t0 = Instant::now();
        let mut link = Link::new(config(0, 0.0, Some(12), 3000), 1);
        for _ in 0..3 {
            assert!(link.handle_packet(t0, vec![0u8; 1500]).is_ok());
        }
        let (why, buf) = link.handle_packet(t0, vec![7u8; 1500]).unwrap_err();
        assert_eq!(why, Drop::QueueFull);
        assert_eq!(buf[0], 7);
    }

    #[test]
    fn loss_drops_about_the_configured_share() {
        let t0 = Instant::now();
        let mut link = Link::new(config(10, 0.01, None, u64::MAX), 42);
        let lost = (0..200_000)
            .filter(|_| matches!(link.handle_packet(t0, [0u8; 64]), Err((Drop::Lost, _))))
            .count();
        assert!((1_700..=2_300).contains(&lost), "{lost}");
        assert_eq!(link.in_flight_packets(), 200_000 - lost);
    }

    #[test]
    fn throughput_through_capped_link_matches_rate() {
        // Offer 2x the cap for one virtual second and count what comes out.
        let t0 = Instant::now();
        let mut link = Link::new(config(20, 0.0, Some(100), 1_250_000), 3);
        let mut out_bytes = 0u64;
        let step = Duration::from_micros(60); // 1500 B every 60 us = 200 Mbit/s offered
        for i in 0..(1_000_000 / 60) {
            let now = t0 + step * i;
            let _ = link.handle_packet(now, vec![0u8; 1500]);
            while let Some(p) = link.poll_release(now) {
                out_bytes += p.len() as u64;
            }
        }
        let mbit = out_bytes as f64 * 8.0 / 1e6;
        assert!((97.0..=101.0).contains(&mbit), "{mbit} Mbit in 1 s");
    }

    #[test]
    fn bytes_per_interval_follow_the_rate_schedule() {
        // 80 Mbit/s, then 40 from 1 s, then 120 from 2 s (held): offer 200 Mbit/s for 3.5 s and
        // count what leaves the far end in each virtual second. The queue is short (3 ms at 80
        // Mbit/s), since packets queued at a step still leave at the old rate.
        let schedule = RateSchedule::parse("10 80\n11 40\n12 120\n").unwrap();
        let t0 = Instant::now();
        let mut link =
            Link::new(config(20, 0.0, Some(100), 30_000), 5).with_schedule(Arc::new(schedule), t0);
        let mut per_second = [0u64; 4];
        let step = Duration::from_micros(60); // 1500 B every 60 us = 200 Mbit/s offered
        for i in 0..(3_500_000 / 60) {
            let now = t0 + step * i;
            let _ = link.handle_packet(now, vec![0u8; 1500]);
            while let Some(p) = link.poll_release(now) {
                // Count by departure from the bottleneck: release time less the 20 ms delay.
                let sent = (now - t0).saturating_sub(Duration::from_millis(20));
                per_second[sent.as_secs() as usize] += p.len() as u64;
            }
        }
        let mbit: Vec<f64> = per_second.iter().map(|&b| b as f64 * 8.0 / 1e6).collect();
        for (k, want) in [80.0, 40.0, 120.0].into_iter().enumerate() {
            assert!(
                (mbit[k] - want).abs() <= want * 0.03,
                "second {k}: {:.2} Mbit, schedule says {want} ({mbit:?})",
                mbit[k]
            );
        }
    }

    #[test]
    fn links_sharing_a_bottleneck_split_its_rate() {
        // Two links each offered 100 Mbit/s for one second through one shared 40 Mbit/s bucket.
        let t0 = Instant::now();
        let c = config(10, 0.0, Some(40), u64::MAX);
        let shared = Arc::new(Mutex::new(TokenBucket::new(
            c.rate_bps,
            c.burst_bytes,
            c.queue_bytes,
        )));
        let mut links: Vec<Link<Vec<u8>>> = (0..2)
            .map(|i| Link::new(c, i).with_shared_bottleneck(Arc::clone(&shared)))
            .collect();
        let mut out = [0u64; 2];
        let step = Duration::from_micros(120); // 1500 B every 120 us = 100 Mbit/s per link
        for i in 0..(1_000_000 / 120) {
            let now = t0 + step * i;
            for (k, link) in links.iter_mut().enumerate() {
                let _ = link.handle_packet(now, vec![0u8; 1500]);
                while let Some(p) = link.poll_release(now) {
                    out[k] += p.len() as u64;
                }
            }
        }
        let mbit = out.map(|b| b as f64 * 8.0 / 1e6);
        assert!((38.0..=40.5).contains(&(mbit[0] + mbit[1])), "{mbit:?}");
        assert!((mbit[0] - mbit[1]).abs() < 1.0, "{mbit:?}");
    }
}

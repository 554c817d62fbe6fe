//! Rate cap with a bounded drop-tail queue: the bottleneck link of the emulated path (what tbf does).
//!
//! Sans-IO: time is an argument. Instead of refilling tokens on a tick, the bucket is kept as a
//! GCRA "theoretical arrival time" (virtual scheduling), which is exactly a token bucket of depth
//! `burst` but answers the question the forwarder needs in O(1): *when* will this packet leave?
//! The packet is then parked once, in the delay line, at that departure time plus the path delay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Why the bucket refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    /// Admitting the packet would put more than the queue limit in bytes behind the bottleneck.
    Overflow,
}

/// A token bucket of `burst` bytes filled at `rate` bits/s, feeding a FIFO of at most
/// `queue_limit` bytes. `rate_bps == None` means no cap: every packet departs on arrival.
#[derive(Debug)]
pub struct TokenBucket {
    rate_bps: Option<u64>,
    burst: u64,
    /// How far ahead of real time the bucket may run: `burst / rate`.
    burst_time: Duration,
    queue_limit: u64,
    /// Earliest time the next packet could start if the bucket were empty of tokens (GCRA TAT).
    tat: Option<Instant>,
    /// Packets admitted but still waiting for tokens, oldest first, as (departure, bytes).
    waiting: VecDeque<(Instant, u64)>,
    waiting_bytes: u64,
}

impl TokenBucket {
    /// `rate_bps` bits per second, `burst` bytes of depth, at most `queue_limit` bytes waiting.
    pub fn new(rate_bps: Option<u64>, burst: u64, queue_limit: u64) -> Self {
        let burst_time = match rate_bps {
            Some(rate) => transmit_time(burst, rate),
            None => Duration::ZERO,
        };
        Self {
            rate_bps,
            burst,
            burst_time,
            queue_limit,
            tat: None,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
        }
    }

    // --- getters ---

    /// Bytes admitted at or before `now` that have not yet left the bucket.
    #[cfg(test)]
    pub fn backlog_bytes(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.waiting_bytes
    }

    // --- inputs ---

    /// Offers a packet of `bytes` arriving at `now`. Returns the time it leaves the bottleneck,
    /// or `QueueFull` (drop-tail) if it would not fit in the queue. A refused packet leaves no
    /// trace, like a real drop-tail queue.
    pub fn handle_packet(&mut self, now: Instant, bytes: u64) -> Result<Instant, QueueFull> {
        let Some(rate) = self.rate_bps else {
            return Ok(now);
        };
        self.expire(now);
        if self.waiting_bytes + bytes > self.queue_limit {
            return Err(QueueFull::Overflow);
        }
        let tat = self.tat.unwrap_or(now);
        let cost = transmit_time(bytes, rate);
        // The bucket holds `burst - (tat - t) * rate` bytes of tokens at time t, so the packet may
        // go once `tat - t <= (burst - bytes) / rate`. A packet larger than the bucket goes when
        // the bucket is full rather than never.
        let slack = self.burst_time.saturating_sub(cost);
        let departure = now.max(tat.checked_sub(slack).unwrap_or(now));
        self.tat = Some(tat.max(departure) + cost);
        if departure > now {
            self.waiting.push_back((departure, bytes));
            self.waiting_bytes += bytes;
        }
        Ok(departure)
    }

    // --- mutators ---

    /// Changes the rate from now on (a rate schedule's step). Packets already admitted keep their
    /// departure times, so the new rate shows after at most the queue's drain time; the bucket's
    /// debt (how far its TAT runs ahead) carries over as time.
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.rate_bps = Some(rate_bps);
        self.burst_time = transmit_time(self.burst, rate_bps);
    }

    /// Forgets packets that have left by `now`, so the queue limit only counts those still waiting.
    fn expire(&mut self, now: Instant) {
        while let Some(&(departure, bytes)) = self.waiting.front() {
            if departure > now {
                break;
            }
            self.waiting.pop_front();
            self.waiting_bytes -= bytes;
        }
    }
}

/// Serialisation time of `bytes` at `rate_bps`, in whole nanoseconds (the rounding error is
/// < 1 ns per packet, far below the timer resolution).
pub fn transmit_time(bytes: u64, rate_bps: u64) -> Duration {
    let nanos = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(rate_bps.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MBIT: u64 = 1_000_000;

    #[test]
    fn unlimited_departs_immediately() {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(None, 0, u64::MAX);
        for i in 0..1000 {
            let now = t0 + Duration::from_micros(i);
            assert_eq!(tb.handle_packet(now, 65_535), Ok(now));
        }
    }

    #[test]
    fn burst_leaves_at_once_then_paced_at_rate() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1 byte per microsecond; 3000-byte bucket.
        let mut tb = TokenBucket::new(Some(8 * MBIT), 3000, 1_000_000);
        assert_eq!(tb.handle_packet(t0, 1000), Ok(t0));
        assert_eq!(tb.handle_packet(t0, 1000), Ok(t0));
        assert_eq!(tb.handle_packet(t0, 1000), Ok(t0));
        // Bucket empty: each further 1000 B packet waits 1000 us more.
        assert_eq!(
            tb.handle_packet(t0, 1000),
            Ok(t0 + Duration::from_micros(1000))
        );
        assert_eq!(
            tb.handle_packet(t0, 1000),
            Ok(t0 + Duration::from_micros(2000))
        );
    }

    #[test]
    fn long_run_rate_matches_cap() {
        let t0 = Instant::now();
        let rate = 100 * MBIT;
        let mut tb = TokenBucket::new(Some(rate), 15_000, u64::MAX);
        // Offer 1500 B every microsecond (12 Gbit/s) for 10k packets; all are admitted.
        let mut last = t0;
        for i in 0..10_000u64 {
            last = tb
                .handle_packet(t0 + Duration::from_micros(i), 1500)
                .unwrap();
        }
        // 10k * 1500 B at 100 Mbit/s = 1.2 s, minus the 15 kB burst that left at once.
        let expect = transmit_time(10_000 * 1500 - 15_000, rate);
        let got = last - t0;
        assert!(
            got.abs_diff(expect) < Duration::from_micros(200),
            "{got:?} vs {expect:?}"
        );
    }

    #[test]
    fn refills_while_idle_but_never_beyond_burst() {
        let t0 = Instant::now();
        let mut tb = TokenBucket::new(Some(8 * MBIT), 2000, 1_000_000);
        for _ in 0..10 {
            tb.handle_packet(t0, 1000).unwrap();
        }
        // After a long idle period only `burst` bytes may go back-to-back.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(tb.handle_packet(t1, 1000), Ok(t1));
        assert_eq!(tb.handle_packet(t1, 1000), Ok(t1));
        assert_eq!(
            tb.handle_packet(t1, 1000),
            Ok(t1 + Duration::from_micros(1000))
        );
    }

    #[test]
    fn drop_tail_when_queue_full_and_accepts_again_after_drain() {
        let t0 = Instant::now();
        // 1 byte/us, no burst beyond one packet, queue of 3000 bytes.
        let mut tb = TokenBucket::new(Some(8 * MBIT), 1000, 3000);
        assert_eq!(tb.handle_packet(t0, 1000), Ok(t0)); // departs now, not queued
        for k in 1..=3 {
            assert_eq!(
                tb.handle_packet(t0, 1000),
                Ok(t0 + Duration::from_micros(1000 * k))
            );
        }
        assert_eq!(tb.backlog_bytes(t0), 3000);
        assert_eq!(tb.handle_packet(t0, 1000), Err(QueueFull::Overflow));
        // A dropped packet must not consume tokens: the next accepted one keeps the schedule.
        let t1 = t0 + Duration::from_micros(1000);
        assert_eq!(tb.backlog_bytes(t1), 2000);
        assert_eq!(
            tb.handle_packet(t1, 1000),
            Ok(t0 + Duration::from_micros(4000))
        );
    }
}

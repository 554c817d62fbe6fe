//! What the sender knows about each connection: in-flight frames, RTT and delivery rate.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::frame::Version;

/// A connection's id, chosen by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// A connection's measurements, for stats events and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnStats {
    /// The connection.
    pub id: ConnId,
    /// Smoothed time from handing a frame to the connection to its ack (includes queueing).
    pub srtt: Option<Duration>,
    /// The smallest such time seen: the path's RTT with empty queues.
    pub min_rtt: Option<Duration>,
    /// Smoothed delivery rate in bytes per second.
    pub delivery_rate: f64,
    /// Bytes handed to the connection and not yet acknowledged.
    pub inflight_bytes: u64,
    /// How many bytes the scheduler lets it hold unacknowledged.
    pub window_bytes: u64,
    /// Payload bytes handed to it.
    pub sent_bytes: u64,
    /// Payload bytes acknowledged through it.
    pub acked_bytes: u64,
    /// Frames taken off it (death, stall) and sent again elsewhere.
    pub moved_frames: u64,
    /// Whether it still gets new frames.
    pub active: bool,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub id: ConnId,
    /// The frame format agreed with the peer on this connection.
    pub version: Version,
    /// Sequence numbers handed to this connection and not yet acknowledged.
    pub inflight: BTreeSet<u64>,
    pub inflight_bytes: u64,
    pub srtt: Option<Duration>,
    pub min_rtt: Option<Duration>,
    pub delivery_rate: f64,
    /// The highest recent rate sample, decaying slowly: what the path can carry when the
    /// transport below is not recovering from a loss. It sizes the window, like BBR's max filter.
    pub peak_rate: f64,
    /// Payload bytes acknowledged through this connection; snapshotted at send for rate samples.
    pub delivered: u64,
    pub sent_bytes: u64,
    pub moved_frames: u64,
    /// Last ack, or when it was first given a frame with nothing in flight: for stall detection.
    pub last_progress: Instant,
    /// Retiring: no new frames; closed once drained.
    pub retiring: bool,
}

/// Rate samples are smoothed with this weight; ~8 samples of memory, like TCP's srtt.
const RATE_GAIN: f64 = 0.125;
/// Per-ack decay of the peak rate: it halves in ~70 acks, so a path that really got slower
/// (not just a loss episode) shrinks the window within a few RTTs.
const PEAK_DECAY: f64 = 0.99;

impl Conn {
    pub fn new(id: ConnId, version: Version, now: Instant) -> Self {
        Conn {
            id,
            version,
            inflight: BTreeSet::new(),
            inflight_bytes: 0,
            srtt: None,
            min_rtt: None,
            delivery_rate: 0.0,
            peak_rate: 0.0,
            delivered: 0,
            sent_bytes: 0,
            moved_frames: 0,
            last_progress: now,
            retiring: false,
        }
    }

    /// Bytes the scheduler lets this connection hold: twice the bandwidth-delay product at the
    /// path's minimum RTT, so the transport below can keep growing its window, but a slow or
    /// stalled connection cannot hoard the stream.
    pub fn window(&self, initial: u64) -> u64 {
        match self.min_rtt {
            Some(rtt) if self.peak_rate > 0.0 => {
                // A rate × RTT product far below 2^53 bytes; saturating float-to-int is fine.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let bdp = (2.0 * self.peak_rate * rtt.as_secs_f64().max(0.001)) as u64;
                initial.max(bdp)
            }
            _ => initial,
        }
    }

    /// When a frame of `len` bytes handed over now would be delivered: the queue ahead drains
    /// at the measured rate, then half an RTT of flight. Unmeasured connections look attractive
    /// enough to get traffic and so a measurement.
    pub fn expected_delivery(&self, len: u64) -> f64 {
        let rate = if self.delivery_rate > 0.0 {
            self.delivery_rate
        } else {
            1e6
        };
        let flight = self.min_rtt.map_or(0.0, |r| r.as_secs_f64() / 2.0);
        (self.inflight_bytes + len) as f64 / rate + flight
    }

    pub fn on_sent(&mut self, seq: u64, len: u64, now: Instant) {
        if self.inflight.is_empty() {
            self.last_progress = now;
        }
        self.inflight.insert(seq);
        self.inflight_bytes += len;
        self.sent_bytes += len;
    }

    /// Accounts an ack for a frame this connection carried, with the rate sample it yields.
    pub fn on_acked(
        &mut self,
        seq: u64,
        len: u64,
        sent_at: Instant,
        delivered_at_send: u64,
        now: Instant,
    ) {
        if !self.inflight.remove(&seq) {
            return;
        }
        self.inflight_bytes -= len;
        self.delivered += len;
        self.last_progress = now;
        let rtt = now.saturating_duration_since(sent_at);
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.srtt = Some(match self.srtt {
            Some(s) => s.mul_f64(0.875) + rtt.mul_f64(0.125),
            None => rtt,
        });
        let interval = rtt.as_secs_f64();
        if interval > 0.0 {
            let sample = (self.delivered - delivered_at_send) as f64 / interval;
            self.peak_rate = sample.max(self.peak_rate * PEAK_DECAY);
            self.delivery_rate = if self.delivery_rate == 0.0 {
                sample
            } else {
                self.delivery_rate * (1.0 - RATE_GAIN) + sample * RATE_GAIN
            };
        }
    }

    /// Forgets a frame that was acknowledged through another connection or moved elsewhere.
    pub fn forget(&mut self, seq: u64, len: u64) {
        if self.inflight.remove(&seq) {
            self.inflight_bytes -= len;
        }
    }

    pub fn stats(&self, initial_window: u64) -> ConnStats {
        ConnStats {
            id: self.id,
            srtt: self.srtt,
            min_rtt: self.min_rtt,
            delivery_rate: self.delivery_rate,
            inflight_bytes: self.inflight_bytes,
            window_bytes: self.window(initial_window),
            sent_bytes: self.sent_bytes,
            acked_bytes: self.delivered,
            moved_frames: self.moved_frames,
            active: !self.retiring,
        }
    }
}

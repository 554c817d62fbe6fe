//! A path probe before the stream, sans-IO: PROBE frames over the transfer's own connections,
//! which the receiver acknowledges and discards, until goodput stops growing (BBR's startup
//! exit: three rounds in a row with less than 25 % growth), the time limit, or the stream's
//! first bytes. The runtime only moves the frames and the timers; every decision is here.
//!
//! A round is one RTT (the smallest the probe measured), and at least [`ProbeConfig::min_round`]
//! so that a loopback round measures something; it ends at the first ack after that.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::ConnId;

/// How a probe runs.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// The probe ends with what it measured by then.
    pub max: Duration,
    /// Payload bytes per PROBE frame.
    pub frame_len: u32,
    /// Unacknowledged probe bytes per connection before its first rate sample.
    pub initial_window: u64,
    /// Never more than this unacknowledged per connection: bounds what the stream may find
    /// queued ahead of it when it starts.
    pub max_window: u64,
    /// Rounds shorter than this are extended.
    pub min_round: Duration,
    /// Growth per round below which a round counts towards the plateau (0.25).
    pub growth: f64,
    /// Rounds in a row without that growth that end the probe (3).
    pub plateau_rounds: u32,
    /// Probe frames in flight and no PROBE_ACK for this long: the path is gone.
    pub stall: Duration,
}

impl ProbeConfig {
    /// The defaults, ending after at most `max`.
    pub fn new(max: Duration) -> Self {
        ProbeConfig {
            max,
            frame_len: 16 * 1024,
            initial_window: 256 * 1024,
            max_window: 16 << 20,
            min_round: Duration::from_millis(10),
            growth: 0.25,
            plateau_rounds: 3,
            stall: Duration::from_secs(3),
        }
    }
}

/// Why a probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEnd {
    /// Goodput stopped growing.
    Plateau,
    /// The time limit.
    MaxTime,
    /// Stream bytes were waiting; they go first.
    Stream,
}

/// A probe that could not measure the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A connection ended, or no PROBE_ACK came while frames were in flight.
    #[error("{0}")]
    Lost(String),
    /// Nothing was acknowledged before the probe ended.
    #[error("no probe frame was acknowledged in {0:?}")]
    NothingAcked(Duration),
    /// No connection speaks frame version 3 (the receiver is older).
    #[error("no connection speaks frame version 3: the receiver cannot answer probes")]
    Unsupported,
}

/// One connection's share of a probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeConnResult {
    /// The connection.
    pub id: ConnId,
    /// Probe payload bytes acknowledged on it.
    pub bytes: u64,
    /// Smoothed probe RTT (send to PROBE_ACK, queueing included).
    pub srtt: Option<Duration>,
    /// Smallest probe RTT.
    pub min_rtt: Option<Duration>,
}

/// What a probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Why it ended.
    pub ended: ProbeEnd,
    /// From start to end.
    pub duration: Duration,
    /// Probe payload bytes acknowledged.
    pub bytes: u64,
    /// The best round's aggregate goodput, bytes per second (BBR's "full bandwidth").
    pub goodput: f64,
    /// Rounds completed.
    pub rounds: u32,
    /// Smoothed RTT over all probe frames.
    pub srtt: Option<Duration>,
    /// The smallest RTT seen.
    pub min_rtt: Option<Duration>,
    /// Per connection, by id.
    pub connections: Vec<ProbeConnResult>,
}

/// A PROBE frame to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeTransmit {
    /// Where.
    pub conn: ConnId,
    /// Its id, echoed by the PROBE_ACK.
    pub id: u64,
    /// Payload bytes.
    pub len: u32,
}

#[derive(Debug, Default)]
struct ProbeConn {
    inflight: u64,
    acked: u64,
    /// Acked at the start of the current round, for its rate.
    acked_at_round: u64,
    rate: f64,
    srtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

/// The probe's state. Methods: getters, `handle_*` inputs, `poll_*` outputs.
#[derive(Debug)]
pub struct Probe {
    config: ProbeConfig,
    started: Instant,
    conns: BTreeMap<ConnId, ProbeConn>,
    /// Unacknowledged frames: id → (connection, length, sent at).
    sent: HashMap<u64, (ConnId, u32, Instant)>,
    next_id: u64,
    /// When the current round began, and the bytes acked by then.
    round_started: Instant,
    round_acked: u64,
    rounds: u32,
    full_bw: f64,
    flat_rounds: u32,
    acked: u64,
    srtt: Option<Duration>,
    min_rtt: Option<Duration>,
    last_ack: Instant,
    outcome: Option<Result<ProbeResult, ProbeError>>,
    taken: bool,
}

impl Probe {
    /// A probe starting `now`; it sends on the connections it is given.
    pub fn new(config: ProbeConfig, now: Instant) -> Self {
        Probe {
            config,
            started: now,
            conns: BTreeMap::new(),
            sent: HashMap::new(),
            next_id: 0,
            round_started: now,
            round_acked: 0,
            rounds: 0,
            full_bw: 0.0,
            flat_rounds: 0,
            acked: 0,
            srtt: None,
            min_rtt: None,
            last_ack: now,
            outcome: None,
            taken: false,
        }
    }

    // --- getters

    /// Whether the probe has ended (its outcome may not have been polled yet).
    pub fn is_done(&self) -> bool {
        self.outcome.is_some() || self.taken
    }

    /// Probe bytes acknowledged so far.
    pub fn acked_bytes(&self) -> u64 {
        self.acked
    }

    // --- inputs

    /// A connection that answers probes (v3) is up.
    pub fn handle_connection(&mut self, conn: ConnId) {
        if !self.is_done() {
            self.conns.entry(conn).or_default();
        }
    }

    /// A connection that cannot answer probes (a peer older than v3) is up: if the probe has no
    /// other, it fails with [`ProbeError::Unsupported`].
    pub fn handle_old_peer(&mut self, _conn: ConnId) {
        if self.conns.is_empty() && !self.is_done() {
            self.outcome = Some(Err(ProbeError::Unsupported));
        }
    }

    /// A connection went without failing (retired by the pool): its frames are forgotten.
    pub fn handle_retired(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
        self.sent.retain(|_, (c, _, _)| *c != conn);
    }

    /// A connection failed during the probe: the probe fails, saying what happened.
    pub fn handle_lost(&mut self, conn: ConnId, what: &str, now: Instant) {
        if self.conns.remove(&conn).is_some() && !self.is_done() {
            let after = now.saturating_duration_since(self.started);
            self.outcome = Some(Err(ProbeError::Lost(format!(
                "connection {} was lost {} ms into the probe: {what}",
                conn.0,
                after.as_millis()
            ))));
        }
    }

    /// The stream has bytes to send: the probe ends now, with what it measured.
    pub fn handle_stream_waiting(&mut self, now: Instant) {
        if !self.is_done() {
            self.finish(ProbeEnd::Stream, now);
        }
    }

    /// A PROBE_ACK arrived.
    pub fn handle_ack(&mut self, id: u64, now: Instant) {
        let Some((conn, len, sent_at)) = self.sent.remove(&id) else {
            return;
        };
        if self.is_done() {
            return;
        }
        let rtt = now.saturating_duration_since(sent_at);
        self.srtt = Some(smoothed(self.srtt, rtt));
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.acked += u64::from(len);
        self.last_ack = now;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.inflight -= u64::from(len);
            c.acked += u64::from(len);
            c.srtt = Some(smoothed(c.srtt, rtt));
            c.min_rtt = Some(c.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        // A round is one path RTT: the probe's smallest, which has the least queueing in it.
        // Counting rounds by a frame sent after the round began would add the socket's queue
        // to each, and a slow start then gets few rounds in a short probe.
        let round = now.saturating_duration_since(self.round_started);
        let rtt = self.min_rtt.unwrap_or_default();
        if round >= self.config.min_round.max(rtt) {
            self.end_round(round, now);
        }
    }

    /// Time has passed: the time limit and the stall rule.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        let stalled = !self.sent.is_empty() && now >= self.last_ack + self.config.stall;
        if stalled {
            self.outcome = Some(Err(ProbeError::Lost(format!(
                "no probe frame acknowledged for {} ms with {} in flight",
                now.saturating_duration_since(self.last_ack).as_millis(),
                self.sent.len()
            ))));
        } else if now >= self.started + self.config.max {
            // At the limit, frames unanswered for several RTTs mean a path that went silent,
            // not a slow one: that is a failure, not a measurement.
            let quiet = now.saturating_duration_since(self.last_ack);
            let srtt = self.srtt.unwrap_or(self.config.min_round);
            if !self.sent.is_empty()
                && self.acked > 0
                && quiet > (4 * srtt).max(4 * self.config.min_round)
            {
                self.outcome = Some(Err(ProbeError::Lost(format!(
                    "no probe frame acknowledged in the last {} ms of the probe (srtt {} ms)",
                    quiet.as_millis(),
                    srtt.as_millis()
                ))));
            } else {
                self.finish(ProbeEnd::MaxTime, now);
            }
        }
    }

    // --- outputs

    /// The next PROBE frame to write: on the connection with the most room in its window.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ProbeTransmit> {
        if self.is_done() {
            return None;
        }
        let len = u64::from(self.config.frame_len);
        let (config, min_rtt) = (&self.config, self.min_rtt);
        let (&conn, c) = self
            .conns
            .iter_mut()
            .map(|(id, c)| {
                let window = window(config, c.rate, c.min_rtt.or(min_rtt));
                (id, c, window)
            })
            .filter(|(_, c, window)| c.inflight + len <= *window)
            .min_by_key(|(_, c, window)| window - c.inflight)
            .map(|(id, c, _)| (id, c))?;
        c.inflight += len;
        let id = self.next_id;
        self.next_id += 1;
        if self.sent.is_empty() {
            self.last_ack = now;
        }
        self.sent.insert(id, (conn, self.config.frame_len, now));
        Some(ProbeTransmit {
            conn,
            id,
            len: self.config.frame_len,
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        let deadline = self.started + self.config.max;
        let stall = (!self.sent.is_empty()).then(|| self.last_ack + self.config.stall);
        Some(stall.map_or(deadline, |s| s.min(deadline)))
    }

    /// The outcome, once, when the probe has ended.
    pub fn poll_outcome(&mut self) -> Option<Result<ProbeResult, ProbeError>> {
        let outcome = self.outcome.take();
        if outcome.is_some() {
            self.taken = true;
        }
        outcome
    }

    fn end_round(&mut self, round: Duration, now: Instant) {
        let secs = round.as_secs_f64();
        let bw = (self.acked - self.round_acked) as f64 / secs;
        for c in self.conns.values_mut() {
            c.rate = (c.acked - c.acked_at_round) as f64 / secs;
            c.acked_at_round = c.acked;
        }
        self.rounds += 1;
        if bw >= self.full_bw * (1.0 + self.config.growth) {
            self.full_bw = bw;
            self.flat_rounds = 0;
        } else {
            self.full_bw = self.full_bw.max(bw);
            self.flat_rounds += 1;
        }
        self.round_started = now;
        self.round_acked = self.acked;
        if self.flat_rounds >= self.config.plateau_rounds {
            self.finish(ProbeEnd::Plateau, now);
        }
    }

    fn finish(&mut self, ended: ProbeEnd, now: Instant) {
        let duration = now.saturating_duration_since(self.started);
        self.outcome = Some(if self.acked == 0 && ended != ProbeEnd::Stream {
            Err(ProbeError::NothingAcked(duration))
        } else {
            Ok(ProbeResult {
                ended,
                duration,
                bytes: self.acked,
                goodput: if self.full_bw > 0.0 {
                    self.full_bw
                } else {
                    self.acked as f64 / duration.as_secs_f64().max(1e-6)
                },
                rounds: self.rounds,
                srtt: self.srtt,
                min_rtt: self.min_rtt,
                connections: self
                    .conns
                    .iter()
                    .map(|(&id, c)| ProbeConnResult {
                        id,
                        bytes: c.acked,
                        srtt: c.srtt,
                        min_rtt: c.min_rtt,
                    })
                    .collect(),
            })
        });
        self.sent.clear();
    }
}

/// RFC 6298's SRTT step (gain 1/8), or the first sample.
fn smoothed(srtt: Option<Duration>, rtt: Duration) -> Duration {
    srtt.map_or(rtt, |s| s.mul_f64(0.875) + rtt.mul_f64(0.125))
}

/// Unacknowledged bytes a connection may hold: twice its last round's rate × RTT (BBR's
/// startup gain, so the transport below can keep doubling), within the configured bounds.
fn window(config: &ProbeConfig, rate: f64, rtt: Option<Duration>) -> u64 {
    let bdp = match rtt {
        // A rate × RTT product far below 2^53; saturating float-to-int is fine.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(rtt) if rate > 0.0 => (2.0 * rate * rtt.as_secs_f64()) as u64,
        _ => 0,
    };
    bdp.clamp(
        config.initial_window,
        config.max_window.max(config.initial_window),
    )
}

#[cfg(test)]
mod tests;

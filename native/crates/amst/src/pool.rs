//! The sender's connection policy, sans-IO: how many connections to dial, which to drain when
//! fewer are wanted, what a lost connection costs, and when the transfer is lost for want of one.
//!
//! What it decides:
//! - **Dialing.** It dials up to the target (fixed, or the [`StreamCountController`]'s), one at a
//!   time while dials are failing, and none once every data frame is acknowledged while a
//!   connection is left to carry the FIN: the receiver closes the others once it has the whole
//!   stream, and a replacement would only be told the transfer is over.
//! - **Proof.** A connection is proven by its first ACK or NACK: it works end to end. One that
//!   merely connected may still be refused (TLS 1.3 reports a bad client certificate late).
//! - **The dial-failure budget.** A failed dial and a connection that ends unproven (reset,
//!   closed, refused) each cost one; an ACK or NACK restores it. Connections dialed before the
//!   last counted failure was seen and lost after it share its cause and cost nothing more, so
//!   one outage that takes all the first connections costs one, and re-dials follow. With the
//!   budget spent the pool stops dialing and goes on with the connections it has.
//! - **Losses.** Any connection may end at any time, the first one before anything was
//!   acknowledged on it included: the [`Sender`] sends its unacknowledged frames again on the
//!   others or on the replacement dialed for it.
//! - **Draining.** When the controller lowers the target, the newest connections are drained: they
//!   get no new frames and are closed once their frames are acknowledged.
//! - **Failure.** The transfer fails only when no connection is left and none is being dialed, and
//!   either the budget is spent or a peer refused us for good (a certificate it will refuse
//!   again). [`PoolFailure`] says which connection went last and how many dials failed.
//!
//! Method groups as in [`Sender`]: getters, `handle_*` inputs, `poll_*` outputs. Inputs that change
//! what the sender must know (a connection up, lost or drained) take the [`Sender`] and update it.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Instant;

use crate::frame::{Ack, Version};
use crate::{AdaptConfig, AmstError, ConnId, Result, Sender, SenderEvent, StreamCountController};

/// How many connections a transfer uses.
#[derive(Debug, Clone)]
pub enum StreamCount {
    /// Exactly this many (1 to 256).
    Fixed(u32),
    /// As many as keep adding goodput (see [`StreamCountController`]).
    Adaptive(AdaptConfig),
}

/// Connection policy settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How many connections to keep.
    pub streams: StreamCount,
    /// Failed dials (and connections that ended unproven) in a row before the pool stops dialing.
    pub max_dial_failures: u32,
}

/// Why a dial or a connection failed, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// It may work next time: reset, refused connect, timeout, closed.
    Transient,
    /// The peer refused us in a way it will repeat (our certificate, its name).
    Refused,
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolAction {
    /// Open a connection with this id; report it with `handle_dialed` or `handle_dial_failed`.
    Dial(ConnId),
    /// Close this connection: it failed, stalled or has drained. Its frames have moved.
    Close(ConnId),
    /// The transfer cannot go on; stop and report this.
    Fail(PoolFailure),
    /// Every byte and the end of the stream are acknowledged.
    Done,
}

/// How a connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// It closed, was reset or failed before anything on it was acknowledged.
    Unproven,
    /// It closed, was reset or failed after it had carried acknowledged frames.
    Broken,
    /// It stopped acknowledging, or damaged a frame header (see [`SenderEvent::ConnectionFailed`]).
    Stalled,
    /// Its peer broke the protocol.
    Protocol,
}

/// Why the pool gave up: no connection is left and none can be made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolFailure {
    /// The last connection lost, and how, if any connection was ever up.
    pub last_lost: Option<(ConnId, Loss)>,
    /// Dials in a row that failed (connections that ended unproven included).
    pub dial_failures: u32,
    /// Whether the peer refused us for good.
    pub refused: bool,
    /// Whether every data frame was acknowledged: only the FIN's ack was missing.
    pub all_data_acked: bool,
}

impl fmt::Display for PoolFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_lost {
            Some((id, loss)) => write!(f, "connection {} {}, and ", id.0, loss.describe())?,
            None => f.write_str("no connection came up: ")?,
        }
        if self.refused {
            f.write_str("the peer refused us for good")?;
        } else {
            write!(
                f,
                "no connection could be made again: {} attempts in a row failed",
                self.dial_failures
            )?;
            if matches!(self.last_lost, Some((_, Loss::Unproven))) {
                f.write_str(" (a connection lost before any ack counts as one)")?;
            }
        }
        if self.all_data_acked {
            f.write_str(
                "; every data frame was acknowledged but not the end of the stream, so the \
                 receiver may have it all",
            )?;
        }
        Ok(())
    }
}

impl Loss {
    fn describe(self) -> &'static str {
        match self {
            Loss::Unproven => "was lost before anything on it was acknowledged",
            Loss::Broken => "was lost",
            Loss::Stalled => "stalled",
            Loss::Protocol => "broke the protocol",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Dialing,
    /// Up; `proven` once an ACK or NACK came back on it.
    Up {
        proven: bool,
        draining: bool,
    },
}

/// The connection policy of one transfer. See the module documentation for what it decides.
#[derive(Debug)]
pub struct ConnectionPool {
    fixed: u32,
    controller: Option<StreamCountController>,
    max_dial_failures: u32,
    slots: BTreeMap<ConnId, Slot>,
    next_id: u32,
    dial_failures: u32,
    /// Failures of connections with a lower id are not counted (see `count_dial_failure`).
    uncounted_below: u32,
    refused: bool,
    last_lost: Option<(ConnId, Loss)>,
    connections_failed: u32,
    connections_opened: u32,
    max_up: u32,
    actions: VecDeque<PoolAction>,
    finished: bool,
}

impl ConnectionPool {
    /// A pool with validated settings.
    pub fn new(config: PoolConfig) -> Result<Self> {
        let (fixed, controller) = match config.streams {
            StreamCount::Fixed(n) if (1..=256).contains(&n) => (n, None),
            StreamCount::Fixed(_) => {
                return Err(AmstError::InvalidParam {
                    field: "streams",
                    reason: "must be between 1 and 256".into(),
                })
            }
            StreamCount::Adaptive(c) => (0, Some(StreamCountController::new(c)?)),
        };
        Ok(ConnectionPool {
            fixed,
            controller,
            max_dial_failures: config.max_dial_failures,
            slots: BTreeMap::new(),
            next_id: 0,
            dial_failures: 0,
            uncounted_below: 0,
            refused: false,
            last_lost: None,
            connections_failed: 0,
            connections_opened: 0,
            max_up: 0,
            actions: VecDeque::new(),
            finished: false,
        })
    }

    // ---- getters ----

    /// How many connections are wanted now.
    pub fn target(&self) -> u32 {
        self.controller
            .as_ref()
            .map_or(self.fixed, StreamCountController::target)
    }

    /// Connections up now, draining ones included.
    pub fn connections_up(&self) -> u32 {
        self.count(|s| matches!(s, Slot::Up { .. }))
    }

    /// The most connections up at once.
    pub fn max_connections_up(&self) -> u32 {
        self.max_up
    }

    /// Connections lost mid-transfer: closed with frames in flight, reset, stalled, refused.
    pub fn connections_failed(&self) -> u32 {
        self.connections_failed
    }

    /// Connections that came up.
    pub fn connections_opened(&self) -> u32 {
        self.connections_opened
    }

    /// Failed dials in a row, connections that ended unproven included.
    pub fn dial_failures(&self) -> u32 {
        self.dial_failures
    }

    /// The last connection lost mid-transfer, and how.
    pub fn last_lost(&self) -> Option<(ConnId, Loss)> {
        self.last_lost
    }

    // ---- handle_* inputs ----

    /// The dial of `id` succeeded: the connection may carry frames in `version`.
    pub fn handle_dialed(
        &mut self,
        sender: &mut Sender,
        id: ConnId,
        version: Version,
        now: Instant,
    ) {
        if self.slots.get(&id) != Some(&Slot::Dialing) {
            return;
        }
        self.slots.insert(
            id,
            Slot::Up {
                proven: false,
                draining: false,
            },
        );
        self.connections_opened += 1;
        self.max_up = self.max_up.max(self.connections_up());
        sender.handle_connected(id, version, now);
    }

    /// The dial of `id` failed.
    pub fn handle_dial_failed(&mut self, id: ConnId, failure: Failure) {
        if self.slots.remove(&id) == Some(Slot::Dialing) {
            self.count_dial_failure(id, failure);
        }
    }

    /// An ACK arrived on `id`. An ACK that contradicts what was sent closes that connection.
    pub fn handle_ack(&mut self, sender: &mut Sender, id: ConnId, ack: Ack, now: Instant) {
        self.prove(id);
        if sender.handle_ack(id, ack, now).is_err() {
            self.lose(sender, id, Loss::Protocol);
        }
    }

    /// A NACK arrived on `id`. Only a frame damaged past the limit is an error, and it ends the
    /// transfer.
    pub fn handle_nack(
        &mut self,
        sender: &mut Sender,
        id: ConnId,
        seq: u64,
        crc: u32,
        now: Instant,
    ) -> Result<()> {
        self.prove(id);
        sender.handle_nack(id, seq, crc, now)
    }

    /// Connection `id` ended: cleanly (`None`) or with a failure. Its unacknowledged frames go out
    /// again on the others. Reports of a connection already gone are ignored, so a connection
    /// whose reader and writer both report its end costs one failure.
    pub fn handle_closed(&mut self, sender: &mut Sender, id: ConnId, failure: Option<Failure>) {
        let Some(Slot::Up { proven, .. }) = self.slots.get(&id).copied() else {
            return;
        };
        // A receiver that has every byte closes the other connections cleanly, after the acks
        // it wrote on them: a clean close that lost nothing is no failure.
        let lost = failure.is_some() || sender.inflight_frames(id) > 0;
        self.slots.remove(&id);
        sender.handle_disconnected(id);
        self.actions.push_back(PoolAction::Close(id));
        if !proven {
            self.count_dial_failure(id, failure.unwrap_or(Failure::Transient));
        }
        if lost {
            self.connections_failed += 1;
            self.last_lost = Some((id, if proven { Loss::Broken } else { Loss::Unproven }));
        }
    }

    /// Time has passed: the sender looks for stalls and the stream-count controller may change
    /// the target. A lower target drains the newest connections.
    pub fn handle_timeout(&mut self, sender: &mut Sender, now: Instant) {
        sender.handle_timeout(now);
        let delivered = sender.stats().bytes_acked;
        let Some(target) = self
            .controller
            .as_mut()
            .and_then(|c| c.handle_progress(delivered, now))
        else {
            return;
        };
        let active: Vec<ConnId> = self.ids(|s| {
            matches!(
                s,
                Slot::Up {
                    draining: false,
                    ..
                }
            )
        });
        let excess = active.len().saturating_sub(target as usize);
        for id in active.into_iter().rev().take(excess) {
            if let Some(Slot::Up { draining, .. }) = self.slots.get_mut(&id) {
                *draining = true;
            }
            sender.retire(id);
        }
    }

    // ---- poll_* outputs ----

    /// The next thing the runtime must do, given the sender's state; `None` when nothing is due.
    pub fn poll_action(&mut self, sender: &mut Sender) -> Option<PoolAction> {
        self.absorb_sender_events(sender);
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.finished {
            return None;
        }
        if sender.is_finished() {
            self.finished = true;
            return Some(PoolAction::Done);
        }
        if let Some(failure) = self.failure(sender) {
            self.finished = true;
            return Some(PoolAction::Fail(failure));
        }
        self.dial(sender)
    }

    /// When `handle_timeout` should next be called for the pool's own sake (the controller's
    /// epoch); the sender's own deadline is [`Sender::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.controller
            .as_ref()
            .and_then(StreamCountController::poll_timeout)
    }

    // ---- internals ----

    fn count(&self, pred: impl Fn(&Slot) -> bool) -> u32 {
        u32::try_from(self.slots.values().filter(|s| pred(s)).count()).unwrap_or(u32::MAX)
    }

    fn ids(&self, pred: impl Fn(&Slot) -> bool) -> Vec<ConnId> {
        self.slots
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(id, _)| *id)
            .collect()
    }

    fn prove(&mut self, id: ConnId) {
        if let Some(Slot::Up { proven, .. }) = self.slots.get_mut(&id) {
            *proven = true;
            self.dial_failures = 0;
            self.refused = false;
        }
    }

    fn count_dial_failure(&mut self, id: ConnId, failure: Failure) {
        self.refused |= failure == Failure::Refused;
        // A connection dialed before the last counted failure was seen most likely fails from
        // the same cause: together they cost one attempt.
        if id.0 >= self.uncounted_below {
            self.dial_failures += 1;
            self.uncounted_below = self.next_id;
        }
    }

    fn lose(&mut self, sender: &mut Sender, id: ConnId, loss: Loss) {
        if self.slots.remove(&id).is_none() {
            return;
        }
        sender.handle_disconnected(id);
        self.connections_failed += 1;
        self.last_lost = Some((id, loss));
        self.actions.push_back(PoolAction::Close(id));
    }

    fn absorb_sender_events(&mut self, sender: &mut Sender) {
        while let Some(event) = sender.poll_event() {
            match event {
                SenderEvent::ConnectionFailed(id) => {
                    if self.slots.remove(&id).is_some() {
                        self.connections_failed += 1;
                        self.last_lost = Some((id, Loss::Stalled));
                        self.actions.push_back(PoolAction::Close(id));
                    }
                }
                SenderEvent::ConnectionRetired(id) => {
                    if self.slots.remove(&id).is_some() {
                        self.actions.push_back(PoolAction::Close(id));
                    }
                }
            }
        }
    }

    /// The transfer is lost when nothing is up or being dialed and nothing more will be dialed.
    fn failure(&self, sender: &Sender) -> Option<PoolFailure> {
        let gave_up = self.refused || self.dial_failures >= self.max_dial_failures;
        (self.slots.is_empty() && gave_up).then(|| PoolFailure {
            last_lost: self.last_lost,
            dial_failures: self.dial_failures,
            refused: self.refused,
            all_data_acked: sender.all_data_acked(),
        })
    }

    fn dial(&mut self, sender: &Sender) -> Option<PoolAction> {
        let up = self.connections_up();
        let dialing = self.count(|s| *s == Slot::Dialing);
        let active = self.count(|s| {
            matches!(
                s,
                Slot::Up {
                    draining: false,
                    ..
                }
            )
        });
        let draining_stream = sender.all_data_acked() && up > 0;
        let spent = self.dial_failures >= self.max_dial_failures || self.refused;
        // While dials fail, probe with one at a time rather than the whole target at once: the
        // next when the last is proven or lost.
        let probing = self.dial_failures > 0
            && dialing + self.count(|s| matches!(s, Slot::Up { proven: false, .. })) > 0;
        if draining_stream || spent || probing {
            return None;
        }
        if active + dialing >= self.target() {
            return None;
        }
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.slots.insert(id, Slot::Dialing);
        Some(PoolAction::Dial(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Receiver, ReceiverConfig, SenderConfig, Transmit};

    fn start(streams: StreamCount) -> (ConnectionPool, Sender) {
        let pool = ConnectionPool::new(PoolConfig {
            streams,
            max_dial_failures: 5,
        })
        .expect("pool config");
        (pool, Sender::new(SenderConfig::default()).expect("sender"))
    }

    fn actions(pool: &mut ConnectionPool, sender: &mut Sender) -> Vec<PoolAction> {
        std::iter::from_fn(|| pool.poll_action(sender)).collect()
    }

    /// Performs what the pool asks, every dial succeeding; returns the actions.
    fn dial_all(pool: &mut ConnectionPool, sender: &mut Sender, now: Instant) -> Vec<PoolAction> {
        let done = actions(pool, sender);
        for a in &done {
            if let PoolAction::Dial(id) = a {
                pool.handle_dialed(sender, *id, Version::V2, now);
            }
        }
        done
    }

    fn deliver(tx: &Transmit, rx: &mut Receiver) {
        let mut bytes = tx.header.clone();
        bytes.extend_from_slice(&tx.payload);
        let (f, _) = crate::frame::parse(&bytes, Version::V2, rx.max_frame())
            .expect("parse")
            .expect("a whole frame");
        rx.handle_frame(tx.conn, f).expect("accepted");
    }

    fn acks_on(rx: &mut Receiver) -> Vec<(ConnId, Ack)> {
        std::iter::from_fn(|| rx.poll_ack()).collect()
    }

    #[test]
    fn dials_the_fixed_count_and_no_more() {
        let (mut pool, mut sender) = start(StreamCount::Fixed(3));
        let first = dial_all(&mut pool, &mut sender, Instant::now());
        let dials = [0, 1, 2].map(|i| PoolAction::Dial(ConnId(i)));
        assert_eq!(first, dials);
        assert!(actions(&mut pool, &mut sender).is_empty());
        assert_eq!(pool.connections_up(), 3);
    }

    #[test]
    fn connections_reset_before_any_ack_cost_one_attempt_and_are_redialed_one_at_a_time() {
        let (mut pool, mut sender) = start(StreamCount::Fixed(3));
        let now = Instant::now();
        dial_all(&mut pool, &mut sender, now);
        // Both the reader and the writer of connection 0 report the reset; 1 and 2 go with it.
        for id in [0, 0, 1, 2] {
            pool.handle_closed(&mut sender, ConnId(id), Some(Failure::Transient));
        }
        assert_eq!(pool.dial_failures(), 1);
        assert_eq!(pool.last_lost(), Some((ConnId(2), Loss::Unproven)));
        assert_eq!(pool.connections_failed(), 3);
        let next = actions(&mut pool, &mut sender);
        assert_eq!(
            next,
            [
                PoolAction::Close(ConnId(0)),
                PoolAction::Close(ConnId(1)),
                PoolAction::Close(ConnId(2)),
                PoolAction::Dial(ConnId(3))
            ]
        );
        pool.handle_dialed(&mut sender, ConnId(3), Version::V2, now);
        assert!(actions(&mut pool, &mut sender).is_empty(), "one at a time");
        // An ack proves connection 3: the budget is whole again and the pool fills up.
        sender.write(&[1; 1000]);
        sender.flush();
        let tx = sender.poll_transmit(now).expect("a frame");
        let mut rx = Receiver::new(ReceiverConfig::default()).expect("receiver");
        deliver(&tx, &mut rx);
        for (conn, ack) in acks_on(&mut rx) {
            pool.handle_ack(&mut sender, conn, ack, now);
        }
        assert_eq!(pool.dial_failures(), 0);
        assert_eq!(
            dial_all(&mut pool, &mut sender, now),
            [PoolAction::Dial(ConnId(4)), PoolAction::Dial(ConnId(5))]
        );
    }

    #[test]
    fn with_no_connection_left_and_redials_failing_it_fails_saying_what_happened() {
        let (mut pool, mut sender) = start(StreamCount::Fixed(1));
        dial_all(&mut pool, &mut sender, Instant::now());
        pool.handle_closed(&mut sender, ConnId(0), Some(Failure::Transient));
        let mut redials = 0;
        let failure = loop {
            match pool.poll_action(&mut sender).expect("an action") {
                PoolAction::Close(_) => {}
                PoolAction::Dial(id) => {
                    redials += 1;
                    pool.handle_dial_failed(id, Failure::Transient);
                }
                PoolAction::Fail(f) => break f,
                PoolAction::Done => panic!("nothing was sent"),
            }
        };
        assert_eq!(redials, 4, "the reset spent one of the five attempts");
        assert_eq!(failure.last_lost, Some((ConnId(0), Loss::Unproven)));
        assert_eq!(failure.dial_failures, 5);
        assert!(!failure.refused);
        assert_eq!(
            failure.to_string(),
            "connection 0 was lost before anything on it was acknowledged, and no connection \
             could be made again: 5 attempts in a row failed (a connection lost before any ack \
             counts as one)"
        );
        assert!(pool.poll_action(&mut sender).is_none(), "it fails once");
    }

    #[test]
    fn a_refusal_with_nothing_up_fails_at_once() {
        let (mut pool, mut sender) = start(StreamCount::Fixed(2));
        actions(&mut pool, &mut sender);
        pool.handle_dial_failed(ConnId(0), Failure::Refused);
        assert!(
            actions(&mut pool, &mut sender).is_empty(),
            "dial 1 is still out"
        );
        pool.handle_dial_failed(ConnId(1), Failure::Refused);
        let [PoolAction::Fail(f)] = &actions(&mut pool, &mut sender)[..] else {
            panic!("must fail");
        };
        assert!(f.refused);
        assert_eq!(f.last_lost, None);
    }

    #[test]
    fn the_fins_ack_counts_after_the_fins_connection_closed() {
        // The FIN goes out on connection 0 while the last frame is still on connection 1. The
        // finished receiver acks the FIN again on 1 and closes 0; the sender may learn of that
        // close before it reads 1's acks.
        let (mut pool, mut sender) = start(StreamCount::Fixed(2));
        let now = Instant::now();
        dial_all(&mut pool, &mut sender, now);
        sender.write(&[7; 128 * 1024]);
        sender.finish();
        let sent: Vec<Transmit> = std::iter::from_fn(|| sender.poll_transmit(now)).collect();
        let route: Vec<(Option<u64>, ConnId)> = sent.iter().map(|t| (t.seq, t.conn)).collect();
        assert_eq!(
            route,
            [
                (Some(0), ConnId(0)),
                (Some(1), ConnId(1)),
                (None, ConnId(0))
            ]
        );
        let mut rx = Receiver::new(ReceiverConfig::default()).expect("receiver");
        for i in [0, 2, 1] {
            deliver(&sent[i], &mut rx);
        }
        while rx.read().is_some() {}
        assert!(rx.is_complete());
        let (on_0, on_1): (Vec<_>, Vec<_>) = acks_on(&mut rx)
            .into_iter()
            .partition(|(c, _)| *c == ConnId(0));
        for (conn, ack) in on_0 {
            pool.handle_ack(&mut sender, conn, ack, now);
        }
        pool.handle_closed(&mut sender, ConnId(0), None);
        for (conn, ack) in on_1 {
            pool.handle_ack(&mut sender, conn, ack, now);
        }
        assert!(sender.is_finished());
        assert_eq!(
            actions(&mut pool, &mut sender),
            [PoolAction::Close(ConnId(0)), PoolAction::Done]
        );
        assert_eq!(
            pool.connections_failed(),
            0,
            "a clean close that lost nothing"
        );
    }

    #[test]
    fn with_every_data_frame_acked_a_lost_connection_is_not_replaced_while_one_is_left() {
        let (mut pool, mut sender) = start(StreamCount::Fixed(2));
        let now = Instant::now();
        dial_all(&mut pool, &mut sender, now);
        sender.write(&[3; 1000]);
        sender.finish();
        let sent: Vec<Transmit> = std::iter::from_fn(|| sender.poll_transmit(now)).collect();
        let mut rx = Receiver::new(ReceiverConfig::default()).expect("receiver");
        deliver(&sent[0], &mut rx);
        for (conn, ack) in acks_on(&mut rx) {
            pool.handle_ack(&mut sender, conn, ack, now);
        }
        assert!(sender.all_data_acked() && !sender.is_finished());
        pool.handle_closed(&mut sender, ConnId(1), None);
        assert_eq!(
            actions(&mut pool, &mut sender),
            [PoolAction::Close(ConnId(1))],
            "the receiver closes the others once it has everything"
        );
    }
}

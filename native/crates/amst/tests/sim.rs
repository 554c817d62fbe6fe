//! A sender and a receiver over a simulated network on a virtual clock: per-connection rate,
//! delay and TCP-like loss (a lost segment holds the connection's in-order delivery back by
//! a retransmission), an optional shared bottleneck, connections that die or cannot be dialed,
//! and frames damaged after the sender computed their CRC. The [`ConnectionPool`] decides what to
//! dial and close, as in the runtime. No sleeps.
#![allow(missing_docs, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use dwcp_amst::frame::{self, Frame, Version, CORRUPT_LIMIT};
use dwcp_amst::{
    AdaptConfig, AmstError, ConnId, ConnectionPool, Failure, Loss, PoolAction, PoolConfig,
    PoolFailure, Receiver, ReceiverConfig, Sender, SenderConfig, StreamCount,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Copy)]
struct LinkSpec {
    rate: f64,
    delay: Duration,
    loss: f64,
}

struct Link {
    spec: LinkSpec,
    busy_until: Instant,
    last_arrival: Instant,
    /// Dead links drop everything. `silent` ones do not tell the sender (a black hole).
    dead: bool,
}

enum Hop {
    /// Leaves its connection's queue and enters the shared bottleneck (FIFO by arrival).
    Bottleneck(ConnId, Vec<u8>),
    Receiver(ConnId, Vec<u8>),
    Sender(ConnId, Vec<u8>),
}

struct Net {
    now: Instant,
    links: BTreeMap<ConnId, Link>,
    bottleneck: Option<(f64, Instant)>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    hops: BTreeMap<u64, Hop>,
    next_hop: u64,
    rng: Rng,
}

impl Net {
    fn new(t0: Instant, bottleneck: Option<f64>) -> Self {
        Net {
            now: t0,
            links: BTreeMap::new(),
            bottleneck: bottleneck.map(|r| (r, t0)),
            queue: BinaryHeap::new(),
            hops: BTreeMap::new(),
            next_hop: 0,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn add(&mut self, id: ConnId, spec: LinkSpec) {
        let now = self.now;
        self.links.insert(
            id,
            Link {
                spec,
                busy_until: now,
                last_arrival: now,
                dead: false,
            },
        );
    }

    fn schedule(&mut self, at: Instant, hop: Hop) {
        self.queue.push(Reverse((at, self.next_hop)));
        self.hops.insert(self.next_hop, hop);
        self.next_hop += 1;
    }

    fn send_data(&mut self, id: ConnId, bytes: Vec<u8>) {
        let now = self.now;
        let lost = self.rng.unit();
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        if link.dead {
            return;
        }
        let len = bytes.len() as f64;
        let depart = link.busy_until.max(now) + Duration::from_secs_f64(len / link.spec.rate);
        link.busy_until = depart;
        if self.bottleneck.is_some() {
            self.schedule(depart, Hop::Bottleneck(id, bytes));
        } else {
            self.propagate(id, depart, bytes, lost);
        }
    }

    fn through_bottleneck(&mut self, id: ConnId, bytes: Vec<u8>) {
        let lost = self.rng.unit();
        let Some((rate, busy)) = &mut self.bottleneck else {
            return;
        };
        let depart = (*busy).max(self.now) + Duration::from_secs_f64(bytes.len() as f64 / *rate);
        *busy = depart;
        self.propagate(id, depart, bytes, lost);
    }

    fn propagate(&mut self, id: ConnId, depart: Instant, bytes: Vec<u8>, lost: f64) {
        let Some(link) = self.links.get_mut(&id) else {
            return;
        };
        let len = bytes.len() as f64;
        let mut arrive = depart + link.spec.delay;
        // A lost segment costs a retransmission: about one RTT more, and TCP delivers in order.
        let segments = (len / 1448.0).ceil();
        if lost < 1.0 - (1.0 - link.spec.loss).powf(segments) {
            arrive += link.spec.delay * 3;
        }
        arrive = arrive.max(link.last_arrival);
        link.last_arrival = arrive;
        self.schedule(arrive, Hop::Receiver(id, bytes));
    }

    fn send_ack(&mut self, id: ConnId, bytes: Vec<u8>) {
        let Some(link) = self.links.get(&id) else {
            return;
        };
        if link.dead {
            return;
        }
        let at = self.now + link.spec.delay;
        self.schedule(at, Hop::Sender(id, bytes));
    }

    fn next_time(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    fn pop_due(&mut self) -> Option<Hop> {
        let Reverse((t, id)) = *self.queue.peek()?;
        if t > self.now {
            return None;
        }
        self.queue.pop();
        let hop = self.hops.remove(&id)?;
        let conn = match &hop {
            Hop::Bottleneck(c, _) | Hop::Receiver(c, _) | Hop::Sender(c, _) => *c,
        };
        // Whatever was on a link when it died never arrives.
        if self.links.get(&conn).is_none_or(|l| l.dead) {
            return self.pop_due();
        }
        Some(hop)
    }
}

/// A fault injected at a time.
enum Fault {
    /// The connection is reset, and the runtime sees it.
    Kill(ConnId),
    /// Packets vanish and nobody says so.
    BlackHole(ConnId),
}

/// Which byte of a DATA frame (header and payload) to damage, given its `seq` and how many
/// copies of it were sent before this one; `None` leaves this copy alone.
type Damage = fn(seq: u64, copy: u32) -> Option<usize>;

struct Run {
    input: Vec<u8>,
    output: Vec<u8>,
    elapsed: Duration,
    sender: Sender,
    receiver: Receiver,
    pool: ConnectionPool,
    /// Why the pool gave up, if it did.
    pool_failure: Option<PoolFailure>,
    targets: Vec<u32>,
    /// DATA copies damaged on the way.
    damaged: u64,
    /// The first error of either end; the run stops at the sender's.
    sender_error: Option<AmstError>,
    receiver_error: Option<AmstError>,
}

struct Scenario {
    links: Vec<LinkSpec>,
    /// With a controller, links are opened and retired as it says; `links[0]` is the template.
    adapt: Option<AdaptConfig>,
    bottleneck: Option<f64>,
    bytes: usize,
    faults: Vec<(Duration, Fault)>,
    /// Which dials fail; all succeed without it.
    dial_fails: Option<fn(ConnId) -> bool>,
    sender: SenderConfig,
    receiver: ReceiverConfig,
    /// The consumer stops reading between these times.
    reader_pause: Option<(Duration, Duration)>,
    /// Flips a bit in some DATA frames after the sender computed their CRC.
    damage: Option<Damage>,
    limit: Duration,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            links: vec![],
            adapt: None,
            bottleneck: None,
            bytes: 16 << 20,
            faults: vec![],
            dial_fails: None,
            sender: SenderConfig::default(),
            receiver: ReceiverConfig::default(),
            reader_pause: None,
            damage: None,
            limit: Duration::from_secs(600),
        }
    }
}

fn run(s: Scenario) -> Run {
    let t0 = Instant::now();
    let mut rng = Rng(42);
    let input = rng.bytes(s.bytes);
    let mut net = Net::new(t0, s.bottleneck);
    let mut sender = Sender::new(s.sender.clone()).expect("sender config");
    let mut receiver = Receiver::new(s.receiver.clone()).expect("receiver config");
    let streams = match s.adapt.clone() {
        Some(c) => StreamCount::Adaptive(c),
        None => StreamCount::Fixed(s.links.len() as u32),
    };
    let mut pool = ConnectionPool::new(PoolConfig {
        streams,
        max_dial_failures: 5,
    })
    .expect("pool config");
    let mut faults = s.faults;
    faults.sort_by_key(|(t, _)| *t);
    let mut faults = faults.into_iter().peekable();
    let mut written = 0usize;
    let mut output = Vec::with_capacity(input.len());
    let mut pool_failure = None;
    let mut targets = Vec::new();
    let mut copies: HashMap<u64, u32> = HashMap::new();
    let mut damaged = 0u64;
    let mut sender_error = None;
    let mut receiver_error = None;

    while !(sender.is_finished() && receiver.is_complete())
        && sender_error.is_none()
        && pool_failure.is_none()
    {
        let now = net.now;
        assert!(
            now - t0 < s.limit,
            "stuck at {:?}: {:?}",
            now - t0,
            sender.stats()
        );
        while let Some((_, f)) = faults.next_if(|(t, _)| t0 + *t <= now) {
            match f {
                Fault::Kill(id) => {
                    if let Some(l) = net.links.get_mut(&id) {
                        l.dead = true;
                    }
                    pool.handle_closed(&mut sender, id, Some(Failure::Transient));
                }
                Fault::BlackHole(id) => {
                    if let Some(l) = net.links.get_mut(&id) {
                        l.dead = true;
                    }
                }
            }
        }
        // Producer: write whatever the sender accepts.
        if written < input.len() {
            written += sender.write(&input[written..]);
            if written == input.len() {
                sender.finish();
            }
        }
        let before = pool.target();
        pool.handle_timeout(&mut sender, now);
        if pool.target() != before {
            targets.push(pool.target());
            if std::env::var_os("SIM_TRACE").is_some() {
                eprintln!("t={:?} target={}", now - t0, pool.target());
            }
        }
        while let Some(action) = pool.poll_action(&mut sender) {
            match action {
                PoolAction::Dial(id) => {
                    if s.dial_fails.is_some_and(|fails| fails(id)) {
                        pool.handle_dial_failed(id, Failure::Transient);
                    } else {
                        net.add(id, s.links[id.0 as usize % s.links.len()]);
                        pool.handle_dialed(&mut sender, id, Version::V2, now);
                    }
                }
                PoolAction::Close(id) => {
                    if let Some(l) = net.links.get_mut(&id) {
                        l.dead = true;
                    }
                }
                PoolAction::Fail(f) => pool_failure = Some(f),
                PoolAction::Done => {}
            }
        }
        while let Some(hop) = net.pop_due() {
            match hop {
                Hop::Bottleneck(conn, bytes) => net.through_bottleneck(conn, bytes),
                Hop::Receiver(conn, bytes) => {
                    if receiver_error.is_some() {
                        continue; // the runtime has closed everything
                    }
                    let (f, used) = frame::parse(&bytes, Version::V2, receiver.max_frame())
                        .expect("parse")
                        .expect("whole frame");
                    assert_eq!(used, bytes.len());
                    if let Err(e) = receiver.handle_frame(conn, f) {
                        assert!(
                            matches!(e, AmstError::FrameCorrupt { .. }),
                            "receiver refused: {e}"
                        );
                        receiver_error = Some(e);
                    }
                    reply(&mut receiver, &mut net);
                }
                Hop::Sender(conn, bytes) => {
                    let (f, _) = frame::parse(&bytes, Version::V2, 0)
                        .expect("parse")
                        .expect("whole frame");
                    let handled = match f {
                        Frame::Ack(ack) => {
                            pool.handle_ack(&mut sender, conn, ack, net.now);
                            Ok(())
                        }
                        Frame::Nack { seq, crc } => {
                            pool.handle_nack(&mut sender, conn, seq, crc, net.now)
                        }
                        other => panic!("sender got {other:?}"),
                    };
                    if let Err(e) = handled {
                        sender_error = Some(e);
                    }
                }
            }
        }
        let paused = s
            .reader_pause
            .is_some_and(|(a, b)| now >= t0 + a && now < t0 + b);
        if !paused {
            while let Some(piece) = receiver.read() {
                output.extend_from_slice(&piece);
            }
            reply(&mut receiver, &mut net);
        }
        while let Some(tx) = sender.poll_transmit(now) {
            let mut bytes = tx.header.clone();
            bytes.extend_from_slice(&tx.payload);
            if let (Some(seq), Some(damage)) = (tx.seq, s.damage) {
                let copy = copies.entry(seq).or_insert(0);
                if let Some(at) = damage(seq, *copy) {
                    let len = bytes.len();
                    bytes[at % len] ^= 0x10;
                    damaged += 1;
                }
                *copy += 1;
            }
            net.send_data(tx.conn, bytes);
        }
        // Advance the clock to the next thing that can happen.
        let mut next = [
            net.next_time(),
            sender.poll_timeout(),
            pool.poll_timeout(),
            faults.peek().map(|(t, _)| t0 + *t),
            s.reader_pause.map(|(_, b)| t0 + b).filter(|t| *t > now),
        ]
        .into_iter()
        .flatten()
        .filter(|t| *t > now)
        .min()
        .unwrap_or(now + Duration::from_millis(1));
        next = next.min(now + Duration::from_millis(50));
        net.now = next;
    }
    Run {
        input,
        output,
        elapsed: net.now - t0,
        sender,
        receiver,
        pool,
        pool_failure,
        targets,
        damaged,
        sender_error,
        receiver_error,
    }
}

/// The receiver's acks and NACKs go back on the connection the frame came in on.
fn reply(receiver: &mut Receiver, net: &mut Net) {
    while let Some((c, ack)) = receiver.poll_ack() {
        net.send_ack(c, frame::encode_ack(&ack).to_vec());
    }
    while let Some((c, seq, crc)) = receiver.poll_nack() {
        net.send_ack(c, frame::encode_nack(seq, crc).to_vec());
    }
}

fn link(mbps: f64, one_way_ms: u64, loss: f64) -> LinkSpec {
    LinkSpec {
        rate: mbps * 1e6 / 8.0,
        delay: Duration::from_millis(one_way_ms),
        loss,
    }
}

fn goodput_mbps(r: &Run) -> f64 {
    r.input.len() as f64 * 8.0 / r.elapsed.as_secs_f64() / 1e6
}

fn assert_exact(r: &Run) {
    assert!(r.sender_error.is_none(), "{:?}", r.sender_error);
    assert!(r.receiver_error.is_none(), "{:?}", r.receiver_error);
    assert_eq!(r.output.len(), r.input.len(), "length");
    assert!(
        r.output == r.input,
        "delivered stream differs from the input"
    );
}

#[test]
fn ordered_and_exact_under_loss() {
    let r = run(Scenario {
        links: vec![link(40.0, 25, 0.01); 4],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.receiver.stats().duplicates, 0);
    assert!(
        goodput_mbps(&r) > 0.6 * 160.0,
        "{:.1} Mbit/s",
        goodput_mbps(&r)
    );
}

#[test]
fn a_killed_connection_loses_nothing_and_duplicates_nothing() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        faults: vec![(Duration::from_millis(800), Fault::Kill(ConnId(1)))],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert!(r.sender.stats().frames_resent > 0, "{:?}", r.sender.stats());
    // Acks in flight on the dead link are lost too, so some resent frames had arrived: the
    // receiver drops those copies, and the delivered stream (checked above) has none.
    assert!(r.receiver.stats().duplicates <= r.sender.stats().frames_resent);
    assert_eq!(r.pool.last_lost(), Some((ConnId(1), Loss::Broken)));
    // The pool replaced it.
    assert_eq!(r.sender.stats().connections, 3);
    assert_eq!(r.pool.connections_opened(), 4);
}

#[test]
fn the_only_connection_reset_before_any_ack_is_redialed_and_its_frames_resent() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0)],
        faults: vec![(Duration::from_millis(1), Fault::Kill(ConnId(0)))],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.pool.last_lost(), Some((ConnId(0), Loss::Unproven)));
    assert_eq!(r.pool.connections_opened(), 2);
    assert!(r.sender.stats().frames_resent > 0, "{:?}", r.sender.stats());
    assert_eq!(
        r.pool.dial_failures(),
        0,
        "the replacement's acks restored the budget"
    );
}

#[test]
fn the_first_connection_reset_before_any_ack_moves_its_frames_to_the_others() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        faults: vec![(Duration::from_millis(1), Fault::Kill(ConnId(0)))],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(
        r.receiver.stats().duplicates,
        0,
        "nothing of it had arrived"
    );
    assert_eq!(r.pool.last_lost(), Some((ConnId(0), Loss::Unproven)));
    assert_eq!(r.sender.stats().connections, 3, "replaced");
}

#[test]
fn connections_lost_together_at_the_start_cost_one_attempt_of_the_budget() {
    // All four first connections go at once, then three re-dials fail: four of the five
    // attempts. The next one works and the transfer completes.
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 4],
        faults: (0..4)
            .map(|i| (Duration::from_millis(1), Fault::Kill(ConnId(i))))
            .collect(),
        dial_fails: Some(|id| (4..7).contains(&id.0)),
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.pool.connections_opened(), 8, "4, then 7, then 3 more");
}

#[test]
fn with_every_connection_reset_and_redials_failing_the_transfer_fails_saying_so() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 2],
        faults: vec![
            (Duration::from_millis(1), Fault::Kill(ConnId(0))),
            (Duration::from_millis(2), Fault::Kill(ConnId(1))),
        ],
        dial_fails: Some(|id| id.0 >= 2),
        ..Scenario::default()
    });
    let failure = r.pool_failure.expect("the transfer must fail");
    assert_eq!(failure.last_lost, Some((ConnId(1), Loss::Unproven)));
    assert_eq!(failure.dial_failures, 5);
    assert!(!failure.refused && !failure.all_data_acked);
    let message = failure.to_string();
    assert!(
        message.contains("connection 1") && message.contains("5 attempts in a row failed"),
        "{message}"
    );
    assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
    assert!(r.output.is_empty());
}

#[test]
fn a_black_hole_is_detected_as_a_stall_and_routed_around() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        faults: vec![(Duration::from_millis(500), Fault::BlackHole(ConnId(2)))],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.pool.connections_failed(), 1);
    assert_eq!(r.pool.last_lost(), Some((ConnId(2), Loss::Stalled)));
    assert!(r.sender.stats().frames_resent > 0);
}

#[test]
fn a_slow_connection_does_not_hold_the_stream_back() {
    let r = run(Scenario {
        links: vec![link(160.0, 10, 0.0), link(4.0, 10, 0.0)],
        bytes: 32 << 20,
        ..Scenario::default()
    });
    assert_exact(&r);
    // Nearly the sum of both links, not twice the slow one.
    assert!(goodput_mbps(&r) > 140.0, "{:.1} Mbit/s", goodput_mbps(&r));
}

#[test]
fn pacing_holds_the_rate_cap() {
    let r = run(Scenario {
        links: vec![link(200.0, 5, 0.0); 2],
        sender: SenderConfig {
            rate_cap: Some(5_000_000),
            ..SenderConfig::default()
        },
        bytes: 20 << 20,
        ..Scenario::default()
    });
    assert_exact(&r);
    let rate = r.input.len() as f64 / r.elapsed.as_secs_f64();
    assert!((4.5e6..=5.3e6).contains(&rate), "{rate:.0} B/s");
}

#[test]
fn a_reader_that_stops_stops_the_sender_and_nothing_is_lost() {
    let r = run(Scenario {
        links: vec![link(100.0, 5, 0.0); 2],
        receiver: ReceiverConfig {
            window: 64,
            ..ReceiverConfig::default()
        },
        reader_pause: Some((Duration::from_millis(200), Duration::from_secs(3))),
        bytes: 24 << 20,
        ..Scenario::default()
    });
    assert_exact(&r);
    assert!(
        r.elapsed > Duration::from_secs(3),
        "the pause must have held the stream"
    );
}

#[test]
fn adds_connections_while_goodput_grows_on_a_lossy_path() {
    // Each loss-limited connection carries a few Mbit/s; the path carries 100 Mbit/s.
    let r = run(Scenario {
        links: vec![link(12.0, 50, 0.0)],
        adapt: Some(AdaptConfig {
            epoch: Duration::from_millis(800),
            ..AdaptConfig::default()
        }),
        bottleneck: Some(100e6 / 8.0),
        bytes: 160 << 20,
        ..Scenario::default()
    });
    assert_exact(&r);
    let most = r.targets.iter().copied().max().unwrap_or(0);
    assert!((7..=12).contains(&most), "targets {:?}", r.targets);
    assert!(
        goodput_mbps(&r) > 55.0,
        "{:.1} Mbit/s with targets {:?}",
        goodput_mbps(&r),
        r.targets
    );
}

#[test]
fn keeps_few_connections_when_one_fills_the_path() {
    let r = run(Scenario {
        links: vec![link(400.0, 5, 0.0)],
        adapt: Some(AdaptConfig {
            epoch: Duration::from_millis(200),
            ..AdaptConfig::default()
        }),
        bottleneck: Some(100e6 / 8.0),
        bytes: 96 << 20,
        ..Scenario::default()
    });
    assert_exact(&r);
    let late = &r.targets[r.targets.len() / 2..];
    assert!(late.iter().all(|&n| n <= 3), "targets {:?}", r.targets);
}

#[test]
fn a_frame_handled_in_its_wire_buffer_is_kept_without_a_copy() {
    let mut rx = Receiver::new(ReceiverConfig::default()).expect("config");
    let payload = b"kept where it was read".to_vec();
    let (header, n) = frame::data_header(Version::V2, 0, payload.len(), frame::crc(0, &payload));
    let mut wire = header[..n].to_vec();
    wire.extend_from_slice(&payload);
    let wire = bytes::Bytes::from(wire);
    let (f, _) = frame::parse(&wire, Version::V2, 1024)
        .expect("frame")
        .expect("complete");
    rx.handle_frame_in(ConnId(0), f, &wire).expect("accepted");
    let other = bytes::Bytes::from_static(b"another buffer");
    let (header, n) = frame::data_header(Version::V2, 1, payload.len(), frame::crc(1, &payload));
    let mut second = header[..n].to_vec();
    second.extend_from_slice(&payload);
    let (f, _) = frame::parse(&second, Version::V2, 1024)
        .expect("frame")
        .expect("complete");
    rx.handle_frame_in(ConnId(0), f, &other).expect("accepted");
    let first = rx.read().expect("in order");
    assert_eq!(&first[..], &payload[..]);
    assert_eq!(
        first.as_ptr(),
        wire[n..].as_ptr(),
        "a slice of the wire buffer"
    );
    let copied = rx.read().expect("in order");
    assert_eq!(
        &copied[..],
        &payload[..],
        "a payload outside `wire` is copied"
    );
}

#[test]
fn frames_beyond_the_window_or_too_large_are_refused() {
    let mut rx = Receiver::new(ReceiverConfig {
        window: 4,
        max_frame: 1024,
    })
    .expect("config");
    let far = rx.handle_frame(
        ConnId(0),
        Frame::Data {
            seq: 9,
            payload: b"x",
            crc: None,
        },
    );
    assert_eq!(
        far.expect_err("beyond window").code(),
        "ERR_AMST_BEYOND_WINDOW"
    );
    let big = vec![0u8; 2048];
    let large = rx.handle_frame(
        ConnId(0),
        Frame::Data {
            seq: 0,
            payload: &big,
            crc: None,
        },
    );
    assert_eq!(
        large.expect_err("too large").code(),
        "ERR_AMST_FRAME_TOO_LARGE"
    );
    let ack = rx.handle_frame(
        ConnId(0),
        Frame::Ack(frame::Ack {
            seq: 0,
            cumulative: 0,
            window: 1,
        }),
    );
    assert_eq!(
        ack.expect_err("ack to receiver").code(),
        "ERR_AMST_PROTOCOL"
    );
    rx.handle_frame(
        ConnId(0),
        Frame::Fin {
            total_frames: 0,
            total_bytes: 0,
        },
    )
    .expect("empty stream");
    assert!(rx.is_complete());
    let after = rx.handle_frame(
        ConnId(0),
        Frame::Data {
            seq: 0,
            payload: b"late",
            crc: None,
        },
    );
    assert!(after.is_err());
}

/// A bit of the payload of every 40th frame's first copy.
fn payload_of_every_40th(seq: u64, copy: u32) -> Option<usize> {
    (seq % 40 == 7 && copy == 0).then_some(frame::DATA_HEADER_LEN + 1000 + seq as usize)
}

#[test]
fn a_corrupt_frame_is_dropped_nacked_resent_and_the_stream_stays_exact() {
    let clean = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        ..Scenario::default()
    });
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        damage: Some(payload_of_every_40th),
        ..Scenario::default()
    });
    assert_exact(&r);
    assert!(r.damaged >= 6, "{} damaged", r.damaged);
    assert_eq!(r.receiver.stats().corrupt_frames, r.damaged);
    assert_eq!(r.sender.stats().frames_nacked, r.damaged);
    assert_eq!(r.sender.stats().frames_resent, r.damaged);
    assert_eq!(r.receiver.stats().duplicates, 0);
    assert_eq!(
        r.pool.connections_failed(),
        0,
        "payload damage fails no connection"
    );
    // A NACK costs about a round trip, not a stall timeout (3 s).
    assert!(
        r.elapsed < clean.elapsed + Duration::from_millis(500),
        "{:?} against {:?} without damage",
        r.elapsed,
        clean.elapsed
    );
}

#[test]
fn a_frame_damaged_again_and_again_up_to_the_limit_still_arrives() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 2],
        damage: Some(|seq, copy| {
            (seq == 100 && copy < CORRUPT_LIMIT).then_some(frame::DATA_HEADER_LEN + 5)
        }),
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.damaged, u64::from(CORRUPT_LIMIT));
    assert_eq!(r.receiver.stats().corrupt_frames, u64::from(CORRUPT_LIMIT));
    assert_eq!(r.sender.stats().frames_resent, u64::from(CORRUPT_LIMIT));
}

#[test]
fn a_frame_damaged_beyond_the_limit_fails_both_ends_with_a_typed_error() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 2],
        // The sender's own copy is bad: every copy arrives damaged.
        damage: Some(|seq, _| (seq == 100).then_some(frame::DATA_HEADER_LEN + 5)),
        ..Scenario::default()
    });
    let expected = AmstError::FrameCorrupt {
        seq: 100,
        copies: CORRUPT_LIMIT + 1,
    };
    assert_eq!(r.sender_error.as_ref(), Some(&expected));
    assert_eq!(r.receiver_error.as_ref(), Some(&expected));
    assert_eq!(expected.code(), "ERR_AMST_FRAME_CORRUPT");
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    // Nothing of frame 100 or after it was delivered.
    assert!(r.output.len() <= 100 * SenderConfig::default().frame_size);
    assert!(r.output == r.input[..r.output.len()]);
}

#[test]
fn a_damaged_header_fails_that_connection_and_its_frames_move() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        // A bit of the sequence number: the NACK names a frame the connection does not carry.
        damage: Some(|seq, copy| (seq == 50 && copy == 0).then_some(2)),
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.receiver.stats().corrupt_frames, 1);
    assert_eq!(
        r.pool.connections_failed(),
        1,
        "the connection that carried it"
    );
    assert!(r.sender.stats().frames_resent >= 1);
}

#[test]
fn a_frame_with_a_wrong_crc_is_nacked_and_neither_acked_nor_delivered() {
    let mut rx = Receiver::new(ReceiverConfig::default()).expect("config");
    let crc = frame::crc(0, b"hello");
    let bad = Frame::Data {
        seq: 0,
        payload: b"hellp",
        crc: Some(crc),
    };
    rx.handle_frame(ConnId(3), bad)
        .expect("a bad copy is not an error");
    assert!(rx.read().is_none());
    assert!(rx.poll_ack().is_none());
    assert_eq!(rx.poll_nack(), Some((ConnId(3), 0, crc)));
    let good = Frame::Data {
        seq: 0,
        payload: b"hello",
        crc: Some(crc),
    };
    rx.handle_frame(ConnId(1), good).expect("the resent copy");
    assert_eq!(rx.read().as_deref(), Some(&b"hello"[..]));
    assert_eq!(rx.poll_ack().map(|(c, a)| (c, a.seq)), Some((ConnId(1), 0)));
    assert_eq!(rx.stats().corrupt_frames, 1);
    assert_eq!(rx.stats().frames, 1);
}

//! A sender and a receiver over a simulated network on a virtual clock: per-connection rate,
//! delay and TCP-like loss (a lost segment holds the connection's in-order delivery back by
//! a retransmission), an optional shared bottleneck, and connections that die. No sleeps.
#![allow(missing_docs, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use dwcp_amst::frame::{self, Frame};
use dwcp_amst::{
    AdaptConfig, ConnId, Receiver, ReceiverConfig, Sender, SenderConfig, SenderEvent,
    StreamCountController,
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
    /// The runtime sees the connection close.
    Kill(ConnId),
    /// Packets vanish and nobody says so.
    BlackHole(ConnId),
}

struct Run {
    input: Vec<u8>,
    output: Vec<u8>,
    elapsed: Duration,
    sender: Sender,
    receiver: Receiver,
    failed: Vec<ConnId>,
    targets: Vec<u32>,
}

struct Scenario {
    links: Vec<LinkSpec>,
    /// With a controller, links are opened and retired as it says; `links[0]` is the template.
    adapt: Option<AdaptConfig>,
    bottleneck: Option<f64>,
    bytes: usize,
    faults: Vec<(Duration, Fault)>,
    sender: SenderConfig,
    receiver: ReceiverConfig,
    /// The consumer stops reading between these times.
    reader_pause: Option<(Duration, Duration)>,
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
            sender: SenderConfig::default(),
            receiver: ReceiverConfig::default(),
            reader_pause: None,
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
    let mut controller = s
        .adapt
        .clone()
        .map(|c| StreamCountController::new(c).expect("adapt config"));
    let mut next_id = 0u32;
    let mut open = |net: &mut Net, sender: &mut Sender, spec: LinkSpec| {
        let id = ConnId(next_id);
        next_id += 1;
        net.add(id, spec);
        sender.handle_connected(id, net.now);
    };
    let initial = controller
        .as_ref()
        .map_or(s.links.len() as u32, |c| c.target());
    for i in 0..initial as usize {
        open(&mut net, &mut sender, s.links[i.min(s.links.len() - 1)]);
    }
    let mut faults = s.faults;
    faults.sort_by_key(|(t, _)| *t);
    let mut faults = faults.into_iter().peekable();
    let mut written = 0usize;
    let mut output = Vec::with_capacity(input.len());
    let mut failed = Vec::new();
    let mut targets = Vec::new();
    let mut active: Vec<ConnId> = sender.connections();

    while !(sender.is_finished() && receiver.is_complete()) {
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
                    sender.handle_disconnected(id);
                    active.retain(|c| *c != id);
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
        sender.handle_timeout(now);
        while let Some(ev) = sender.poll_event() {
            match ev {
                SenderEvent::ConnectionFailed(id) => {
                    failed.push(id);
                    active.retain(|c| *c != id);
                }
                SenderEvent::ConnectionRetired(id) => {
                    net.links.remove(&id);
                }
            }
        }
        if let Some(c) = controller.as_mut() {
            let delivered = sender.stats().bytes_acked;
            let changed = c.handle_progress(delivered, now);
            if std::env::var_os("SIM_TRACE").is_some() && changed.is_some() {
                eprintln!(
                    "t={:?} goodput={:.0} target={:?} conns={:?}",
                    now - t0,
                    c.last_goodput(),
                    changed,
                    sender
                        .conn_stats()
                        .iter()
                        .map(|s| (
                            s.delivery_rate as u64,
                            s.inflight_bytes,
                            s.window_bytes,
                            s.min_rtt
                        ))
                        .collect::<Vec<_>>()
                );
            }
            if let Some(target) = changed {
                targets.push(target);
                while (active.len() as u32) < target {
                    let spec = s.links[0];
                    open(&mut net, &mut sender, spec);
                    active = sender.connections();
                }
                while (active.len() as u32) > target {
                    if let Some(id) = active.pop() {
                        sender.retire(id);
                    }
                }
            }
        }
        while let Some(hop) = net.pop_due() {
            match hop {
                Hop::Bottleneck(conn, bytes) => net.through_bottleneck(conn, bytes),
                Hop::Receiver(conn, bytes) => {
                    let (f, used) = frame::parse(&bytes, receiver.max_frame())
                        .expect("parse")
                        .expect("whole frame");
                    assert_eq!(used, bytes.len());
                    receiver.handle_frame(conn, f).expect("receiver accepts");
                    while let Some((c, ack)) = receiver.poll_ack() {
                        net.send_ack(c, frame::encode_ack(&ack).to_vec());
                    }
                }
                Hop::Sender(conn, bytes) => {
                    let (f, _) = frame::parse(&bytes, 0).expect("parse").expect("whole ack");
                    let Frame::Ack(ack) = f else {
                        panic!("sender got {f:?}")
                    };
                    sender
                        .handle_ack(conn, ack, net.now)
                        .expect("sender accepts ack");
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
            while let Some((c, ack)) = receiver.poll_ack() {
                net.send_ack(c, frame::encode_ack(&ack).to_vec());
            }
        }
        while let Some(tx) = sender.poll_transmit(now) {
            let mut bytes = tx.header.clone();
            bytes.extend_from_slice(&tx.payload);
            net.send_data(tx.conn, bytes);
        }
        // Advance the clock to the next thing that can happen.
        let mut next = [
            net.next_time(),
            sender.poll_timeout(),
            controller.as_ref().and_then(|c| c.poll_timeout()),
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
        failed,
        targets,
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
    assert_eq!(r.sender.stats().connections, 2);
}

#[test]
fn a_black_hole_is_detected_as_a_stall_and_routed_around() {
    let r = run(Scenario {
        links: vec![link(40.0, 20, 0.0); 3],
        faults: vec![(Duration::from_millis(500), Fault::BlackHole(ConnId(2)))],
        ..Scenario::default()
    });
    assert_exact(&r);
    assert_eq!(r.failed, vec![ConnId(2)]);
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
        },
    );
    assert!(after.is_err());
}

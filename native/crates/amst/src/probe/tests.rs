//! The probe on a virtual clock over a simulated bottleneck: no sockets, no sleeps.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;

/// Every connection shares one FIFO bottleneck of `rate` bytes/s; an ack comes back `rtt`
/// after a frame leaves it.
struct Path {
    rate: f64,
    rtt: Duration,
    free_at: Instant,
    acks: BTreeMap<(Instant, u64), ConnId>,
    /// Frames after which the path goes silent (a cut).
    cut_after: Option<u64>,
    sent: u64,
}

impl Path {
    fn new(mbit: f64, rtt_ms: u64, now: Instant) -> Self {
        Path {
            rate: mbit * 1e6 / 8.0,
            rtt: Duration::from_millis(rtt_ms),
            free_at: now,
            acks: BTreeMap::new(),
            cut_after: None,
            sent: 0,
        }
    }

    fn send(&mut self, tx: ProbeTransmit, now: Instant) {
        self.sent += 1;
        if self.cut_after.is_some_and(|n| self.sent > n) {
            return;
        }
        let start = self.free_at.max(now);
        self.free_at = start + Duration::from_secs_f64(f64::from(tx.len) / self.rate);
        self.acks.insert((self.free_at + self.rtt, tx.id), tx.conn);
    }
}

/// Runs the probe to its end; also returns the virtual time it took.
fn run(probe: &mut Probe, path: &mut Path, mut now: Instant) -> Result<ProbeResult, ProbeError> {
    for _ in 0..1_000_000 {
        while let Some(tx) = probe.poll_transmit(now) {
            path.send(tx, now);
        }
        if let Some(outcome) = probe.poll_outcome() {
            return outcome;
        }
        let next_ack = path.acks.keys().next().map(|k| k.0);
        let wake = [next_ack, probe.poll_timeout()].into_iter().flatten().min();
        now = wake.expect("a probe always has a timer");
        while let Some((&(at, id), _)) = path.acks.iter().next() {
            if at > now {
                break;
            }
            path.acks.remove(&(at, id));
            probe.handle_ack(id, now);
        }
        probe.handle_timeout(now);
    }
    panic!("the probe never ended");
}

fn started(conns: u32, max_ms: u64) -> (Probe, Instant) {
    let now = Instant::now();
    let mut probe = Probe::new(ProbeConfig::new(Duration::from_millis(max_ms)), now);
    for c in 0..conns {
        probe.handle_connection(ConnId(c));
    }
    (probe, now)
}

#[test]
fn it_stops_when_goodput_stops_growing_and_measures_the_bottleneck() {
    let (mut probe, now) = started(4, 5000);
    let mut path = Path::new(100.0, 50, now);
    let r = run(&mut probe, &mut path, now).unwrap();
    assert_eq!(r.ended, ProbeEnd::Plateau, "{r:?}");
    let target = 100e6 / 8.0;
    assert!((r.goodput - target).abs() < 0.15 * target, "{r:?}");
    assert!(r.rounds >= 4, "growth then three flat rounds: {r:?}");
    // Three flat rounds of ~one RTT each after the climb: well under the limit.
    assert!(r.duration < Duration::from_millis(2000), "{r:?}");
    assert!(r.min_rtt.unwrap() >= Duration::from_millis(50), "{r:?}");
    assert_eq!(r.connections.len(), 4);
    assert_eq!(r.connections.iter().map(|c| c.bytes).sum::<u64>(), r.bytes);
}

#[test]
fn the_time_limit_ends_a_probe_that_is_still_growing() {
    let (mut probe, now) = started(2, 300);
    // 10 Gbit/s at 100 ms: the windows cannot fill it in 300 ms.
    let mut path = Path::new(10_000.0, 100, now);
    let r = run(&mut probe, &mut path, now).unwrap();
    assert_eq!(r.ended, ProbeEnd::MaxTime, "{r:?}");
    assert_eq!(r.duration, Duration::from_millis(300));
    assert!(r.bytes > 0);
}

#[test]
fn waiting_stream_bytes_end_the_probe_at_once() {
    let (mut probe, now) = started(2, 5000);
    let mut path = Path::new(100.0, 20, now);
    while let Some(tx) = probe.poll_transmit(now) {
        path.send(tx, now);
    }
    let later = now + Duration::from_millis(30);
    probe.handle_ack(0, later);
    probe.handle_stream_waiting(later);
    assert!(
        probe.poll_transmit(later).is_none(),
        "not one more probe frame"
    );
    assert!(probe.poll_timeout().is_none());
    let r = probe.poll_outcome().unwrap().unwrap();
    assert_eq!(r.ended, ProbeEnd::Stream);
    assert_eq!(r.bytes, 16 * 1024);
    assert!(probe.poll_outcome().is_none(), "the outcome comes once");
}

#[test]
fn a_lost_connection_fails_the_probe_and_says_which() {
    let (mut probe, now) = started(2, 5000);
    let _ = probe.poll_transmit(now);
    probe.handle_lost(ConnId(1), "reset by peer", now + Duration::from_millis(40));
    match probe.poll_outcome() {
        Some(Err(ProbeError::Lost(why))) => {
            assert!(
                why.contains("connection 1") && why.contains("40 ms"),
                "{why}"
            );
            assert!(why.contains("reset by peer"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(probe.poll_transmit(now).is_none());
}

#[test]
fn a_retired_connection_does_not_fail_the_probe() {
    let (mut probe, now) = started(2, 400);
    let mut path = Path::new(100.0, 20, now);
    probe.handle_retired(ConnId(1));
    let r = run(&mut probe, &mut path, now).unwrap();
    assert_eq!(r.connections.len(), 1, "{r:?}");
}

#[test]
fn a_silent_path_fails_the_probe_by_the_stall_rule_not_never() {
    let (mut probe, now) = started(2, 60_000);
    let mut path = Path::new(100.0, 20, now);
    path.cut_after = Some(6);
    let err = run(&mut probe, &mut path, now).unwrap_err();
    assert!(
        matches!(&err, ProbeError::Lost(why) if why.contains("no probe frame acknowledged")),
        "{err:?}"
    );
}

#[test]
fn a_probe_with_nothing_acknowledged_by_its_limit_fails() {
    let (mut probe, now) = started(0, 200);
    let mut path = Path::new(100.0, 20, now);
    let err = run(&mut probe, &mut path, now).unwrap_err();
    assert_eq!(err, ProbeError::NothingAcked(Duration::from_millis(200)));
}

#[test]
fn a_path_that_goes_silent_before_the_limit_fails_at_the_limit() {
    let (mut probe, now) = started(2, 500);
    let mut path = Path::new(10_000.0, 20, now);
    path.cut_after = Some(40);
    let err = run(&mut probe, &mut path, now).unwrap_err();
    assert!(
        matches!(&err, ProbeError::Lost(why) if why.contains("in the last")),
        "{err:?}"
    );
}

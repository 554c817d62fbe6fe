//! Counters each forwarding thread bumps, and the JSON line the main thread prints from them.
//!
//! Benches read these lines to tell the emulator's own drops (loss, queue overflow) from drops
//! elsewhere, so the field names are a contract: add fields, do not rename them.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

/// One direction's counters. Written by its forwarding thread(s), read by the stats printer.
/// Cache-line aligned so the two directions' threads do not false-share.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct DirectionCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    lost_packets: AtomicU64,
    queue_drop_packets: AtomicU64,
    write_error_packets: AtomicU64,
    in_flight_packets: AtomicU64,
}

impl DirectionCounters {
    /// A packet of `bytes` was read from the sending side.
    pub fn received(&self, bytes: usize) {
        self.rx_packets.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A packet of `bytes` was written to the receiving side.
    pub fn forwarded(&self, bytes: usize) {
        self.tx_packets.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Random loss took a packet.
    pub fn lost(&self) {
        self.lost_packets.fetch_add(1, Relaxed);
    }

    /// The bottleneck queue was full.
    pub fn queue_dropped(&self) {
        self.queue_drop_packets.fetch_add(1, Relaxed);
    }

    /// The receiving side refused a packet (device gone, malformed packet).
    pub fn write_failed(&self) {
        self.write_error_packets.fetch_add(1, Relaxed);
    }

    /// Adds `delta` (may be negative) to the packets currently held; a gauge, so relay
    /// connections can share it.
    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight_packets.fetch_add(delta as u64, Relaxed);
    }

    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            lost_packets: self.lost_packets.load(Relaxed),
            queue_drop_packets: self.queue_drop_packets.load(Relaxed),
            write_error_packets: self.write_error_packets.load(Relaxed),
            in_flight_packets: self.in_flight_packets.load(Relaxed),
        }
    }
}

/// A point-in-time copy of one direction's counters.
#[derive(Debug, Serialize)]
pub struct DirectionStats {
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
    lost_packets: u64,
    queue_drop_packets: u64,
    write_error_packets: u64,
    in_flight_packets: u64,
}

/// Both directions' counters.
#[derive(Debug, Default)]
pub struct PathCounters {
    /// Traffic from side A (ns-a, or the relay's listening side) to side B.
    pub a_to_b: Arc<DirectionCounters>,
    /// Traffic from side B to side A.
    pub b_to_a: Arc<DirectionCounters>,
}

#[derive(Serialize)]
struct StatsLine<'a> {
    event: &'a str,
    mode: &'a str,
    uptime_s: f64,
    a_to_b: DirectionStats,
    b_to_a: DirectionStats,
}

impl PathCounters {
    /// The JSON line for `event` ("stats" or "final").
    pub fn json_line(&self, event: &str, mode: &str, started: Instant) -> String {
        let line = StatsLine {
            event,
            mode,
            uptime_s: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            a_to_b: self.a_to_b.snapshot(),
            b_to_a: self.b_to_a.snapshot(),
        };
        serde_json::to_string(&line).expect("stats serialise")
    }
}

/// Replaces `path` with `line` atomically (write then rename), so readers never see half a line.
pub fn write_stats_file(path: &Path, line: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{line}")?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_stable_field_names() {
        let c = PathCounters::default();
        c.a_to_b.received(1500);
        c.a_to_b.forwarded(1500);
        c.a_to_b.lost();
        c.b_to_a.queue_dropped();
        c.b_to_a.add_in_flight(3);
        c.b_to_a.add_in_flight(-1);
        let v: serde_json::Value =
            serde_json::from_str(&c.json_line("final", "netns", Instant::now())).unwrap();
        assert_eq!(v["event"], "final");
        assert_eq!(v["a_to_b"]["rx_bytes"], 1500);
        assert_eq!(v["a_to_b"]["tx_packets"], 1);
        assert_eq!(v["a_to_b"]["lost_packets"], 1);
        assert_eq!(v["b_to_a"]["queue_drop_packets"], 1);
        assert_eq!(v["b_to_a"]["in_flight_packets"], 2);
    }
}

//! How many bytes per second the sans-IO core moves on one CPU core: a sender and a receiver
//! joined in memory, every frame encoded, parsed, checked, reordered and acked as on a real
//! connection (CRC included), with no network and no TLS: what AMST itself costs per byte.
//!
//! `cargo test --release -p dwcp-amst --test throughput -- --ignored --nocapture`
#![allow(
    missing_docs,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::time::Instant;

use dwcp_amst::frame::{self, Frame, Version};
use dwcp_amst::{ConnId, Receiver, ReceiverConfig, Sender, SenderConfig};

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn core_throughput() {
    let total: usize = 4 << 30;
    let piece: Vec<u8> = (0..1 << 20).map(|i| (i * 31 + 7) as u8).collect();
    let mut sender = Sender::new(SenderConfig::default()).expect("sender");
    let mut receiver = Receiver::new(ReceiverConfig::default()).expect("receiver");
    let conn = ConnId(0);
    let now = Instant::now();
    sender.handle_connected(conn, Version::V2, now);
    let started = Instant::now();
    let (mut written, mut read) = (0usize, 0usize);
    let mut wire = Vec::with_capacity(128 * 1024);
    while read < total {
        if written < total {
            written += sender.write(&piece[..piece.len().min(total - written)]);
            if written == total {
                sender.finish();
            }
        }
        while let Some(tx) = sender.poll_transmit(now) {
            wire.clear();
            wire.extend_from_slice(&tx.header);
            wire.extend_from_slice(&tx.payload);
            let (f, _) = frame::parse(&wire, Version::V2, receiver.max_frame())
                .expect("parse")
                .expect("whole frame");
            receiver.handle_frame(tx.conn, f).expect("receiver accepts");
        }
        while let Some(data) = receiver.read() {
            read += data.len();
        }
        while let Some((c, ack)) = receiver.poll_ack() {
            let bytes = frame::encode_ack(&ack);
            let (f, _) = frame::parse(&bytes, Version::V2, 0)
                .expect("parse")
                .expect("ack");
            let Frame::Ack(ack) = f else {
                panic!("not an ack")
            };
            sender.handle_ack(c, ack, now).expect("ack");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "core: {} MiB in {secs:.2} s = {:.0} MB/s",
        total >> 20,
        total as f64 / secs / 1e6
    );
}

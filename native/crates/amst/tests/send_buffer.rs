//! The send buffer limit changes while a sender runs: it bounds what `write` takes from then on,
//! never drops what it already took, and refuses a limit under two frames.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use bytes::Bytes;
use dwcp_amst::frame::Version;
use dwcp_amst::{AmstError, ConnId, Sender, SenderConfig};

fn sender(send_buffer: usize) -> Sender {
    Sender::new(SenderConfig {
        frame_size: 64 * 1024,
        send_buffer,
        ..SenderConfig::default()
    })
    .unwrap()
}

#[test]
fn a_new_limit_bounds_what_write_takes_from_then_on() {
    let mut s = sender(1 << 20);
    let data = vec![7u8; 4 << 20];
    assert_eq!(s.write(&data), 1 << 20);
    assert_eq!(s.writable(), 0);

    s.set_send_buffer(3 << 20).unwrap();
    assert_eq!(s.send_buffer(), 3 << 20);
    assert_eq!(s.writable(), 2 << 20);
    assert_eq!(s.write(&data), 2 << 20);

    // Below what is buffered: nothing more is taken, and nothing taken is lost.
    s.set_send_buffer(512 << 10).unwrap();
    assert_eq!(s.writable(), 0);
    assert_eq!(s.write(&data), 0);
    assert_eq!(s.stats().bytes_written, 3 << 20);
}

#[test]
fn a_limit_under_two_frames_is_refused_and_the_old_one_kept() {
    let mut s = sender(1 << 20);
    match s.set_send_buffer(100 * 1024) {
        Err(AmstError::InvalidParam { field, .. }) => assert_eq!(field, "sendBuffer"),
        other => panic!("expected InvalidParam, got {other:?}"),
    }
    assert_eq!(s.send_buffer(), 1 << 20);
}

#[test]
fn write_bytes_makes_the_frames_write_makes_and_slices_whole_ones() {
    // Unaligned on purpose: a copied head, whole frames, a copied tail, then another piece.
    let data: Vec<u8> = (0..(300 << 10)).map(|i| (i % 251) as u8).collect();
    let pieces = [1000, 200 << 10, data.len() - 1000 - (200 << 10)];
    let (mut copied, mut sliced) = (sender(1 << 20), sender(1 << 20));
    let mut at = 0;
    let mut held = Vec::new();
    for len in pieces {
        let piece = Bytes::copy_from_slice(&data[at..at + len]);
        assert_eq!(copied.write(&piece), len);
        assert_eq!(sliced.write_bytes(&piece), len);
        held.push(piece);
        at += len;
    }
    copied.finish();
    sliced.finish();
    let frames = |s: &mut Sender| {
        let now = Instant::now();
        s.handle_connected(ConnId(0), Version::V2, now);
        let mut out = Vec::new();
        while let Some(tx) = s.poll_transmit(now) {
            out.push((tx.header, tx.payload));
            // One frame in flight on an unmeasured connection: ack each to get the next.
            let Some(seq) = tx.seq else { break };
            let ack = dwcp_amst::frame::Ack {
                seq,
                cumulative: seq + 1,
                window: 1024,
            };
            s.handle_ack(ConnId(0), ack, now).unwrap();
        }
        out
    };
    let (a, b) = (frames(&mut copied), frames(&mut sliced));
    assert_eq!(a, b, "same headers (CRCs included) and payloads");
    // The second frame lies wholly inside the second piece: a slice of it, not a copy.
    let second = &b[1].1;
    let inside = held[1].as_ptr() as usize..held[1].as_ptr() as usize + held[1].len();
    assert!(inside.contains(&(second.as_ptr() as usize)));
}

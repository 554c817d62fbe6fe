//! The send buffer limit changes while a sender runs: it bounds what `write` takes from then on,
//! never drops what it already took, and refuses a limit under two frames.
#![allow(missing_docs, clippy::unwrap_used)]

use dwcp_amst::{AmstError, Sender, SenderConfig};

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

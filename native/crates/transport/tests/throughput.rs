//! Goodput of a real transfer on loopback: TCP + TLS 1.3, four connections, one process for
//! both ends. On this 2-core VM the CPU (TLS both ways, copies) is the limit, so this shows
//! what AMST's per-frame work costs next to everything else.
//!
//! `cargo test --release -p dwcp-transport --test throughput -- --ignored --nocapture`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_transport::pki::{generate_cluster_ca, issue_node_certificate, NodeCertRequest};
use dwcp_transport::{
    send_stream, Congestion, Dialer, LinkKind, Listener, ListenerConfig, NodeIdentity,
    ReceiveOptions, SendOptions, StreamCount,
};
use tokio::sync::{mpsc, watch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn loopback_tls_throughput() {
    let total: usize = 2 << 30;
    let ca = generate_cluster_ca("throughput").unwrap();
    let identity = |name: &str| {
        let cert = issue_node_certificate(&ca, &NodeCertRequest::new(name)).unwrap();
        NodeIdentity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
    };
    let config = ListenerConfig {
        kind: LinkKind::Tcp,
        addr: "127.0.0.1:0".parse().unwrap(),
        congestion: Congestion::Default,
        receive: ReceiveOptions::default(),
    };
    let listener = Listener::bind(config, &identity("node-b")).await.unwrap();
    let dialer = Dialer::new(
        LinkKind::Tcp,
        listener.local_addr(),
        "node-b",
        &identity("node-a"),
        Congestion::Default,
    )
    .unwrap();
    let piece = Bytes::from(
        (0..1 << 20)
            .map(|i| (i * 31 + 7) as u8)
            .collect::<Vec<u8>>(),
    );
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for _ in 0..total >> 20 {
            if tx.send(piece.clone()).await.is_err() {
                return;
            }
        }
    });
    let (_cancel_tx, cancel) = watch::channel(false);
    let options = SendOptions {
        streams: StreamCount::Fixed(4),
        stats_interval: Duration::from_secs(1),
        ..SendOptions::default()
    };
    let started = Instant::now();
    let send = tokio::spawn(send_stream(dialer, rx, options, cancel, None));
    let mut incoming = listener.accept().await.unwrap();
    let mut got = 0usize;
    while let Some(data) = incoming.read().await.unwrap() {
        got += data.len();
    }
    send.await.unwrap().unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(got, total);
    println!(
        "loopback TCP+TLS x4: {} MiB in {secs:.2} s = {:.0} MB/s",
        total >> 20,
        total as f64 / secs / 1e6
    );
}

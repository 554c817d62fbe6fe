//! The path probe on loopback: PROBE frames over the transfer's own connections before the
//! stream, which then follows on them; and a link cut during the probe.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_amst::ProbeEnd;
use dwcp_transport::pki::{generate_cluster_ca, issue_node_certificate, NodeCertRequest};
use dwcp_transport::{
    send_stream, Congestion, Dialer, LinkKind, Listener, ListenerConfig, NodeIdentity, ProbeInbox,
    ProbeRequest, SendOptions, StreamCount, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

fn identities() -> (NodeIdentity, NodeIdentity) {
    let ca = generate_cluster_ca("test").unwrap();
    let id = |name: &str| {
        let cert = issue_node_certificate(&ca, &NodeCertRequest::new(name)).unwrap();
        NodeIdentity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
    };
    (id("node-a"), id("node-b"))
}

fn listener_config(kind: LinkKind) -> ListenerConfig {
    ListenerConfig {
        kind,
        addr: "127.0.0.1:0".parse().unwrap(),
        congestion: Congestion::Default,
        receive: dwcp_transport::ReceiveOptions::default(),
    }
}

struct Started {
    probes: mpsc::Sender<ProbeRequest>,
    data: mpsc::Sender<Bytes>,
    cancel: watch::Sender<bool>,
    send: tokio::task::JoinHandle<dwcp_transport::Result<dwcp_transport::SendReport>>,
}

fn start(kind: LinkKind, addr: SocketAddr, id: &NodeIdentity, streams: u32) -> Started {
    let dialer = Dialer::new(kind, addr, "node-b", id, Congestion::Default).unwrap();
    let (probes, inbox) = ProbeInbox::new();
    let (data, source) = mpsc::channel(8);
    let (cancel, cancel_rx) = watch::channel(false);
    let options = SendOptions {
        streams: StreamCount::Fixed(streams),
        probes: Some(inbox),
        ..SendOptions::default()
    };
    let send = tokio::spawn(send_stream(dialer, source, options, cancel_rx, None));
    Started {
        probes,
        data,
        cancel,
        send,
    }
}

async fn probe(s: &Started, max: Duration) -> dwcp_transport::Result<dwcp_transport::ProbeReport> {
    let (request, answer) = ProbeRequest::new(max);
    s.probes.send(request).await.unwrap();
    answer.await.unwrap()
}

async fn probe_then_stream(kind: LinkKind) {
    let (a, b) = identities();
    let listener = Listener::bind(listener_config(kind), &b).await.unwrap();
    let s = start(kind, listener.local_addr(), &a, 2);
    let t0 = Instant::now();
    let report = probe(&s, Duration::from_millis(1500)).await.unwrap();
    let elapsed = t0.elapsed();
    let r = &report.result;
    assert!(r.bytes > 0 && r.goodput > 0.0, "{r:?}");
    assert!(r.min_rtt.is_some() && r.srtt.is_some(), "{r:?}");
    assert_eq!(r.connections.len(), 2, "{r:?}");
    assert!(elapsed < Duration::from_millis(1500 + 500), "{elapsed:?}");
    assert!(
        matches!(r.ended, ProbeEnd::Plateau | ProbeEnd::MaxTime),
        "{r:?}"
    );
    assert!(
        report.links.iter().all(|(_, k)| k.cwnd_bytes.unwrap() > 0),
        "{report:?}"
    );
    // The stream follows on the same connections, and none of the probe reaches it.
    let payload: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut incoming = listener.accept().await.unwrap();
    let feeder = {
        let (data, payload) = (s.data.clone(), payload.clone());
        tokio::spawn(async move { data.send(Bytes::from(payload)).await.unwrap() })
    };
    feeder.await.unwrap();
    drop(s.data);
    let mut got = Vec::new();
    while let Some(piece) = incoming.read().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(got, payload);
    assert!(incoming.stats().probe_bytes >= r.bytes);
    // The stream went on the probe's connections: no other joined the transfer. (The sender may
    // still dial once more at the very end, if the receiver closes its connections before the
    // FIN's ack is read; the listener answers that one outside the transfer.)
    assert_eq!(
        incoming.stats().connections_seen,
        2,
        "{:?}",
        incoming.stats()
    );
    let sent = s.send.await.unwrap().unwrap();
    assert_eq!(sent.stats.connections_failed, 0, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_probe_measures_the_path_and_the_stream_follows_on_its_connections() {
    probe_then_stream(LinkKind::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_probe_measures_the_path_and_the_stream_follows_on_its_connections() {
    probe_then_stream(LinkKind::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_stream_bytes_stop_the_probe_within_milliseconds() {
    let (a, b) = identities();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &b)
        .await
        .unwrap();
    let s = start(LinkKind::Tcp, listener.local_addr(), &a, 2);
    let (request, answer) = ProbeRequest::new(Duration::from_secs(20));
    s.probes.send(request).await.unwrap();
    // Connections up and probing: a plateau takes at least four 10 ms rounds from here.
    let mut incoming = listener.accept().await.unwrap();
    let t0 = Instant::now();
    s.data
        .send(Bytes::from_static(b"first stream bytes"))
        .await
        .unwrap();
    let report = answer.await.unwrap().unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(50),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(report.result.ended, ProbeEnd::Stream);
    drop(s.data);
    assert_eq!(
        &incoming.read().await.unwrap().unwrap()[..],
        b"first stream bytes"
    );
    s.send.await.unwrap().unwrap();
}

/// A TCP relay that cuts each connection once it has carried `after` bytes towards the
/// listener: it drops it (`reset`), or keeps it open and forwards nothing more (a silent link).
async fn cutting_proxy(target: SocketAddr, after: u64, reset: bool) -> SocketAddr {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = front.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, cw) = client.into_split();
                let (sr, mut sw) = server.into_split();
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let back = tokio::spawn(async move {
                    let (mut sr, mut cw) = (sr, cw);
                    tokio::select! {
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = stopped => {}
                    }
                    (sr, cw)
                });
                let mut left = after;
                let mut buf = vec![0u8; 16 * 1024];
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap());
                    let Ok(n) = cr.read(&mut buf[..want]).await else {
                        break;
                    };
                    if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    left -= n as u64;
                }
                let _ = stop.send(());
                let halves = back.await;
                if !reset {
                    // Hold every socket open, forwarding nothing either way.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                drop((cr, sw, halves));
            });
        }
    });
    addr
}

async fn cut_during_probe(reset: bool, max: Duration) -> (TransportError, Duration) {
    let (a, b) = identities();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &b)
        .await
        .unwrap();
    // Past TLS and the hello, well into the probe's first round, long before a plateau.
    let proxy = cutting_proxy(listener.local_addr(), 1 << 20, reset).await;
    let s = start(LinkKind::Tcp, proxy, &a, 2);
    let t0 = Instant::now();
    let (request, answer) = ProbeRequest::new(max);
    s.probes.send(request).await.unwrap();
    let err = answer.await.unwrap().unwrap_err();
    let took = t0.elapsed();
    // The source can then be cancelled cleanly.
    s.cancel.send_replace(true);
    let ended = tokio::time::timeout(Duration::from_secs(5), s.send)
        .await
        .unwrap();
    assert!(matches!(ended.unwrap(), Err(TransportError::Cancelled)));
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_reset_during_the_probe_fails_it_with_a_typed_error() {
    let (err, took) = cut_during_probe(true, Duration::from_secs(20)).await;
    assert_eq!(err.code(), "ERR_AMST_PROBE_FAILED", "{err}");
    assert!(err.to_string().contains("lost"), "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_during_the_probe_fails_it_by_the_limit() {
    let max = Duration::from_millis(1000);
    let (err, took) = cut_during_probe(false, max).await;
    assert_eq!(err.code(), "ERR_AMST_PROBE_FAILED", "{err}");
    assert!(err.to_string().contains("acknowledged"), "{err}");
    assert!(took < max + Duration::from_secs(3), "{took:?}");
}

/// A receiver of the previous build: TLS that offers only `dwcp-amst/2`, then silence.
async fn v2_receiver(identity: &NodeIdentity) -> SocketAddr {
    let mut config = (*identity.server_config().unwrap()).clone();
    config.alpn_protocols = vec![b"dwcp-amst/2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = front.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                // Reads (hello, and anything after) and answers nothing.
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_older_than_v3_is_never_sent_a_probe_and_the_probe_says_why() {
    let (a, b) = identities();
    let addr = v2_receiver(&b).await;
    let s = start(LinkKind::Tcp, addr, &a, 2);
    let t0 = Instant::now();
    let err = probe(&s, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(err.code(), "ERR_AMST_PROBE_FAILED", "{err}");
    assert!(err.to_string().contains("version 3"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    s.cancel.send_replace(true);
    let ended = tokio::time::timeout(Duration::from_secs(5), s.send)
        .await
        .unwrap();
    assert!(matches!(ended.unwrap(), Err(TransportError::Cancelled)));
}

//! Real transfers on loopback: TCP+TLS and QUIC, mutual TLS, killed connections, bytes damaged
//! on the wire, bad peers, peers of the previous frame version.
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dwcp_amst::frame::{self, Version};
use dwcp_transport::hello::Hello;
use dwcp_transport::pki::{generate_cluster_ca, issue_node_certificate, NodeCertRequest, PemPair};
use dwcp_transport::{
    send_stream, Congestion, Dialer, LinkKind, Listener, ListenerConfig, NodeIdentity, SendOptions,
    StreamCount, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

struct Pki {
    ca: PemPair,
    other_ca: PemPair,
}

impl Pki {
    fn new() -> Self {
        Pki {
            ca: generate_cluster_ca("test").unwrap(),
            other_ca: generate_cluster_ca("intruder").unwrap(),
        }
    }

    fn identity(&self, name: &str) -> NodeIdentity {
        self.identity_from(&self.ca, &NodeCertRequest::new(name))
    }

    fn identity_from(&self, ca: &PemPair, req: &NodeCertRequest) -> NodeIdentity {
        let cert = issue_node_certificate(ca, req).unwrap();
        // Everyone trusts the real cluster CA; `ca` only decides who signed this node.
        NodeIdentity::from_pem(&self.ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap()
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn listener_config(kind: LinkKind) -> ListenerConfig {
    ListenerConfig {
        kind,
        addr: "127.0.0.1:0".parse().unwrap(),
        congestion: Congestion::Default,
        receive: dwcp_transport::ReceiveOptions {
            orphan_timeout: Duration::from_millis(800),
            ..Default::default()
        },
    }
}

fn feed(data: Arc<Vec<u8>>, piece: usize) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        for chunk in data.chunks(piece) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Sends `data` from a node to a listener and returns the receiver's bytes and the report.
async fn transfer(
    kind: LinkKind,
    data: Arc<Vec<u8>>,
    streams: StreamCount,
    addr_override: Option<SocketAddr>,
    listener: &Listener,
    sender_id: &NodeIdentity,
) -> (Vec<u8>, dwcp_transport::SendReport) {
    let (got, report, _) =
        transfer_with_stats(kind, data, streams, addr_override, listener, sender_id).await;
    (got, report)
}

/// [`transfer`], with the receiving side's counters.
async fn transfer_with_stats(
    kind: LinkKind,
    data: Arc<Vec<u8>>,
    streams: StreamCount,
    addr_override: Option<SocketAddr>,
    listener: &Listener,
    sender_id: &NodeIdentity,
) -> (
    Vec<u8>,
    dwcp_transport::SendReport,
    dwcp_transport::ReceiveStats,
) {
    let addr = addr_override.unwrap_or_else(|| listener.local_addr());
    let dialer = Dialer::new(kind, addr, "node-b", sender_id, Congestion::Default).unwrap();
    let (_cancel_tx, cancel) = watch::channel(false);
    let options = SendOptions {
        streams,
        ..SendOptions::default()
    };
    let send = tokio::spawn(send_stream(
        dialer,
        feed(data, 1 << 20),
        options,
        cancel,
        None,
    ));
    let mut incoming = listener.accept().await.unwrap();
    let mut got = Vec::new();
    while let Some(piece) = incoming.read().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    (got, send.await.unwrap().unwrap(), incoming.stats())
}

async fn exact_transfer(kind: LinkKind, streams: StreamCount) {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(kind), &pki.identity("node-b"))
        .await
        .unwrap();
    let data = Arc::new(random(24 << 20, 1));
    let (got, report) = transfer(
        kind,
        Arc::clone(&data),
        streams,
        None,
        &listener,
        &pki.identity("node-a"),
    )
    .await;
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
    assert_eq!(report.stats.bytes_acked, data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_tls_delivers_the_exact_stream_over_four_connections() {
    exact_transfer(LinkKind::Tcp, StreamCount::Fixed(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_delivers_the_exact_stream_over_four_connections() {
    exact_transfer(LinkKind::Quic, StreamCount::Fixed(4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_stream_count_delivers_the_exact_stream() {
    exact_transfer(
        LinkKind::Tcp,
        StreamCount::Adaptive(dwcp_amst::AdaptConfig::default()),
    )
    .await;
}

/// A TCP relay whose live connections can be cut on demand.
async fn cuttable_proxy(target: SocketAddr, cut: Arc<Notify>) -> SocketAddr {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = front.accept().await {
            let cut = Arc::clone(&cut);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::select! {
                    _ = tokio::io::copy(&mut cr, &mut sw) => {}
                    _ = tokio::io::copy(&mut sr, &mut cw) => {}
                    () = cut.notified() => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_transfer_loses_and_duplicates_nothing() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let cut = Arc::new(Notify::new());
    let proxy = cuttable_proxy(listener.local_addr(), Arc::clone(&cut)).await;
    let data = Arc::new(random(48 << 20, 2));
    let cutter = {
        let cut = Arc::clone(&cut);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            cut.notify_one(); // exactly one live connection dies
        })
    };
    let id = pki.identity("node-a");
    let (got, report) = transfer(
        LinkKind::Tcp,
        Arc::clone(&data),
        StreamCount::Fixed(4),
        Some(proxy),
        &listener,
        &id,
    )
    .await;
    cutter.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
    assert!(report.failed_connections >= 1, "{report:?}");
}

/// A front for the listener at `target` that plays the receiver on the first connection: it
/// completes TLS as `identity`, reads the hello, then resets the connection (RST, no TLS
/// close), before anything on it could be acknowledged. It relays every later connection.
/// Resolves to the hello it read.
async fn reset_first_after_hello(
    target: SocketAddr,
    identity: &NodeIdentity,
) -> (SocketAddr, tokio::task::JoinHandle<Hello>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config().unwrap());
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let (sock, _) = front.accept().await.unwrap();
        let mut tls = acceptor.accept(sock).await.unwrap();
        let mut hello = [0u8; dwcp_transport::hello::HELLO_LEN];
        tls.read_exact(&mut hello).await.unwrap();
        tls.get_ref().0.set_zero_linger().unwrap();
        drop(tls);
        tokio::spawn(async move {
            while let Ok((client, _)) = front.accept().await {
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Hello::decode(&hello).unwrap()
    });
    (addr, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_connection_reset_right_after_its_hello_is_redialed_and_nothing_is_lost() {
    let pki = Pki::new();
    let server = pki.identity("node-b");
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &server)
        .await
        .unwrap();
    let (front, first) = reset_first_after_hello(listener.local_addr(), &server).await;
    let data = Arc::new(random(8 << 20, 9));
    let (got, report) = transfer(
        LinkKind::Tcp,
        Arc::clone(&data),
        StreamCount::Fixed(1),
        Some(front),
        &listener,
        &pki.identity("node-a"),
    )
    .await;
    assert_eq!(
        first.await.unwrap().conn,
        0,
        "the first connection was reset"
    );
    assert_eq!(got.len(), data.len());
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
    assert_eq!(report.stats.bytes_acked, data.len() as u64);
    assert_eq!(report.failed_connections, 1, "{report:?}");
    assert_eq!(report.stats.connections_opened, 2, "{report:?}");
}

/// A TLS connection to `listener` that has sent the hello of `session`.
async fn dial_raw(
    listener: &Listener,
    id: &NodeIdentity,
    session: [u8; 16],
    conn: u32,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tls = tokio_rustls::TlsConnector::from(id.client_config().unwrap());
    let sock = TcpStream::connect(listener.local_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("node-b").unwrap();
    let mut stream = tls.connect(name, sock).await.unwrap();
    let hello = Hello {
        session,
        conn,
        version: Version::LATEST,
    };
    stream.write_all(&hello.encode()).await.unwrap();
    stream
}

/// Reads acks until the FIN's; returns its cumulative count.
async fn read_fin_ack(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> u64 {
    let mut buf = Vec::new();
    loop {
        while let Some((f, len)) = frame::parse(&buf, Version::LATEST, 0).unwrap() {
            let fin = match f {
                frame::Frame::Ack(ack) if ack.seq == dwcp_amst::FIN_SEQ => Some(ack.cumulative),
                _ => None,
            };
            buf.drain(..len);
            if let Some(cumulative) = fin {
                return cumulative;
            }
        }
        let mut more = [0u8; 256];
        let n = stream.read(&mut more).await.unwrap();
        assert!(n > 0, "closed before the FIN's ack");
        buf.extend_from_slice(&more[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_back_after_the_end_gets_the_final_ack_not_a_reset() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let id = pki.identity("node-a");
    let session = [7; 16];
    let payload = b"the whole stream";
    let mut first = dial_raw(&listener, &id, session, 0).await;
    let (header, n) = frame::data_header(Version::LATEST, 0, payload.len(), frame::crc(0, payload));
    first.write_all(&header[..n]).await.unwrap();
    first.write_all(payload).await.unwrap();
    first
        .write_all(&frame::encode_fin(1, payload.len() as u64))
        .await
        .unwrap();
    let mut incoming = listener.accept().await.unwrap();
    let mut got = Vec::new();
    while let Some(piece) = incoming.read().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(got, payload);
    // The sender lost that connection before it read the FIN's ack, and dials again.
    drop(first);
    let mut again = dial_raw(&listener, &id, session, 1).await;
    again
        .write_all(&frame::encode_fin(1, payload.len() as u64))
        .await
        .unwrap();
    assert_eq!(read_fin_ack(&mut again).await, 1);
    let mut rest = Vec::new();
    again.read_to_end(&mut rest).await.expect("a clean close");
    assert!(rest.is_empty());
    assert_eq!(listener.refused(), 0);
}

async fn refused(kind: LinkKind, client: NodeIdentity, server_name: &str) -> TransportError {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(kind), &pki.identity("node-b"))
        .await
        .unwrap();
    let dialer = Dialer::new(
        kind,
        listener.local_addr(),
        server_name,
        &client,
        Congestion::Default,
    )
    .unwrap();
    let (_c, cancel) = watch::channel(false);
    let data = Arc::new(random(1 << 20, 3));
    let err = send_stream(
        dialer,
        feed(data, 1 << 16),
        SendOptions::default(),
        cancel,
        None,
    )
    .await
    .expect_err("must be refused");
    // The listener is still there for a good peer.
    let good = pki.identity("node-a");
    let data = Arc::new(random(2 << 20, 4));
    let (got, _) = transfer(
        kind,
        Arc::clone(&data),
        StreamCount::Fixed(2),
        None,
        &listener,
        &good,
    )
    .await;
    assert_eq!(got, *data);
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_refused() {
    for kind in [LinkKind::Tcp, LinkKind::Quic] {
        let pki = Pki::new();
        let intruder = pki.identity_from(&pki.other_ca, &NodeCertRequest::new("node-a"));
        let err = refused(kind, intruder, "node-b").await;
        // TLS 1.3 client auth fails after the client's handshake completes, so the client may
        // see the refusal as the connection closing instead of an alert.
        assert!(
            matches!(
                err.code(),
                "ERR_AMST_TLS" | "ERR_AMST_NO_CONNECTION" | "ERR_AMST_IO"
            ),
            "{kind:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_the_wrong_name_is_refused() {
    for kind in [LinkKind::Tcp, LinkKind::Quic] {
        let pki = Pki::new();
        let err = refused(kind, pki.identity("node-a"), "node-c").await;
        assert_eq!(err.code(), "ERR_AMST_TLS", "{kind:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_certificate_is_refused() {
    let pki = Pki::new();
    let expired = NodeCertRequest {
        not_before: SystemTime::now() - Duration::from_secs(3 * 86_400),
        valid_for: Duration::from_secs(86_400),
        ..NodeCertRequest::new("node-a")
    };
    let old = pki.identity_from(&pki.ca, &expired);
    let err = refused(LinkKind::Tcp, old, "node-b").await;
    assert!(
        matches!(
            err.code(),
            "ERR_AMST_TLS" | "ERR_AMST_NO_CONNECTION" | "ERR_AMST_IO"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_and_the_listener_keeps_serving() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
    let hello = Hello {
        session: [7; 16],
        conn: 0,
        version: Version::V1,
    }
    .encode();
    raw.write_all(&hello).await.unwrap();
    raw.write_all(b"not TLS at all").await.unwrap();
    let data = Arc::new(random(1 << 20, 5));
    let (got, _) = transfer(
        LinkKind::Tcp,
        Arc::clone(&data),
        StreamCount::Fixed(1),
        None,
        &listener,
        &pki.identity("node-a"),
    )
    .await;
    assert_eq!(got, *data);
    assert!(listener.refused() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_that_peer_with_a_typed_error() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let id = pki.identity("node-a");
    let tls = tokio_rustls::TlsConnector::from(id.client_config().unwrap());
    let sock = TcpStream::connect(listener.local_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("node-b").unwrap();
    let mut stream = tls.connect(name, sock).await.unwrap();
    stream
        .write_all(
            &Hello {
                session: [9; 16],
                conn: 0,
                version: Version::LATEST,
            }
            .encode(),
        )
        .await
        .unwrap();
    let (header, n) = frame::data_header(Version::LATEST, 0, 1 << 30, 0);
    let mut oversized = header[..n].to_vec();
    oversized.extend_from_slice(&[0u8; 64]);
    stream.write_all(&oversized).await.unwrap();
    stream.flush().await.unwrap();
    let mut incoming = listener.accept().await.unwrap();
    let err = incoming.read().await.expect_err("the stream must fail");
    assert_eq!(err.code(), "ERR_AMST_FRAME_TOO_LARGE", "{err}");
    // And a good transfer still works.
    let data = Arc::new(random(1 << 20, 6));
    let (got, _) = transfer(
        LinkKind::Tcp,
        Arc::clone(&data),
        StreamCount::Fixed(2),
        None,
        &listener,
        &id,
    )
    .await;
    assert_eq!(got, *data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_sender_and_fails_the_receiver() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let dialer = Dialer::new(
        LinkKind::Tcp,
        listener.local_addr(),
        "node-b",
        &pki.identity("node-a"),
        Congestion::Default,
    )
    .unwrap();
    let (cancel_tx, cancel) = watch::channel(false);
    // A source that never ends: only cancel can stop this transfer.
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move { while tx.send(Bytes::from(vec![1u8; 1 << 20])).await.is_ok() {} });
    let send = tokio::spawn(send_stream(
        dialer,
        rx,
        SendOptions::default(),
        cancel,
        None,
    ));
    let mut incoming = listener.accept().await.unwrap();
    let mut received = 0usize;
    let err = loop {
        match incoming.read().await {
            Ok(Some(piece)) => {
                received += piece.len();
                if received > 8 << 20 {
                    let _ = cancel_tx.send(true);
                }
            }
            Ok(None) => panic!("an endless stream cannot complete"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), "ERR_AMST_NO_CONNECTION", "{err}");
    assert_eq!(
        send.await.unwrap().expect_err("cancelled").code(),
        "ERR_AMST_CANCELLED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_transfers_to_one_listener_all_complete() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let id = pki.identity("node-a");
    for round in 0..5u64 {
        let data = Arc::new(random(3 << 20, 10 + round));
        // A connection that arrives after its transfer ended is refused; the transfer is not
        // started again, and the sender is already done.
        let (got, report) = transfer(
            LinkKind::Tcp,
            Arc::clone(&data),
            StreamCount::Fixed(4),
            None,
            &listener,
            &id,
        )
        .await;
        assert_eq!(got, *data, "round {round}");
        assert_eq!(report.stats.bytes_acked, data.len() as u64);
    }
    listener.close();
    assert!(
        listener.accept().await.is_none(),
        "a closed listener accepts nothing"
    );
}

/// A TCP relay that flips one bit every `every` bytes of each connection's client-to-server
/// direction, counting the connections it damaged: damage on the wire, below TLS.
async fn corrupting_proxy(target: SocketAddr, every: u64, damaged: Arc<AtomicU64>) -> SocketAddr {
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = front.accept().await {
            let damaged = Arc::clone(&damaged);
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let upstream = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut at = 0u64;
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // Every offset that is a multiple of `every` in this read gets a flip.
                        let mut next = at.div_ceil(every).max(1) * every;
                        while next < at + n as u64 {
                            buf[(next - at) as usize] ^= 0x04;
                            if next == every {
                                damaged.fetch_add(1, Ordering::Relaxed);
                            }
                            next += every;
                        }
                        at += n as u64;
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! {
                    () = upstream => {}
                    _ = tokio::io::copy(&mut sr, &mut cw) => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_damaged_on_the_wire_cost_a_connection_each_and_the_stream_arrives_exact() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    let damaged = Arc::new(AtomicU64::new(0));
    // One flipped bit per MiB of each connection: every connection dies young.
    let proxy = corrupting_proxy(listener.local_addr(), 1 << 20, Arc::clone(&damaged)).await;
    let data = Arc::new(random(32 << 20, 21));
    let (got, report, received) = transfer_with_stats(
        LinkKind::Tcp,
        Arc::clone(&data),
        StreamCount::Fixed(4),
        Some(proxy),
        &listener,
        &pki.identity("node-a"),
    )
    .await;
    let damaged = damaged.load(Ordering::Relaxed);
    println!(
        "{damaged} connections damaged: receiver {received:?}; sender failed {} opened {} resent {}",
        report.stats.connections_failed,
        report.stats.connections_opened,
        report.stats.frames_resent
    );
    assert_eq!(got.len(), data.len());
    assert_eq!(blake3::hash(&got), blake3::hash(&data));
    assert!(damaged >= 20, "{damaged} connections damaged");
    // TLS caught the damage as a bad record and closed that connection; none reached AMST. The
    // damage may also land in bytes nobody reads any more, after the stream completed: at most
    // on the 4 connections live then.
    let corrupted = u64::from(received.connections_corrupted);
    assert!(
        corrupted <= damaged && corrupted + 4 >= damaged,
        "{damaged} connections damaged, {received:?}"
    );
    assert_eq!(received.corrupt_frames, 0);
    assert_eq!(received.connections_refused, 0, "{received:?}");
    // Each lost connection was replaced (but those lost once the receiver had every byte, which
    // need no successor), and its frames went out again.
    assert!(report.stats.connections_failed >= received.connections_corrupted);
    assert!(report.stats.connections_opened > received.connections_corrupted);
    assert!(report.stats.frames_resent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_previous_frame_version_is_still_served() {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(LinkKind::Tcp), &pki.identity("node-b"))
        .await
        .unwrap();
    // An older node (or the TypeScript reference path): ALPN v1 only, frames without CRC.
    let id = pki.identity("node-a");
    let mut config = (*id.client_config().unwrap()).clone();
    config.alpn_protocols = vec![b"dwcp-amst/1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let sock = TcpStream::connect(listener.local_addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("node-b").unwrap();
    let mut stream = tls.connect(name, sock).await.unwrap();
    let hello = Hello {
        session: [4; 16],
        conn: 0,
        version: Version::V1,
    };
    let data = random(100_000, 8);
    let mut wire = hello.encode().to_vec();
    for (seq, piece) in data.chunks(40_000).enumerate() {
        let (header, n) = frame::data_header(Version::V1, seq as u64, piece.len(), 0);
        wire.extend_from_slice(&header[..n]);
        wire.extend_from_slice(piece);
    }
    wire.extend_from_slice(&frame::encode_fin(3, data.len() as u64));
    stream.write_all(&wire).await.unwrap();
    stream.flush().await.unwrap();
    let mut incoming = listener.accept().await.unwrap();
    let mut got = Vec::new();
    while let Some(piece) = incoming.read().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(got, data);
    // Its acks are v1 frames too; the FIN's comes last.
    let mut acks = vec![0u8; 4 * frame::ACK_LEN];
    stream.read_exact(&mut acks).await.unwrap();
    let (last, _) = frame::parse(&acks[3 * frame::ACK_LEN..], Version::V1, 0)
        .unwrap()
        .unwrap();
    assert!(
        matches!(last, frame::Frame::Ack(a) if a.seq == dwcp_amst::FIN_SEQ),
        "{last:?}"
    );
}

/// Sends 16 MiB with a progress channel and returns every connection sample published on it.
async fn link_samples(kind: LinkKind) -> Vec<dwcp_transport::ConnectionStats> {
    let pki = Pki::new();
    let listener = Listener::bind(listener_config(kind), &pki.identity("node-b"))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let dialer = Dialer::new(
        kind,
        addr,
        "node-b",
        &pki.identity("node-a"),
        Congestion::Default,
    )
    .unwrap();
    let (_cancel_tx, cancel) = watch::channel(false);
    let (progress_tx, mut progress) = watch::channel(dwcp_transport::TransferStats::default());
    let options = SendOptions {
        streams: StreamCount::Fixed(2),
        stats_interval: Duration::from_millis(20),
        ..SendOptions::default()
    };
    let data = Arc::new(random(16 << 20, 7));
    let send = tokio::spawn(send_stream(
        dialer,
        feed(data, 1 << 20),
        options,
        cancel,
        Some(progress_tx),
    ));
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while progress.changed().await.is_ok() {
            seen.extend(progress.borrow_and_update().connections.iter().copied());
        }
        seen
    });
    let mut incoming = listener.accept().await.unwrap();
    while incoming.read().await.unwrap().is_some() {
        // Pace the reader a little so the transfer spans several stats refreshes.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    send.await.unwrap().unwrap();
    seen.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_stats_carry_the_kernels_tcp_info() {
    let seen = link_samples(LinkKind::Tcp).await;
    let moved: Vec<_> = seen.iter().filter(|c| c.amst.acked_bytes > 0).collect();
    assert!(!moved.is_empty(), "no sample after data moved");
    let k = moved.last().unwrap().link;
    assert!(k.cwnd_bytes.unwrap() > 0, "{k:?}");
    assert!(k.rtt.unwrap() > Duration::ZERO, "{k:?}");
    assert!(k.min_rtt.unwrap() <= k.rtt.unwrap(), "{k:?}");
    assert!(k.retransmits.is_some(), "{k:?}");
    assert!(k.congestion_events.is_none(), "TCP_INFO has none: {k:?}");
    assert!(
        moved
            .iter()
            .any(|c| c.link.delivery_rate.is_some_and(|r| r > 0.0)),
        "no delivery rate in {moved:?}"
    );
    assert!(
        moved
            .iter()
            .any(|c| c.link.pacing_rate.is_some_and(|r| r > 0.0)),
        "no pacing rate in {moved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_stats_carry_quinns_path_stats() {
    let seen = link_samples(LinkKind::Quic).await;
    let moved: Vec<_> = seen.iter().filter(|c| c.amst.acked_bytes > 0).collect();
    assert!(!moved.is_empty(), "no sample after data moved");
    let k = moved.last().unwrap().link;
    assert!(k.cwnd_bytes.unwrap() > 0, "{k:?}");
    assert!(k.rtt.unwrap() > Duration::ZERO, "{k:?}");
    assert!(
        k.retransmits.is_some() && k.congestion_events.is_some(),
        "{k:?}"
    );
    assert!(
        k.pacing_rate.is_none() && k.delivery_rate.is_none(),
        "quinn has neither: {k:?}"
    );
}

//! QUIC connections (quinn): one QUIC connection per AMST connection, each with its own
//! congestion controller, carrying one bidirectional stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{congestion, Endpoint, TransportConfig, VarInt};
use rustls::{ClientConfig, ServerConfig};
use tokio::sync::mpsc;

use crate::gauge::LinkGauge;
use crate::tls::negotiated_version;
use crate::{Congestion, Link, Result, TransportError};

/// Flow-control windows sized for a long fat path (1 Gbit/s × 100 ms ≈ 12 MB).
const WINDOW: u32 = 16 * 1024 * 1024;

fn transport(congestion: Congestion) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(WINDOW));
    t.receive_window(VarInt::from_u32(2 * WINDOW));
    t.send_window(u64::from(2 * WINDOW));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    if let Ok(idle) = Duration::from_secs(30).try_into() {
        t.max_idle_timeout(Some(idle));
    }
    match congestion {
        Congestion::Default | Congestion::Cubic => {
            t.congestion_controller_factory(Arc::new(congestion::CubicConfig::default()));
        }
        Congestion::Bbr => {
            t.congestion_controller_factory(Arc::new(congestion::BbrConfig::default()));
        }
        Congestion::Reno => {
            t.congestion_controller_factory(Arc::new(congestion::NewRenoConfig::default()));
        }
    }
    Arc::new(t)
}

/// A client endpoint shared by all connections a dialer makes.
#[derive(Clone)]
pub struct QuicClient {
    endpoint: Endpoint,
    config: quinn::ClientConfig,
}

impl QuicClient {
    pub fn new(tls: Arc<ClientConfig>, congestion: Congestion) -> Result<Self> {
        let crypto = QuicClientConfig::try_from((*tls).clone())
            .map_err(|e| TransportError::Certificate(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport(congestion));
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let endpoint =
            Endpoint::client(bind).map_err(|e| TransportError::io("QUIC client endpoint", e))?;
        Ok(QuicClient { endpoint, config })
    }

    /// Closes every connection of this endpoint at once (CONNECTION_CLOSE), so the peer learns
    /// immediately instead of after its idle timeout, and waits briefly for that to go out.
    pub async fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"transfer over");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    pub async fn dial(&self, addr: SocketAddr, server_name: &str) -> Result<Link> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, server_name)
            .map_err(|e| TransportError::io(format!("QUIC connect to {addr}"), e))?;
        let conn = connecting.await.map_err(|e| classify(addr, e))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| TransportError::io(format!("QUIC stream to {addr}"), e))?;
        Ok(Link {
            reader: Box::new(recv),
            writer: Box::new(send),
            peer: addr.to_string(),
            version: version_of(&conn),
            gauge: Some(LinkGauge::Quic(conn.clone())),
        })
    }
}

/// Binds a server endpoint and accepts until every receiver of `links` is gone.
pub fn listen(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    congestion: Congestion,
    links: mpsc::Sender<Result<Link>>,
) -> Result<SocketAddr> {
    let crypto = QuicServerConfig::try_from((*tls).clone())
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(congestion));
    let endpoint = Endpoint::server(config, addr)
        .map_err(|e| TransportError::io(format!("bind QUIC {addr}"), e))?;
    let local = endpoint
        .local_addr()
        .map_err(|e| TransportError::io("local address", e))?;
    tokio::spawn(async move {
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => i,
                () = links.closed() => { endpoint.close(VarInt::from_u32(0), b"listener closed"); return; }
            };
            let Some(incoming) = incoming else { return };
            let links = links.clone();
            tokio::spawn(async move {
                let peer = incoming.remote_address();
                let link = async {
                    let conn = incoming.await.map_err(|e| TransportError::Tls {
                        peer: peer.to_string(),
                        reason: e.to_string(),
                    })?;
                    let (send, recv) = conn
                        .accept_bi()
                        .await
                        .map_err(|e| TransportError::io(format!("QUIC stream from {peer}"), e))?;
                    Ok(Link {
                        reader: Box::new(recv),
                        writer: Box::new(send),
                        peer: peer.to_string(),
                        version: version_of(&conn),
                        gauge: None,
                    })
                };
                let _ = links.send(link.await).await;
            });
        }
    });
    Ok(local)
}

/// The frame version agreed in the handshake (QUIC always negotiates ALPN).
fn version_of(conn: &quinn::Connection) -> dwcp_amst::frame::Version {
    let data = conn.handshake_data();
    let alpn = data
        .as_ref()
        .and_then(|d| d.downcast_ref::<quinn::crypto::rustls::HandshakeData>())
        .and_then(|h| h.protocol.as_deref());
    negotiated_version(alpn)
}

/// A refused certificate (a TLS alert, QUIC crypto error 0x100..0x1ff) is a TLS error and will
/// not heal; a timeout or reset on a lossy path is I/O and worth another try.
fn classify(addr: SocketAddr, e: quinn::ConnectionError) -> TransportError {
    let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    let tls = match &e {
        quinn::ConnectionError::TransportError(t) => crypto(t.code),
        quinn::ConnectionError::ConnectionClosed(c) => crypto(c.error_code),
        _ => false,
    };
    if tls {
        TransportError::Tls {
            peer: addr.to_string(),
            reason: e.to_string(),
        }
    } else {
        TransportError::io(format!("QUIC connect to {addr}"), e)
    }
}

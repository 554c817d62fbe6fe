//! One connection of a transfer, whatever carries it, and the dialer and listener that make them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dwcp_amst::frame::Version;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, Mutex};

use crate::gauge::LinkGauge;
use crate::hello::{Hello, HELLO_LEN};
use crate::receive::{answer_finished, FinalAcks, IncomingStream, ReceiveOptions};
use crate::{quic, tcp, NodeIdentity, Result, TransportError};

/// Which protocol carries the connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// TCP with TLS 1.3 (rustls).
    Tcp,
    /// QUIC (quinn), one bidirectional stream per connection.
    Quic,
}

/// The congestion controller of each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Congestion {
    /// Whatever the kernel (TCP) or quinn (QUIC) uses by default.
    Default,
    /// CUBIC.
    Cubic,
    /// BBR (kernel `bbr` module for TCP; quinn's BBR for QUIC).
    Bbr,
    /// NewReno (QUIC) or `reno` (TCP).
    Reno,
}

impl Congestion {
    /// Parses `default`, `cubic`, `bbr` or `reno`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "default" => Ok(Congestion::Default),
            "cubic" => Ok(Congestion::Cubic),
            "bbr" => Ok(Congestion::Bbr),
            "reno" => Ok(Congestion::Reno),
            other => Err(TransportError::InvalidParam {
                field: "congestion",
                reason: format!("`{other}` is not default, cubic, bbr or reno"),
            }),
        }
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// An authenticated connection, split into its two directions.
pub struct Link {
    /// Bytes from the peer.
    pub reader: BoxRead,
    /// Bytes to the peer.
    pub writer: BoxWrite,
    /// Who is at the other end, for logs and errors.
    pub peer: String,
    /// The frame version both ends speak, from TLS's ALPN.
    pub version: Version,
    /// Reads what the kernel or quinn knows of this connection; `None` where it cannot.
    pub gauge: Option<LinkGauge>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Opens connections to one listener.
#[derive(Clone)]
pub struct Dialer {
    inner: DialerKind,
    addr: SocketAddr,
    server_name: String,
    congestion: Congestion,
}

#[derive(Clone)]
enum DialerKind {
    Tcp(tokio_rustls::TlsConnector),
    Quic(quic::QuicClient),
}

impl Dialer {
    /// A dialer for `addr`, expecting the peer's certificate to name `server_name`.
    pub fn new(
        kind: LinkKind,
        addr: SocketAddr,
        server_name: &str,
        identity: &NodeIdentity,
        congestion: Congestion,
    ) -> Result<Self> {
        let client = identity.client_config()?;
        let inner = match kind {
            LinkKind::Tcp => DialerKind::Tcp(tokio_rustls::TlsConnector::from(client)),
            LinkKind::Quic => DialerKind::Quic(quic::QuicClient::new(client, congestion)?),
        };
        Ok(Dialer {
            inner,
            addr,
            server_name: server_name.to_string(),
            congestion,
        })
    }

    /// Ends every connection this dialer made. TCP connections close with their sockets; QUIC
    /// ones need an explicit close or the peer waits for its idle timeout.
    pub async fn close(&self) {
        if let DialerKind::Quic(q) = &self.inner {
            q.close().await;
        }
    }

    /// Connects, authenticates both ends and sends the hello, in the version agreed in TLS.
    pub async fn dial(&self, session: [u8; 16], conn: u32) -> Result<Link> {
        let mut link = match &self.inner {
            DialerKind::Tcp(tls) => {
                tcp::dial(tls, self.addr, &self.server_name, self.congestion).await?
            }
            DialerKind::Quic(q) => q.dial(self.addr, &self.server_name).await?,
        };
        use tokio::io::AsyncWriteExt;
        let hello = Hello {
            session,
            conn,
            version: link.version,
        };
        link.writer
            .write_all(&hello.encode())
            .await
            .map_err(|e| TransportError::io(format!("hello to {}", link.peer), e))?;
        Ok(link)
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// TCP+TLS or QUIC.
    pub kind: LinkKind,
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Congestion control of accepted connections.
    pub congestion: Congestion,
    /// How the receiving side of each transfer behaves.
    pub receive: ReceiveOptions,
}

/// Accepts transfers: connections are authenticated, then grouped by their hello's session.
pub struct Listener {
    local_addr: SocketAddr,
    incoming: Mutex<mpsc::Receiver<IncomingStream>>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Binds and starts accepting in the background.
    pub async fn bind(config: ListenerConfig, identity: &NodeIdentity) -> Result<Self> {
        let server = identity.server_config()?;
        let (links_tx, links_rx) = mpsc::channel::<Result<Link>>(64);
        let local_addr = match config.kind {
            LinkKind::Tcp => tcp::listen(config.addr, server, config.congestion, links_tx).await?,
            LinkKind::Quic => quic::listen(config.addr, server, config.congestion, links_tx)?,
        };
        let (incoming_tx, incoming_rx) = mpsc::channel(16);
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = tokio::spawn(route(
            links_rx,
            incoming_tx,
            config.receive,
            Arc::clone(&refused),
        ));
        Ok(Listener {
            local_addr,
            incoming: Mutex::new(incoming_rx),
            refused,
            task,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections refused so far: failed handshakes, bad hellos.
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops accepting: no new connections or transfers. Transfers already accepted go on.
    pub fn close(&self) {
        self.task.abort();
    }

    /// The next transfer; `None` once the listener is closed.
    pub async fn accept(&self) -> Option<IncomingStream> {
        self.incoming.lock().await.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SEEN_SESSIONS: usize = 4096;

/// Reads each link's hello and hands it to its transfer, starting a new one when needed.
async fn route(
    mut links: mpsc::Receiver<Result<Link>>,
    incoming: mpsc::Sender<IncomingStream>,
    options: ReceiveOptions,
    refused: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut sessions: HashMap<[u8; 16], mpsc::Sender<(u32, Link)>> = HashMap::new();
    // Sessions already handed out: a late connection (a resent FIN after the end) must not
    // start the same transfer again; if that transfer completed, it is answered with its final
    // ack. Bounded, oldest forgotten first.
    let mut seen: std::collections::VecDeque<[u8; 16]> = std::collections::VecDeque::new();
    let final_acks = FinalAcks::default();
    let (hellos_tx, mut hellos_rx) = mpsc::channel::<(Hello, Link)>(64);
    loop {
        tokio::select! {
            link = links.recv() => {
                let Some(link) = link else { return };
                match link {
                    Ok(mut link) => {
                        let tx = hellos_tx.clone();
                        let refused = Arc::clone(&refused);
                        // Read the hello off the accept path, so a silent peer cannot block others.
                        tokio::spawn(async move {
                            let mut buf = [0u8; HELLO_LEN];
                            let read = tokio::time::timeout(Duration::from_secs(10), link.reader.read_exact(&mut buf)).await;
                            match read.ok().and_then(|r| r.ok()).map(|_| Hello::decode(&buf)) {
                                // The hello must speak the version TLS agreed on.
                                Some(Ok(hello)) if hello.version == link.version => { let _ = tx.send((hello, link)).await; }
                                _ => { refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed); }
                            }
                        });
                    }
                    Err(_) => { refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed); }
                }
            }
            Some((hello, link)) = hellos_rx.recv() => {
                sessions.retain(|_, tx| !tx.is_closed());
                if let Some(tx) = sessions.get(&hello.session) {
                    let _ = tx.send((hello.conn, link)).await;
                    continue;
                }
                if seen.contains(&hello.session) {
                    // A sender that lost the final ack of a completed transfer gets it again.
                    if let Some(ack) = final_acks.get(&hello.session) {
                        tokio::spawn(answer_finished(link, ack));
                    } else {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    continue;
                }
                if seen.len() >= SEEN_SESSIONS {
                    if let Some(old) = seen.pop_front() {
                        final_acks.forget(&old);
                    }
                }
                seen.push_back(hello.session);
                let (tx, stream) =
                    IncomingStream::start(hello.session, options.clone(), final_acks.clone());
                let _ = tx.send((hello.conn, link)).await;
                sessions.insert(hello.session, tx);
                if incoming.send(stream).await.is_err() {
                    return;
                }
            }
        }
    }
}

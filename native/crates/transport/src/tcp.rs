//! TCP + TLS 1.3 connections, with the kernel congestion controller chosen per socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::gauge::LinkGauge;
use crate::tls::negotiated_version;
use crate::{Congestion, Link, Result, TransportError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Plaintext rustls takes per write before it must flush records to the socket (its default is
/// 64 KiB). Room for a whole batch of frames (`send::BATCH_BYTES`) means one write and one
/// system call per batch, and records cut across frames all 16 KiB but the last.
pub(crate) const SEND_BUFFER: usize = 256 * 1024 + 4096;

pub async fn dial(
    tls: &TlsConnector,
    addr: SocketAddr,
    server_name: &str,
    congestion: Congestion,
) -> Result<Link> {
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| {
        TransportError::InvalidParam {
            field: "serverName",
            reason: e.to_string(),
        }
    })?;
    let sock = TcpStream::connect(addr)
        .await
        .map_err(|e| TransportError::io(format!("connect to {addr}"), e))?;
    prepare(&sock, congestion)?;
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.connect(name, sock));
    let mut stream = handshake
        .await
        .map_err(|_| tls_err(addr, "handshake timed out"))?
        .map_err(|e| tls_err(addr, e))?;
    stream.get_mut().1.set_buffer_limit(Some(SEND_BUFFER));
    let version = negotiated_version(stream.get_ref().1.alpn_protocol());
    let gauge = LinkGauge::tcp(stream.get_ref().0);
    let (reader, writer) = tokio::io::split(stream);
    Ok(Link {
        reader: Box::new(reader),
        writer: Box::new(writer),
        peer: addr.to_string(),
        version,
        gauge,
    })
}

/// Binds and accepts until every receiver of `links` is gone. Failed handshakes are reported
/// as errors on `links` and the listener carries on.
pub async fn listen(
    addr: SocketAddr,
    server: Arc<ServerConfig>,
    congestion: Congestion,
    links: mpsc::Sender<Result<Link>>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| TransportError::io(format!("bind {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| TransportError::io("local address", e))?;
    let acceptor = TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = links.closed() => return,
            };
            let Ok((sock, peer)) = accepted else { continue };
            let acceptor = acceptor.clone();
            let links = links.clone();
            tokio::spawn(async move {
                let link = async {
                    prepare(&sock, congestion)?;
                    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock))
                        .await
                        .map_err(|_| tls_err(peer, "handshake timed out"))?
                        .map_err(|e| tls_err(peer, e))?;
                    let version = negotiated_version(stream.get_ref().1.alpn_protocol());
                    let (reader, writer) = tokio::io::split(stream);
                    // Only the sending side reports the kernel's view.
                    Ok(Link {
                        reader: Box::new(reader),
                        writer: Box::new(writer),
                        peer: peer.to_string(),
                        version,
                        gauge: None,
                    })
                };
                let _ = links.send(link.await).await;
            });
        }
    });
    Ok(local)
}

fn prepare(sock: &TcpStream, congestion: Congestion) -> Result<()> {
    sock.set_nodelay(true)
        .map_err(|e| TransportError::io("TCP_NODELAY", e))?;
    let name: &[u8] = match congestion {
        Congestion::Default => return Ok(()),
        Congestion::Cubic => b"cubic",
        Congestion::Bbr => b"bbr",
        Congestion::Reno => b"reno",
    };
    set_tcp_congestion(sock, name)
}

/// `setsockopt(TCP_CONGESTION)`: the one call std and tokio do not wrap.
#[allow(unsafe_code)]
fn set_tcp_congestion(sock: &TcpStream, name: &[u8]) -> Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::socklen_t::try_from(name.len())
        .map_err(|e| TransportError::io("TCP_CONGESTION", e))?;
    // SAFETY: the fd is a live socket owned by `sock`, and `name` outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            len,
        )
    };
    if rc != 0 {
        let algo = String::from_utf8_lossy(name);
        return Err(TransportError::io(
            format!("TCP_CONGESTION {algo} (is the module loaded?)"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn tls_err(peer: SocketAddr, e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls {
        peer: peer.to_string(),
        reason: e.to_string(),
    }
}

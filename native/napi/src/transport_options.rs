//! JS-facing options of the transport and their checked conversion. Errors name the field.

use std::net::SocketAddr;
use std::time::Duration;

use dwcp_amst::{AdaptConfig, SenderConfig};
use dwcp_transport::{
    Congestion, Dialer, LinkKind, ListenerConfig, NodeIdentity, ReceiveOptions, SendOptions,
    StreamCount, TransportError,
};
use napi_derive::napi;

/// A node's TLS identity, PEM encoded.
#[napi(object)]
#[derive(Clone)]
pub struct BindingIdentity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TryFrom<&BindingIdentity> for NodeIdentity {
    type Error = TransportError;

    fn try_from(i: &BindingIdentity) -> Result<Self, TransportError> {
        NodeIdentity::from_pem(&i.ca_pem, &i.cert_pem, &i.key_pem)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidParam {
        field,
        reason: reason.into(),
    }
}

pub fn link_kind(kind: &str) -> Result<LinkKind, TransportError> {
    match kind {
        "tcp" => Ok(LinkKind::Tcp),
        "quic" => Ok(LinkKind::Quic),
        other => Err(invalid("kind", format!("`{other}` is not tcp or quic"))),
    }
}

pub fn address(host: &str, port: u32) -> Result<SocketAddr, TransportError> {
    let port = u16::try_from(port).map_err(|_| invalid("port", format!("{port} is not a port")))?;
    let ip = host
        .parse()
        .map_err(|_| invalid("host", format!("`{host}` is not an IP address")))?;
    Ok(SocketAddr::new(ip, port))
}

pub fn congestion(name: Option<&str>) -> Result<Congestion, TransportError> {
    Congestion::from_name(name.unwrap_or("default"))
}

/// Where and how to listen.
#[napi(object)]
pub struct BindingListenOptions {
    /// `tcp` or `quic`.
    pub kind: String,
    pub host: String,
    /// 0 picks a free port.
    pub port: u32,
    pub identity: BindingIdentity,
    /// `default`, `cubic`, `bbr` or `reno`.
    pub congestion: Option<String>,
    /// Receive window in frames.
    pub window_frames: Option<u32>,
    /// Fail a transfer this long after its last connection went.
    pub orphan_timeout_ms: Option<u32>,
}

/// The listener `o` describes.
pub fn listener_config(o: &BindingListenOptions) -> Result<ListenerConfig, TransportError> {
    Ok(ListenerConfig {
        kind: link_kind(&o.kind)?,
        addr: address(&o.host, o.port)?,
        congestion: congestion(o.congestion.as_deref())?,
        receive: receive_options(o),
    })
}

pub fn receive_options(o: &BindingListenOptions) -> ReceiveOptions {
    let mut r = ReceiveOptions::default();
    if let Some(w) = o.window_frames {
        r.receiver.window = w;
    }
    if let Some(ms) = o.orphan_timeout_ms {
        r.orphan_timeout = Duration::from_millis(u64::from(ms));
    }
    r
}

/// Where to send and how.
#[napi(object)]
#[derive(Clone)]
pub struct BindingSendOptions {
    pub kind: String,
    pub host: String,
    pub port: u32,
    /// The name the receiver's certificate must carry.
    pub server_name: String,
    pub identity: BindingIdentity,
    /// A fixed number of connections; omit for adaptive.
    pub streams: Option<u32>,
    /// Upper bound for adaptive mode (default 16).
    pub max_streams: Option<u32>,
    /// Connections at start in adaptive mode (default 2).
    pub initial_streams: Option<u32>,
    /// Cap in bytes per second over all connections.
    pub rate_cap: Option<f64>,
    pub congestion: Option<String>,
    /// Payload bytes per frame (default 65536).
    pub frame_size: Option<u32>,
}

pub fn send_options(o: &BindingSendOptions) -> Result<SendOptions, TransportError> {
    let mut sender = SenderConfig::default();
    if let Some(f) = o.frame_size {
        sender.frame_size = f as usize;
    }
    if let Some(rate) = o.rate_cap {
        if !(rate.is_finite() && rate >= 1.0) {
            return Err(invalid(
                "rateCap",
                format!("{rate} is not a positive number of bytes per second"),
            ));
        }
        // Checked finite and ≥ 1 above; saturating conversion is the intent.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rate = rate as u64;
        sender.rate_cap = Some(rate);
    }
    let streams = match o.streams {
        Some(n) => StreamCount::Fixed(n),
        None => {
            let mut c = AdaptConfig::default();
            if let Some(m) = o.max_streams {
                c.max = m;
            }
            if let Some(i) = o.initial_streams {
                c.initial = i;
            }
            c.validate()?;
            StreamCount::Adaptive(c)
        }
    };
    sender.validate()?;
    Ok(SendOptions {
        streams,
        sender,
        ..SendOptions::default()
    })
}

/// The dialer `o` describes. QUIC binds its endpoint here: call within the addon's runtime.
pub fn dialer(o: &BindingSendOptions) -> Result<Dialer, TransportError> {
    let identity = NodeIdentity::try_from(&o.identity)?;
    Dialer::new(
        link_kind(&o.kind)?,
        address(&o.host, o.port)?,
        &o.server_name,
        &identity,
        congestion(o.congestion.as_deref())?,
    )
}

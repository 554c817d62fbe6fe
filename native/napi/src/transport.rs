//! AMST for JS: certificates, a listener with incoming transfers, and a sender. Bytes may cross
//! into JS (`write`/`read`), or stay native end to end (`sendSynthetic`/`drainToHash`) for benches.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dwcp_amst::ProbeEnd;
use dwcp_transport::pki::{self, NodeCertRequest, PemPair};
use dwcp_transport::{
    send_stream, ConnectionStats, IncomingStream, Listener, NodeIdentity, ProbeInbox, ProbeReport,
    ProbeRequest, SendReport, TransferStats, TransportError,
};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio::sync::{mpsc, watch, Mutex};

use crate::error::transport_to_napi as err;
use crate::transport_options::{
    dialer, listener_config, send_options, BindingListenOptions, BindingSendOptions,
};

/// A certificate and key, PEM encoded.
#[napi(object)]
pub struct BindingPemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a node certificate names.
#[napi(object)]
pub struct BindingNodeCertRequest {
    pub node_name: String,
    /// More DNS names or IP addresses.
    pub extra_names: Option<Vec<String>>,
    /// Default 365.
    pub valid_days: Option<u32>,
}

/// Creates a cluster CA.
#[napi(catch_unwind)]
pub fn generate_cluster_ca(cluster_name: String) -> napi::Result<BindingPemPair> {
    let p = pki::generate_cluster_ca(&cluster_name).map_err(err)?;
    Ok(BindingPemPair {
        cert_pem: p.cert_pem,
        key_pem: p.key_pem,
    })
}

/// Issues a node certificate (TLS server and client) signed by the CA.
#[napi(catch_unwind)]
pub fn issue_node_certificate(
    ca: BindingPemPair,
    request: BindingNodeCertRequest,
) -> napi::Result<BindingPemPair> {
    let mut req = NodeCertRequest::new(request.node_name);
    req.extra_names = request.extra_names.unwrap_or_default();
    if let Some(days) = request.valid_days {
        req.valid_for = std::time::Duration::from_secs(u64::from(days) * 86_400);
    }
    let ca = PemPair {
        cert_pem: ca.cert_pem,
        key_pem: ca.key_pem,
    };
    let p = pki::issue_node_certificate(&ca, &req).map_err(err)?;
    Ok(BindingPemPair {
        cert_pem: p.cert_pem,
        key_pem: p.key_pem,
    })
}

/// One connection's measurements.
#[napi(object)]
pub struct BindingConnStats {
    pub id: u32,
    pub srtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    /// Bytes per second.
    pub delivery_rate: f64,
    pub inflight_bytes: f64,
    pub window_bytes: f64,
    pub sent_bytes: f64,
    pub acked_bytes: f64,
    /// Frames moved off this connection and sent again elsewhere.
    pub moved_frames: f64,
    pub active: bool,
    /// Congestion window in bytes: TCP's `snd_cwnd × snd_mss` (`TCP_INFO`), or quinn's cwnd.
    pub cwnd_bytes: Option<f64>,
    /// The kernel's pacing rate, bytes per second (TCP only).
    pub pacing_rate: Option<f64>,
    /// The kernel's latest delivery-rate sample, bytes per second (TCP only).
    pub kernel_delivery_rate: Option<f64>,
    /// Cumulative: TCP's retransmitted segments, or the packets quinn declared lost.
    pub retransmits: Option<f64>,
    /// The kernel's (or quinn's) smoothed RTT, without AMST's queueing.
    pub kernel_rtt_ms: Option<f64>,
    /// The kernel's (or quinn's) minimum RTT.
    pub kernel_min_rtt_ms: Option<f64>,
    /// Congestion events (QUIC only).
    pub congestion_events: Option<f64>,
}

// Counters stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl From<&ConnectionStats> for BindingConnStats {
    fn from(c: &ConnectionStats) -> Self {
        let (a, k) = (&c.amst, &c.link);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        BindingConnStats {
            id: a.id.0,
            srtt_ms: a.srtt.map(ms),
            min_rtt_ms: a.min_rtt.map(ms),
            delivery_rate: a.delivery_rate,
            inflight_bytes: a.inflight_bytes as f64,
            window_bytes: a.window_bytes as f64,
            sent_bytes: a.sent_bytes as f64,
            acked_bytes: a.acked_bytes as f64,
            moved_frames: a.moved_frames as f64,
            active: a.active,
            cwnd_bytes: k.cwnd_bytes.map(|v| v as f64),
            pacing_rate: k.pacing_rate,
            kernel_delivery_rate: k.delivery_rate,
            retransmits: k.retransmits.map(|v| v as f64),
            kernel_rtt_ms: k.rtt.map(ms),
            kernel_min_rtt_ms: k.min_rtt.map(ms),
            congestion_events: k.congestion_events.map(|v| v as f64),
        }
    }
}

/// A transfer's progress.
#[napi(object)]
pub struct BindingTransferStats {
    pub bytes_written: f64,
    pub bytes_acked: f64,
    pub frames_resent: f64,
    pub elapsed_seconds: f64,
    pub target_streams: u32,
    pub connections: Vec<BindingConnStats>,
}

// Counters stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl From<&TransferStats> for BindingTransferStats {
    fn from(s: &TransferStats) -> Self {
        BindingTransferStats {
            bytes_written: s.bytes_written as f64,
            bytes_acked: s.bytes_acked as f64,
            frames_resent: s.frames_resent as f64,
            elapsed_seconds: s.elapsed,
            target_streams: s.target_streams,
            connections: s.connections.iter().map(Into::into).collect(),
        }
    }
}

/// One connection's share of a probe, with the kernel's (or quinn's) view at its end.
#[napi(object)]
pub struct BindingProbeConnection {
    pub id: u32,
    /// Probe payload bytes acknowledged on it.
    pub bytes: f64,
    /// Smoothed probe RTT (send to PROBE_ACK, queueing included).
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub cwnd_bytes: Option<f64>,
    pub pacing_rate: Option<f64>,
    pub kernel_delivery_rate: Option<f64>,
    pub retransmits: Option<f64>,
    pub kernel_rtt_ms: Option<f64>,
    pub kernel_min_rtt_ms: Option<f64>,
    pub congestion_events: Option<f64>,
}

/// What a probe before the stream measured.
#[napi(object)]
pub struct BindingProbeResult {
    pub duration_ms: f64,
    /// Probe payload bytes acknowledged.
    pub bytes: f64,
    /// The best round's aggregate goodput, bytes per second.
    pub goodput_bytes_per_sec: f64,
    /// Smoothed RTT over every probe frame.
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    /// Connections probed.
    pub connections: u32,
    pub per_connection: Vec<BindingProbeConnection>,
    /// Why it ended: goodput stopped growing, the time limit, or the stream's first bytes.
    #[napi(ts_type = "'plateau' | 'maxMs' | 'stream'")]
    pub ended_by: String,
    /// Rounds (about one RTT each) completed.
    pub rounds: u32,
}

// Counters stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl From<&ProbeReport> for BindingProbeResult {
    fn from(p: &ProbeReport) -> Self {
        let r = &p.result;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let per_connection = r
            .connections
            .iter()
            .map(|c| {
                let k = p
                    .links
                    .iter()
                    .find(|(id, _)| *id == c.id)
                    .map(|(_, k)| *k)
                    .unwrap_or_default();
                BindingProbeConnection {
                    id: c.id.0,
                    bytes: c.bytes as f64,
                    rtt_ms: c.srtt.map(ms),
                    min_rtt_ms: c.min_rtt.map(ms),
                    cwnd_bytes: k.cwnd_bytes.map(|v| v as f64),
                    pacing_rate: k.pacing_rate,
                    kernel_delivery_rate: k.delivery_rate,
                    retransmits: k.retransmits.map(|v| v as f64),
                    kernel_rtt_ms: k.rtt.map(ms),
                    kernel_min_rtt_ms: k.min_rtt.map(ms),
                    congestion_events: k.congestion_events.map(|v| v as f64),
                }
            })
            .collect();
        BindingProbeResult {
            duration_ms: ms(r.duration),
            bytes: r.bytes as f64,
            goodput_bytes_per_sec: r.goodput,
            rtt_ms: r.srtt.map(ms),
            min_rtt_ms: r.min_rtt.map(ms),
            connections: u32::try_from(r.connections.len()).unwrap_or(u32::MAX),
            per_connection,
            ended_by: match r.ended {
                ProbeEnd::Plateau => "plateau",
                ProbeEnd::MaxTime => "maxMs",
                ProbeEnd::Stream => "stream",
            }
            .to_string(),
            rounds: r.rounds,
        }
    }
}

/// `maxMs` as a probe's limit: 1 ms to 60 s.
pub(crate) fn probe_limit(max_ms: u32) -> Result<std::time::Duration, TransportError> {
    if !(1..=60_000).contains(&max_ms) {
        return Err(TransportError::InvalidParam {
            field: "maxMs",
            reason: format!("{max_ms} is outside 1..=60000"),
        });
    }
    Ok(std::time::Duration::from_millis(u64::from(max_ms)))
}

/// The outcome of a transfer.
#[napi(object)]
pub struct BindingSendReport {
    pub stats: BindingTransferStats,
    pub max_streams: u32,
    pub failed_connections: u32,
}

impl From<SendReport> for BindingSendReport {
    fn from(r: SendReport) -> Self {
        BindingSendReport {
            stats: (&r.stats).into(),
            max_streams: r.max_streams,
            failed_connections: r.failed_connections,
        }
    }
}

/// Accepts transfers.
#[napi(js_name = "AmstListener")]
pub struct BindingListener {
    inner: Arc<Listener>,
}

#[napi]
impl BindingListener {
    /// Binds a TCP+TLS or QUIC listener.
    #[napi(factory)]
    pub async fn bind(options: BindingListenOptions) -> napi::Result<BindingListener> {
        let identity = NodeIdentity::try_from(&options.identity).map_err(err)?;
        let config = listener_config(&options).map_err(err)?;
        let listener = Listener::bind(config, &identity).await.map_err(err)?;
        Ok(BindingListener {
            inner: Arc::new(listener),
        })
    }

    /// The bound port.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        u32::from(self.inner.local_addr().port())
    }

    /// Connections refused so far (bad certificate, not TLS, bad hello).
    #[napi]
    #[allow(clippy::cast_precision_loss)]
    pub fn refused(&self) -> f64 {
        self.inner.refused() as f64
    }

    /// Stops accepting new connections; transfers already accepted go on.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }

    /// The next incoming transfer.
    #[napi]
    pub async fn accept(&self) -> Option<BindingIncoming> {
        let incoming = self.inner.accept().await?;
        Some(BindingIncoming {
            inner: Arc::new(Mutex::new(incoming)),
        })
    }
}

/// What `drainToHash` found.
#[napi(object)]
pub struct BindingDrainReport {
    pub bytes: f64,
    /// BLAKE3 of the whole stream, hex.
    pub blake3: String,
    pub seconds: f64,
}

/// One transfer arriving.
#[napi(js_name = "AmstIncoming")]
pub struct BindingIncoming {
    inner: Arc<Mutex<IncomingStream>>,
}

#[napi]
impl BindingIncoming {
    /// The next in-order piece; `null` at the end.
    #[napi]
    pub async fn read(&self) -> napi::Result<Option<Buffer>> {
        let piece = self.inner.lock().await.read().await.map_err(err)?;
        Ok(piece.map(|b| Buffer::from(b.to_vec())))
    }

    /// Reads to the end natively, hashing as it goes: the stream never crosses into JS.
    #[napi]
    #[allow(clippy::cast_precision_loss)]
    pub async fn drain_to_hash(&self) -> napi::Result<BindingDrainReport> {
        let started = Instant::now();
        let mut stream = self.inner.lock().await;
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        while let Some(piece) = stream.read().await.map_err(err)? {
            bytes += piece.len() as u64;
            hasher.update(&piece);
        }
        Ok(BindingDrainReport {
            bytes: bytes as f64,
            blake3: hasher.finalize().to_hex().to_string(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Sends one stream. `write` resolves once the bytes are queued (backpressure); `end` then
/// `finished` waits until the receiver has everything.
#[napi(js_name = "AmstSender")]
pub struct BindingSender {
    data: std::sync::Mutex<Option<mpsc::Sender<Bytes>>>,
    cancel: watch::Sender<bool>,
    progress: watch::Receiver<TransferStats>,
    probes: mpsc::Sender<ProbeRequest>,
    done: Mutex<Option<tokio::task::JoinHandle<Result<SendReport, TransportError>>>>,
}

fn start_send(
    options: &BindingSendOptions,
) -> Result<(BindingSender, mpsc::Sender<Bytes>), TransportError> {
    let mut send = send_options(options)?;
    let (probes, inbox) = ProbeInbox::new();
    send.probes = Some(inbox);
    let (data_tx, data_rx) = mpsc::channel(16);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = watch::channel(TransferStats::default());
    // Both need the addon's tokio runtime: quinn binds its endpoint on it.
    let task = napi::bindgen_prelude::within_runtime_if_available(|| {
        Ok::<_, TransportError>(tokio::spawn(send_stream(
            dialer(options)?,
            data_rx,
            send,
            cancel_rx,
            Some(progress_tx),
        )))
    })?;
    let sender = BindingSender {
        data: std::sync::Mutex::new(Some(data_tx.clone())),
        cancel: cancel_tx,
        progress: progress_rx,
        probes,
        done: Mutex::new(Some(task)),
    };
    Ok((sender, data_tx))
}

#[napi]
impl BindingSender {
    /// Connects and starts a transfer.
    #[napi(factory, catch_unwind)]
    pub fn start(options: BindingSendOptions) -> napi::Result<BindingSender> {
        start_send(&options).map(|(s, _)| s).map_err(err)
    }

    /// Queues bytes; waits while the transfer is behind (backpressure).
    #[napi]
    pub async fn write(&self, data: Buffer) -> napi::Result<()> {
        if *self.cancel.borrow() {
            return Err(napi::Error::from_reason(
                "ERR_AMST_CANCELLED: the transfer was cancelled",
            ));
        }
        let tx = self
            .data
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .ok_or_else(|| napi::Error::from_reason("ERR_AMST_ENDED: write after end"))?;
        tx.send(Bytes::copy_from_slice(&data))
            .await
            .map_err(|_| napi::Error::from_reason("ERR_AMST_CANCELLED: the transfer has stopped"))
    }

    /// Measures the path over this transfer's connections before the first `write`: PROBE
    /// frames the receiver acknowledges and discards, until goodput stops growing, `maxMs`
    /// passes, or stream bytes are written (they never wait on it). Rejects with
    /// `ERR_AMST_PROBE_FAILED` if the path is lost meanwhile; the transfer goes on.
    #[napi]
    pub async fn probe(&self, max_ms: u32) -> napi::Result<BindingProbeResult> {
        let max = probe_limit(max_ms).map_err(err)?;
        let (request, answer) = ProbeRequest::new(max);
        let ended = || err(TransportError::Probe("the transfer has ended".into()));
        self.probes.send(request).await.map_err(|_| ended())?;
        let report = answer.await.map_err(|_| ended())?.map_err(err)?;
        Ok((&report).into())
    }

    /// No more writes: the stream ends after what was written.
    #[napi]
    pub fn end(&self) {
        if let Ok(mut g) = self.data.lock() {
            g.take();
        }
    }

    /// Stops the transfer now; `finished` rejects with `ERR_AMST_CANCELLED`.
    #[napi]
    pub fn cancel(&self) {
        let _ = self.cancel.send(true);
        self.end();
    }

    /// Progress so far.
    #[napi]
    pub fn stats(&self) -> BindingTransferStats {
        (&*self.progress.borrow()).into()
    }

    /// Waits for the receiver to have the whole stream.
    #[napi]
    pub async fn finished(&self) -> napi::Result<BindingSendReport> {
        let task = self.done.lock().await.take().ok_or_else(|| {
            napi::Error::from_reason("ERR_AMST_ENDED: finished() already awaited")
        })?;
        let report = task
            .await
            .map_err(|e| napi::Error::from_reason(format!("ERR_NATIVE_PANIC: {e}")))?
            .map_err(err)?;
        Ok(report.into())
    }
}

/// Sends `bytes` of pseudo-random (incompressible) data generated natively from `seed`: the
/// benchmark path, where no byte crosses into JS.
#[napi]
pub async fn send_synthetic(
    options: BindingSendOptions,
    bytes: f64,
    seed: u32,
) -> napi::Result<BindingSendReport> {
    if !(bytes.is_finite() && bytes >= 1.0 && bytes <= 2f64.powi(50)) {
        return Err(err(TransportError::InvalidParam {
            field: "bytes",
            reason: format!("{bytes} is not a positive byte count"),
        }));
    }
    // Checked above to be a whole-ish positive number below 2^50.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = bytes as u64;
    let (sender, tx) = start_send(&options).map_err(err)?;
    sender.end();
    tokio::spawn(async move {
        let mut synthetic = Synthetic::new(total, seed);
        while let Some(piece) = synthetic.next_piece() {
            if tx.send(piece).await.is_err() {
                return;
            }
        }
    });
    sender.finished().await
}

/// The BLAKE3 (hex) of what `sendSynthetic(_, bytes, seed)` sends, to check a receiver's hash.
#[napi]
pub async fn synthetic_blake3(bytes: f64, seed: u32) -> napi::Result<String> {
    // Checked by the caller's range in practice; a negative or huge value just hashes nothing/more.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = bytes.max(0.0) as u64;
    let mut synthetic = Synthetic::new(total, seed);
    let mut hasher = blake3::Hasher::new();
    while let Some(piece) = synthetic.next_piece() {
        hasher.update(&piece);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Incompressible bytes from xorshift64, in 1 MiB pieces.
struct Synthetic {
    state: u64,
    left: u64,
}

impl Synthetic {
    fn new(total: u64, seed: u32) -> Self {
        Synthetic {
            state: u64::from(seed) | 1,
            left: total,
        }
    }

    fn next_piece(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(1 << 20);
        self.left -= n;
        let mut piece = vec![0u8; usize::try_from(n).unwrap_or(1 << 20)];
        for word in piece.chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let b = self.state.to_le_bytes();
            word.copy_from_slice(&b[..word.len()]);
        }
        Some(Bytes::from(piece))
    }
}

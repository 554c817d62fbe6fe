//! The sending side: QEMU's migration stream from a unix socket, through the HDE encoder, into
//! an AMST sender.
//!
//! Stages: reader (async: accepts QEMU, reads the socket) → encoder (a blocking thread: FastCDC,
//! BLAKE3, zstd/lz4) → AMST sender (async). Bounded channels join them, so when AMST stops taking
//! bytes the reader stops reading and QEMU's writes block: QEMU's own rate follows the link.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dwcp_hde::{ChunkId, ChunkerParams, CodecGovernor, CodecLevel, Encoder, EncoderStats, Workers};
use dwcp_transport::{
    send_stream, Dialer, ProbeInbox, ProbeReport, ProbeRequest, SendOptions, SendReport,
    TransferStats,
};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::stage::{cancelled, gather, joined, pass_on, Piece, Stop, QUEUE};
use crate::{PipelineError, Result};

/// How a source reads, encodes and sends.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Where to listen; QEMU's `migrate unix:<path>` connects here. Must not exist yet.
    pub socket_path: PathBuf,
    /// FastCDC sizes.
    pub chunker: ChunkerParams,
    /// Codec and level of the chunks sent in full.
    pub level: CodecLevel,
    /// Chunks the destination already holds (its [inventory](crate::inventory)): sent as references.
    pub present: Vec<ChunkId>,
    /// AMST: connection count, frame size, rate cap.
    pub send: SendOptions,
    /// Bytes asked of the socket per read.
    pub read_size: usize,
    /// Let a [`CodecGovernor`] step down to cheaper codecs while the encoder, not the link, is
    /// the bottleneck (and back up to `level` when the link pushes back). Default on.
    pub adaptive_codec: bool,
    /// Threads for HDE's hashing and compression (1..=64; the output is the same at any count).
    pub hde_threads: usize,
}

/// AMST's send buffer for a migration: bytes taken from QEMU and not yet acknowledged.
///
/// QEMU times its own writes to decide when to stop the VM, so whatever sits in this buffer is
/// invisible to its downtime estimate and adds to the real pause. AMST's default (64 MiB) held a
/// whole 128 MiB guest's stream: QEMU "completed" in 0.5 s and the guest stood still for 5 s
/// while the pipeline drained. Keep it near bandwidth × RTT.
pub const DEFAULT_SEND_BUFFER: usize = 8 << 20;

impl SourceOptions {
    /// Defaults: 16/64/256 KiB chunks, zstd level 1, adaptive AMST with an 8 MiB send buffer,
    /// 256 KiB reads, no inventory, HDE on the host's cores (at most 8).
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        let mut send = SendOptions::default();
        send.sender.send_buffer = DEFAULT_SEND_BUFFER;
        SourceOptions {
            socket_path: socket_path.into(),
            chunker: ChunkerParams::default(),
            level: CodecLevel::fast(dwcp_hde::Codec::Zstd),
            present: Vec::new(),
            send,
            read_size: 256 * 1024,
            adaptive_codec: true,
            hde_threads: Workers::available(),
        }
    }
}

/// Progress of a source.
#[derive(Debug, Clone, Default)]
pub struct SourceStats {
    /// Raw migration-stream bytes read from QEMU.
    pub bytes_from_qemu: u64,
    /// QEMU has connected.
    pub qemu_connected: bool,
    /// QEMU has closed its end: its migration stream is complete.
    pub qemu_finished: bool,
    /// The encoder's counters: `bytes_out` is the HDE stream handed to AMST, `known_*` the
    /// chunks deduplicated against the destination's inventory, the rest of `dedup_*` repeats
    /// within this stream.
    pub encoder: EncoderStats,
    /// AMST's counters.
    pub transfer: TransferStats,
    /// The codec level the encoder uses now (None before QEMU connected).
    pub codec: Option<CodecLevel>,
    /// How often the governor changed it.
    pub codec_changes: u32,
}

impl SourceStats {
    /// Encoded bytes handed to AMST (its frame headers and TLS come on top).
    pub fn wire_bytes(&self) -> u64 {
        self.encoder.bytes_out
    }

    /// Raw bytes per encoded byte so far (1 before anything is encoded).
    #[allow(clippy::cast_precision_loss)] // a ratio
    pub fn compression_ratio(&self) -> f64 {
        if self.encoder.bytes_out == 0 {
            return 1.0;
        }
        self.encoder.bytes_in as f64 / self.encoder.bytes_out as f64
    }
}

/// A completed source.
#[derive(Debug, Clone)]
pub struct SourceReport {
    /// Final counters.
    pub stats: SourceStats,
    /// AMST's report: every byte acknowledged by the sink's transport.
    pub send: SendReport,
    /// From start to the last acknowledgement.
    pub elapsed: Duration,
}

struct Shared {
    bytes_from_qemu: AtomicU64,
    connected: AtomicBool,
    eof: AtomicBool,
    encoder: watch::Receiver<EncoderStats>,
    codec: watch::Receiver<(CodecLevel, u32)>,
    transfer: watch::Receiver<TransferStats>,
}

/// One migration's sending side. Dropping it cancels it.
pub struct MigrationSource {
    socket_path: PathBuf,
    cancel: watch::Sender<bool>,
    buffer_limit: watch::Sender<usize>,
    probes: mpsc::Sender<ProbeRequest>,
    shared: Arc<Shared>,
    task: tokio::sync::Mutex<Option<JoinHandle<Result<SourceReport>>>>,
}

impl std::fmt::Debug for MigrationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationSource")
            .field("socket_path", &self.socket_path)
            .finish_non_exhaustive()
    }
}

impl MigrationSource {
    /// Binds the unix socket, starts dialing the sink and returns at once; the migration runs
    /// in the background. Must be called within a tokio runtime.
    pub fn start(options: SourceOptions, dialer: Dialer) -> Result<Self> {
        if !(4096..=16 << 20).contains(&options.read_size) {
            return Err(PipelineError::InvalidParam {
                field: "readSize",
                reason: format!("{} is outside 4096..=16 MiB", options.read_size),
            });
        }
        let mut encoder = Encoder::new(options.chunker, options.level)?;
        encoder.mark_present(options.present);
        encoder.set_threads(options.hde_threads)?;
        let governor = if options.adaptive_codec {
            CodecGovernor::new(options.level)
        } else {
            CodecGovernor::fixed(options.level)
        };
        let (codec_tx, codec_rx) = watch::channel((options.level, 0));
        let path = options.socket_path;
        let listener = UnixListener::bind(&path)
            .map_err(|e| PipelineError::io(format!("bind {}", path.display()), e))?;
        let socket = SocketFile(path.clone());
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (encoder_tx, encoder_rx) = watch::channel(encoder.stats());
        let (transfer_tx, transfer_rx) = watch::channel(TransferStats::default());
        let (buffer_limit, buffer_limit_rx) = watch::channel(options.send.sender.send_buffer);
        let mut send = options.send;
        send.buffer_limit = Some(buffer_limit_rx);
        let (probes, inbox) = ProbeInbox::new();
        send.probes = Some(inbox);
        let shared = Arc::new(Shared {
            bytes_from_qemu: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            encoder: encoder_rx,
            codec: codec_rx,
            transfer: transfer_rx,
        });
        let run = Run {
            listener,
            socket,
            read_size: options.read_size,
            cancel: cancel_rx,
            shared: Arc::clone(&shared),
        };
        let encoding = Encoding {
            encoder,
            governor,
            stats: encoder_tx,
            codec: codec_tx,
        };
        let task = tokio::spawn(run.run(encoding, dialer, send, transfer_tx));
        Ok(MigrationSource {
            socket_path: path,
            cancel: cancel_tx,
            buffer_limit,
            probes,
            shared,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// The unix socket QEMU should migrate to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Progress so far.
    pub fn stats(&self) -> SourceStats {
        stats_of(&self.shared)
    }

    /// Bounds AMST's send buffer (stream bytes taken and not yet acknowledged) from now on. What
    /// sits there is invisible to QEMU's downtime estimate and adds to the guest's pause, so the
    /// caller keeps it near the path's bandwidth-delay product as it measures the path. A value
    /// under two frames is ignored.
    pub fn set_buffer_bytes(&self, bytes: usize) {
        self.buffer_limit.send_replace(bytes);
    }

    /// Probes the path to the sink over the migration's own AMST connections, before QEMU's
    /// first byte: PROBE frames the sink acknowledges and discards, until goodput stops growing,
    /// `max` passes, or QEMU's stream starts (it never waits on the probe). The connections stay
    /// up for the stream. Fails with `ERR_AMST_PROBE_FAILED` if the path is lost meanwhile (the
    /// migration itself goes on, and can be cancelled as usual); resolves within `max` plus the
    /// probe's stall timeout.
    pub async fn probe(&self, max: Duration) -> Result<ProbeReport> {
        let ended = || {
            PipelineError::from(dwcp_transport::TransportError::Probe(
                "the migration's transfer has ended".into(),
            ))
        };
        let (request, answer) = ProbeRequest::new(max);
        self.probes.send(request).await.map_err(|_| ended())?;
        answer
            .await
            .map_err(|_| ended())?
            .map_err(PipelineError::from)
    }

    /// Stops at once: QEMU's socket is closed (its migration fails and the VM keeps running on
    /// the source) and AMST's connections are dropped (the sink fails).
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Waits until QEMU's stream is complete and the sink's transport has every byte. By then
    /// every task of this migration has ended, on success and on failure alike.
    pub async fn finished(&self) -> Result<SourceReport> {
        let task = self.task.lock().await.take().ok_or(PipelineError::Ended)?;
        task.await.map_err(PipelineError::joined)?
    }
}

fn stats_of(shared: &Shared) -> SourceStats {
    let connected = shared.connected.load(Ordering::Relaxed);
    let (codec, codec_changes) = *shared.codec.borrow();
    SourceStats {
        codec: connected.then_some(codec),
        codec_changes,
        bytes_from_qemu: shared.bytes_from_qemu.load(Ordering::Relaxed),
        qemu_connected: connected,
        qemu_finished: shared.eof.load(Ordering::Relaxed),
        encoder: *shared.encoder.borrow(),
        transfer: shared.transfer.borrow().clone(),
    }
}

/// The socket file, removed when the source stops listening however it stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Run {
    listener: UnixListener,
    socket: SocketFile,
    read_size: usize,
    cancel: watch::Receiver<bool>,
    shared: Arc<Shared>,
}

impl Run {
    async fn run(
        mut self,
        encoding: Encoding,
        dialer: Dialer,
        send: SendOptions,
        transfer: watch::Sender<TransferStats>,
    ) -> Result<SourceReport> {
        let started = Instant::now();
        let (send_cancel, send_cancel_rx) = watch::channel(false);
        let send_cancel = Arc::new(send_cancel);
        let (wire_tx, wire_rx) = mpsc::channel(QUEUE);
        // Dial now, so the connections are up by the time QEMU starts writing.
        let mut sender = Some(tokio::spawn(send_stream(
            dialer,
            wire_rx,
            send,
            send_cancel_rx,
            Some(transfer),
        )));
        let (raw_tx, raw_rx) = mpsc::channel(QUEUE);
        let stop_sender = Arc::clone(&send_cancel);
        let mut encoding = Some(tokio::task::spawn_blocking(move || {
            encode(encoding, raw_rx, wire_tx, &stop_sender)
        }));
        let mut cancel = self.cancel.clone();
        let outcome = async {
            match self.read_qemu(raw_tx, &mut sender).await {
                Ok(()) => {}
                Err(Stop::Failed(e)) => return Err(e),
                // The encoder or the sender stopped: theirs is the cause.
                Err(_) => {}
            }
            let encoded = tokio::select! {
                biased;
                () = cancelled(&mut cancel) => return Err(PipelineError::Cancelled),
                r = take(&mut encoding) => joined(r),
            };
            match encoded {
                Ok(()) => {}
                Err(Stop::Failed(e)) => return Err(e),
                // Only the sender can have stopped the encoder.
                Err(_) => {}
            }
            tokio::select! {
                biased;
                () = cancelled(&mut cancel) => Err(PipelineError::Cancelled),
                r = take(&mut sender) => r.map_err(PipelineError::joined)?.map_err(PipelineError::from),
            }
        }
        .await;
        // Teardown, on every path: nothing of this migration outlives `finished`.
        if outcome.is_err() {
            send_cancel.send_replace(true);
        }
        if let Some(t) = encoding {
            let _ = t.await;
        }
        if let Some(t) = sender {
            let _ = t.await;
        }
        let send = outcome?;
        Ok(SourceReport {
            stats: stats_of(&self.shared),
            send,
            elapsed: started.elapsed(),
        })
    }

    /// Accepts QEMU and forwards its stream until EOF. Returning closes QEMU's socket.
    /// `sender` is watched until QEMU connects, so a sink that cannot be reached fails the
    /// source at once (QEMU's `migrate` then finds no socket).
    async fn read_qemu(
        &mut self,
        raw: mpsc::Sender<Piece>,
        sender: &mut Option<JoinHandle<dwcp_transport::Result<SendReport>>>,
    ) -> std::result::Result<(), Stop> {
        let path = self.socket.0.display().to_string();
        let (mut stream, _) = tokio::select! {
            biased;
            () = cancelled(&mut self.cancel) => return Err(PipelineError::Cancelled.into()),
            sent = take(sender) => {
                return Err(Stop::Failed(match sent {
                    Ok(Err(e)) => e.into(),
                    Ok(Ok(_)) => PipelineError::Panic("AMST finished before QEMU connected".into()),
                    Err(e) => PipelineError::joined(e),
                }));
            }
            accepted = self.listener.accept() => {
                accepted.map_err(|e| PipelineError::io(format!("accept on {path}"), e))?
            }
        };
        // One migration per socket: nobody else may connect.
        let _ = std::fs::remove_file(&self.socket.0);
        self.shared.connected.store(true, Ordering::Relaxed);
        loop {
            let mut buf = BytesMut::with_capacity(self.read_size);
            let n = tokio::select! {
                biased;
                () = cancelled(&mut self.cancel) => return Err(PipelineError::Cancelled.into()),
                n = stream.read_buf(&mut buf) => {
                    n.map_err(|e| PipelineError::io(format!("read from QEMU on {path}"), e))?
                }
            };
            let piece = if n == 0 {
                self.shared.eof.store(true, Ordering::Relaxed);
                Piece::End
            } else {
                self.shared
                    .bytes_from_qemu
                    .fetch_add(n as u64, Ordering::Relaxed);
                Piece::Data(buf.freeze())
            };
            let end = matches!(piece, Piece::End);
            tokio::select! {
                biased;
                () = cancelled(&mut self.cancel) => return Err(PipelineError::Cancelled.into()),
                sent = raw.send(piece) => sent.map_err(|_| Stop::Downstream)?,
            }
            if end {
                return Ok(());
            }
        }
    }
}

/// Awaits a task held in an option, taking it so it is never polled after completion.
async fn take<T>(
    slot: &mut Option<JoinHandle<T>>,
) -> std::result::Result<T, tokio::task::JoinError> {
    match slot {
        Some(task) => {
            let r = task.await;
            *slot = None;
            r
        }
        None => std::future::pending().await,
    }
}

/// The encoder stage's state: the encoder, the governor of its codec level, and where both report.
struct Encoding {
    encoder: Encoder,
    governor: CodecGovernor,
    stats: watch::Sender<EncoderStats>,
    codec: watch::Sender<(CodecLevel, u32)>,
}

/// The encoder stage, on a blocking thread: raw pieces in, HDE stream pieces out.
///
/// Closing `wire` is how AMST learns that the stream is complete (it then sends its FIN), so on
/// any other way out the sender is cancelled first, before `wire` drops.
fn encode(
    mut encoding: Encoding,
    mut raw: mpsc::Receiver<Piece>,
    wire: mpsc::Sender<Bytes>,
    stop_sender: &watch::Sender<bool>,
) -> std::result::Result<(), Stop> {
    let result = encoding.encode_all(&mut raw, &wire);
    if result.is_err() {
        stop_sender.send_replace(true);
    }
    result
}

impl Encoding {
    /// Encodes until the stream's end, timing the encoder (busy) and the hand-over to AMST
    /// (blocked) for the governor.
    fn encode_all(
        &mut self,
        raw: &mut mpsc::Receiver<Piece>,
        wire: &mpsc::Sender<Bytes>,
    ) -> std::result::Result<(), Stop> {
        let mut out = Vec::new();
        loop {
            let (pieces, end) = match raw.blocking_recv().ok_or(Stop::Upstream)? {
                Piece::Data(first) => gather(first, raw, wire),
                Piece::End => (Vec::new(), true),
            };
            let started = Instant::now();
            self.encoder
                .push_many(&pieces, &mut out)
                .map_err(PipelineError::from)?;
            if end {
                self.encoder.finish(&mut out).map_err(PipelineError::from)?;
            }
            let encoded = Instant::now();
            self.stats.send_replace(self.encoder.stats());
            pass_on(wire, Bytes::from(std::mem::take(&mut out)), |piece| piece)?;
            if end {
                return Ok(());
            }
            let handed = Instant::now();
            if let Some(level) = self
                .governor
                .record(encoded - started, handed - encoded, handed)
            {
                self.encoder.set_level(level);
                self.codec.send_replace((level, self.governor.changes()));
            }
        }
    }
}

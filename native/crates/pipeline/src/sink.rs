//! The receiving side: one AMST transfer, through the HDE decoder (every chunk verified, new
//! chunks kept in the node's store), into the unix socket the destination QEMU listens on.
//!
//! Stages: AMST reader (async) → decoder (a blocking thread) → QEMU writer (async). The decoder
//! emits a chunk's bytes only after its BLAKE3 matched, and after any error nothing more is
//! written: QEMU sees its stream break off and fails instead of loading bad memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_hde::{Decoder, DecoderStats, Workers};
use dwcp_transport::{
    IncomingStream, Listener, ListenerConfig, NodeIdentity, ReceiveStats, TransportError,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::stage::{cancelled, gather, joined, pass_on, plain, Piece, Stop, QUEUE};
use crate::{PipelineError, Result, SharedStore};

/// Where the sink delivers.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// The destination QEMU's `migrate-incoming unix:<path>` socket.
    pub socket_path: PathBuf,
    /// How long to keep trying to connect to it once the transfer has arrived.
    pub connect_timeout: Duration,
    /// Threads for HDE's decompression and verification (1..=64).
    pub hde_threads: usize,
}

impl SinkOptions {
    /// Defaults: a 10 s connect timeout, HDE on the host's cores (at most 8).
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        SinkOptions {
            socket_path: socket_path.into(),
            connect_timeout: Duration::from_secs(10),
            hde_threads: Workers::available(),
        }
    }
}

/// Progress of a sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkStats {
    /// Raw migration-stream bytes written to QEMU.
    pub bytes_to_qemu: u64,
    /// Connected to QEMU's socket.
    pub qemu_connected: bool,
    /// The decoder's counters: `bytes_in` is the HDE stream from AMST, `chunks_received` the
    /// chunks that came in full (verified, then stored), `chunks_reused` those resolved from
    /// the store or from earlier in the stream.
    pub decoder: DecoderStats,
    /// AMST's counters.
    pub transfer: ReceiveStats,
}

impl SinkStats {
    /// Encoded bytes decoded so far.
    pub fn wire_bytes(&self) -> u64 {
        self.decoder.bytes_in
    }

    /// Raw bytes per encoded byte so far (1 before anything is decoded).
    #[allow(clippy::cast_precision_loss)] // a ratio
    pub fn compression_ratio(&self) -> f64 {
        if self.decoder.bytes_in == 0 {
            return 1.0;
        }
        self.decoder.bytes_out as f64 / self.decoder.bytes_in as f64
    }
}

/// A completed sink: the whole stream verified and written to QEMU.
#[derive(Debug, Clone, Copy)]
pub struct SinkReport {
    /// Final counters.
    pub stats: SinkStats,
    /// From the start to the last byte written.
    pub elapsed: Duration,
}

struct Shared {
    bytes_to_qemu: AtomicU64,
    connected: AtomicBool,
    decoder: watch::Receiver<DecoderStats>,
    transfer: watch::Receiver<ReceiveStats>,
}

/// One migration's receiving side. Dropping it cancels it.
pub struct MigrationSink {
    local_addr: SocketAddr,
    cancel: watch::Sender<bool>,
    shared: Arc<Shared>,
    task: tokio::sync::Mutex<Option<JoinHandle<Result<SinkReport>>>>,
}

impl std::fmt::Debug for MigrationSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationSink")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl MigrationSink {
    /// Binds an AMST listener and waits in the background for one transfer, which it decodes
    /// into `store` and writes to QEMU's socket.
    pub async fn bind(
        config: ListenerConfig,
        identity: &NodeIdentity,
        store: SharedStore,
        options: SinkOptions,
    ) -> Result<Self> {
        let listener = Listener::bind(config, identity).await?;
        let local_addr = listener.local_addr();
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (decoder_tx, decoder_rx) = watch::channel(DecoderStats::default());
        let (transfer_tx, transfer_rx) = watch::channel(ReceiveStats::default());
        let shared = Arc::new(Shared {
            bytes_to_qemu: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            decoder: decoder_rx,
            transfer: transfer_rx,
        });
        let mut decoder = Decoder::new(Box::new(store));
        decoder.set_threads(options.hde_threads)?;
        let task = tokio::spawn(run(
            listener,
            decoder,
            options,
            cancel_rx,
            Arc::clone(&shared),
            decoder_tx,
            transfer_tx,
        ));
        Ok(MigrationSink {
            local_addr,
            cancel: cancel_tx,
            shared,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// The AMST listener's address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Progress so far.
    pub fn stats(&self) -> SinkStats {
        stats_of(&self.shared)
    }

    /// Stops at once: AMST's connections and QEMU's socket are closed.
    pub fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    /// Waits until the whole stream is verified (END record included) and written to QEMU. By
    /// then every task of this migration has ended, on success and on failure alike.
    pub async fn finished(&self) -> Result<SinkReport> {
        let task = self.task.lock().await.take().ok_or(PipelineError::Ended)?;
        task.await.map_err(PipelineError::joined)?
    }
}

fn stats_of(shared: &Shared) -> SinkStats {
    SinkStats {
        bytes_to_qemu: shared.bytes_to_qemu.load(Ordering::Relaxed),
        qemu_connected: shared.connected.load(Ordering::Relaxed),
        decoder: *shared.decoder.borrow(),
        transfer: *shared.transfer.borrow(),
    }
}

async fn run(
    listener: Listener,
    decoder: Decoder,
    options: SinkOptions,
    mut cancel: watch::Receiver<bool>,
    shared: Arc<Shared>,
    decoder_stats: watch::Sender<DecoderStats>,
    transfer: watch::Sender<ReceiveStats>,
) -> Result<SinkReport> {
    let started = Instant::now();
    // The listener stays up until the transfer ends: AMST connections that drop come back
    // through it.
    let incoming = tokio::select! {
        biased;
        () = cancelled(&mut cancel) => return Err(PipelineError::Cancelled),
        incoming = listener.accept() => incoming.ok_or_else(|| {
            TransportError::NoConnection("the listener closed before a transfer arrived".into())
        })?,
    };
    let qemu = connect_qemu(&options, &mut cancel).await?;
    shared.connected.store(true, Ordering::Relaxed);

    let (wire_tx, wire_rx) = mpsc::channel(QUEUE);
    let (raw_tx, raw_rx) = mpsc::channel(QUEUE);
    let reader = tokio::spawn(read_amst(incoming, wire_tx, transfer));
    let decoding =
        tokio::task::spawn_blocking(move || decode(decoder, wire_rx, raw_tx, decoder_stats));
    let written = write_qemu(qemu, raw_rx, &mut cancel, &shared).await;
    // QEMU's socket is closed by now. Teardown, on every path: dropping the reader drops the
    // AMST connections, and the decoder ends once its channels close.
    let outcome = match written {
        Ok(()) => plain(joined(decoding.await)).and(plain(joined(reader.await))),
        Err(Stop::Failed(e)) => {
            reader.abort();
            let _ = decoding.await;
            let _ = reader.await;
            Err(e)
        }
        Err(_) => match joined(decoding.await) {
            Err(Stop::Failed(e)) => {
                reader.abort();
                let _ = reader.await;
                Err(e)
            }
            _ => plain(joined(reader.await)),
        },
    };
    drop(listener);
    outcome?;
    Ok(SinkReport {
        stats: stats_of(&shared),
        elapsed: started.elapsed(),
    })
}

/// QEMU listens on the socket once `migrate-incoming` returned; until then, keep trying.
async fn connect_qemu(
    options: &SinkOptions,
    cancel: &mut watch::Receiver<bool>,
) -> Result<UnixStream> {
    let deadline = Instant::now() + options.connect_timeout;
    loop {
        let reason = match UnixStream::connect(&options.socket_path).await {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                e.to_string()
            }
            Err(e) => {
                let path = options.socket_path.display();
                return Err(PipelineError::io(format!("connect to QEMU at {path}"), e));
            }
        };
        if Instant::now() >= deadline {
            return Err(PipelineError::QemuUnreachable {
                path: options.socket_path.display().to_string(),
                waited_ms: u64::try_from(options.connect_timeout.as_millis()).unwrap_or(u64::MAX),
                reason,
            });
        }
        tokio::select! {
            biased;
            () = cancelled(cancel) => return Err(PipelineError::Cancelled),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// The AMST stage: in-order pieces of the HDE stream, then `End` once the transfer completed.
async fn read_amst(
    mut incoming: IncomingStream,
    wire: mpsc::Sender<Piece>,
    stats: watch::Sender<ReceiveStats>,
) -> std::result::Result<(), Stop> {
    loop {
        let piece = incoming.read().await.map_err(PipelineError::from);
        stats.send_replace(incoming.stats());
        let piece = match piece? {
            Some(data) => Piece::Data(data),
            None => Piece::End,
        };
        let end = matches!(piece, Piece::End);
        wire.send(piece).await.map_err(|_| Stop::Downstream)?;
        if end {
            return Ok(());
        }
    }
}

/// The decoder stage, on a blocking thread. A push that fails drops everything it produced, so
/// no byte of a bad chunk (nor anything after it) is passed on.
fn decode(
    mut decoder: Decoder,
    mut wire: mpsc::Receiver<Piece>,
    raw: mpsc::Sender<Piece>,
    stats: watch::Sender<DecoderStats>,
) -> std::result::Result<(), Stop> {
    let mut out = Vec::new();
    loop {
        let (pieces, end) = match wire.blocking_recv().ok_or(Stop::Upstream)? {
            Piece::Data(first) => gather(first, &mut wire, &raw),
            Piece::End => (Vec::new(), true),
        };
        let mut result = decoder.push_many(&pieces, &mut out);
        if end && result.is_ok() {
            result = decoder.finish();
        }
        stats.send_replace(decoder.stats());
        result.map_err(PipelineError::from)?;
        pass_on(&raw, Bytes::from(std::mem::take(&mut out)), Piece::Data)?;
        if end {
            raw.blocking_send(Piece::End)
                .map_err(|_| Stop::Downstream)?;
            // QEMU has the whole stream; only now make the stored chunks durable.
            return decoder
                .flush_cache()
                .map_err(|e| Stop::Failed(PipelineError::from(e)));
        }
    }
}

/// The QEMU stage: writes the rebuilt stream, then closes our direction so QEMU sees the end.
async fn write_qemu(
    mut qemu: UnixStream,
    mut raw: mpsc::Receiver<Piece>,
    cancel: &mut watch::Receiver<bool>,
    shared: &Shared,
) -> std::result::Result<(), Stop> {
    let fail = |what: &str, e| Stop::Failed(PipelineError::io(format!("{what} QEMU"), e));
    loop {
        let piece = tokio::select! {
            biased;
            () = cancelled(cancel) => return Err(PipelineError::Cancelled.into()),
            piece = raw.recv() => piece.ok_or(Stop::Upstream)?,
        };
        match piece {
            Piece::Data(data) => {
                tokio::select! {
                    biased;
                    () = cancelled(cancel) => return Err(PipelineError::Cancelled.into()),
                    r = qemu.write_all(&data) => r.map_err(|e| fail("write to", e))?,
                }
                shared
                    .bytes_to_qemu
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Piece::End => {
                qemu.shutdown().await.map_err(|e| fail("shut down", e))?;
                return Ok(());
            }
        }
    }
}

//! The migration data path for JS: `MigrationSource` and `MigrationSink` run QEMU's stream
//! through HDE and AMST natively; JS starts them, reads their stats and cancels them, and no
//! byte of the stream crosses into JS.

use std::sync::Arc;
use std::time::Duration;

use dwcp_hde::{ChunkerParams, CodecLevel};
use dwcp_pipeline::{
    inventory, MigrationSink, MigrationSource, PipelineError, SharedStore, SinkOptions, SinkReport,
    SinkStats, SourceOptions, SourceReport, SourceStats,
};
use dwcp_transport::{NodeIdentity, TransportError};
use napi::bindgen_prelude::{Buffer, PromiseRaw};
use napi::Env;
use napi_derive::napi;

use crate::error::pipeline_to_napi as err;
use crate::options::{BindingChunkerOptions, BindingCodecOptions};
use crate::store::BindingChunkStore;
use crate::transport::{probe_limit, BindingProbeResult, BindingTransferStats};
use crate::transport_options::{
    dialer, listener_config, send_options, BindingListenOptions, BindingSendOptions,
};

/// Where a source listens for QEMU and where it sends.
#[napi(object)]
pub struct BindingMigrationSourceOptions {
    /// The unix socket to bind; QEMU's `migrate unix:<path>` connects to it. Must not exist.
    pub socket_path: String,
    /// The sink's AMST listener and how to send to it.
    pub send: BindingSendOptions,
    /// Codec of the chunks sent in full (default zstd level 1).
    pub codec: Option<BindingCodecOptions>,
    pub chunker: Option<BindingChunkerOptions>,
    /// The destination store's `inventory()`: those chunks go out as references.
    pub inventory: Option<Buffer>,
    /// Bytes asked of QEMU's socket per read (default 262144).
    pub read_size: Option<u32>,
    /// Step down to cheaper codecs while the encoder, not the link, is the bottleneck, and back
    /// up to `codec` when the link pushes back (default true).
    pub adaptive_codec: Option<bool>,
    /// Bytes taken from QEMU and not yet acknowledged by the sink (default 8 MiB). QEMU cannot
    /// see what sits here, so it adds to the real downtime: keep it near bandwidth × RTT.
    pub buffer_bytes: Option<u32>,
}

/// A source's progress. Byte counts are exact up to 2^53.
#[napi(object)]
pub struct BindingMigrationSourceStats {
    /// Raw migration-stream bytes read from QEMU.
    pub bytes_from_qemu: f64,
    /// HDE stream bytes handed to AMST (frame headers and TLS on top).
    pub wire_bytes: f64,
    /// Raw bytes encoded per wire byte.
    pub compression_ratio: f64,
    pub chunks: f64,
    /// Chunks sent in full.
    pub chunks_sent: f64,
    /// Chunks sent as references because the destination's inventory lists them.
    pub inventory_dedup_chunks: f64,
    pub inventory_dedup_bytes: f64,
    /// Chunks sent as references because they came earlier in this stream.
    pub stream_dedup_chunks: f64,
    pub stream_dedup_bytes: f64,
    pub qemu_connected: bool,
    /// QEMU closed its end: its stream is complete.
    pub qemu_finished: bool,
    /// AMST frames the sink found corrupt (wrong CRC: damaged above TLS) and asked for again;
    /// each went out again and counts in `transfer.framesResent`.
    pub frames_rejected: f64,
    /// AMST connections lost mid-migration (TLS refused a damaged record, reset, stall); their
    /// frames were resent on the others and each was replaced.
    pub connections_failed: u32,
    /// AMST connections opened: the first ones and every replacement or addition.
    pub connections_opened: u32,
    /// The codec the encoder uses now, e.g. `zstd 1`, `lz4`, `none`; null before QEMU connected.
    pub codec: Option<String>,
    /// How often it changed: the encoder steps down to cheaper codecs while it, not the link, is
    /// the bottleneck, and back up when the link pushes back.
    pub codec_changes: u32,
    pub transfer: BindingTransferStats,
}

// Counters stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl From<&SourceStats> for BindingMigrationSourceStats {
    fn from(s: &SourceStats) -> Self {
        let e = &s.encoder;
        BindingMigrationSourceStats {
            bytes_from_qemu: s.bytes_from_qemu as f64,
            wire_bytes: s.wire_bytes() as f64,
            compression_ratio: s.compression_ratio(),
            chunks: e.chunks as f64,
            chunks_sent: (e.chunks - e.dedup_chunks) as f64,
            inventory_dedup_chunks: e.known_chunks as f64,
            inventory_dedup_bytes: e.known_bytes as f64,
            stream_dedup_chunks: (e.dedup_chunks - e.known_chunks) as f64,
            stream_dedup_bytes: (e.dedup_bytes - e.known_bytes) as f64,
            qemu_connected: s.qemu_connected,
            qemu_finished: s.qemu_finished,
            frames_rejected: s.transfer.frames_nacked as f64,
            connections_failed: s.transfer.connections_failed,
            connections_opened: s.transfer.connections_opened,
            codec: s.codec.map(codec_label),
            codec_changes: s.codec_changes,
            transfer: (&s.transfer).into(),
        }
    }
}

/// `zstd 3`, `lz4`, `none`: how the stats name a codec level.
fn codec_label(level: dwcp_hde::CodecLevel) -> String {
    match level.codec() {
        dwcp_hde::Codec::Zstd | dwcp_hde::Codec::Deflate => {
            format!("{} {}", level.codec().name(), level.level())
        }
        other => other.name().to_string(),
    }
}

/// A completed source: QEMU's whole stream acknowledged by the sink's transport.
#[napi(object)]
pub struct BindingMigrationSourceReport {
    pub stats: BindingMigrationSourceStats,
    pub elapsed_seconds: f64,
    pub max_streams: u32,
    pub failed_connections: u32,
}

impl From<SourceReport> for BindingMigrationSourceReport {
    fn from(r: SourceReport) -> Self {
        BindingMigrationSourceReport {
            stats: (&r.stats).into(),
            elapsed_seconds: r.elapsed.as_secs_f64(),
            max_streams: r.send.max_streams,
            failed_connections: r.send.failed_connections,
        }
    }
}

/// The sending side of one migration.
#[napi(js_name = "MigrationSource")]
pub struct BindingMigrationSource {
    inner: Arc<MigrationSource>,
}

fn source_options(o: &BindingMigrationSourceOptions) -> Result<SourceOptions, PipelineError> {
    let mut options = SourceOptions::new(&o.socket_path);
    options.send = send_options(&o.send)?;
    options.chunker = ChunkerParams::try_from(o.chunker.clone().unwrap_or_default())?;
    options.level = CodecLevel::try_from(o.codec.clone().unwrap_or_default())?;
    if let Some(inv) = &o.inventory {
        options.present = inventory::decode(inv)?;
    }
    if let Some(n) = o.read_size {
        options.read_size = n as usize;
    }
    if let Some(adaptive) = o.adaptive_codec {
        options.adaptive_codec = adaptive;
    }
    if let Some(n) = o.buffer_bytes {
        options.send.sender.send_buffer = n as usize;
        options
            .send
            .sender
            .validate()
            .map_err(TransportError::from)?;
    }
    Ok(options)
}

#[napi]
impl BindingMigrationSource {
    /// Binds the socket, starts dialing the sink and returns; the migration runs natively.
    #[napi(factory, catch_unwind)]
    pub fn start(options: BindingMigrationSourceOptions) -> napi::Result<Self> {
        let source_options = source_options(&options).map_err(err)?;
        // The dialer (QUIC's endpoint) and the socket need the addon's tokio runtime.
        let source = napi::bindgen_prelude::within_runtime_if_available(|| {
            let dialer = dialer(&options.send)?;
            MigrationSource::start(source_options, dialer)
        })
        .map_err(err)?;
        Ok(BindingMigrationSource {
            inner: Arc::new(source),
        })
    }

    #[napi(getter)]
    pub fn socket_path(&self) -> String {
        self.inner.socket_path().display().to_string()
    }

    /// Progress so far.
    #[napi]
    pub fn stats(&self) -> BindingMigrationSourceStats {
        (&self.inner.stats()).into()
    }

    /// Stops now: QEMU's socket closes (its migration fails, the VM keeps running) and the
    /// sink's connections drop. `finished` rejects with `ERR_MIGRATION_CANCELLED`.
    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Bounds AMST's send buffer (bytes taken from QEMU's stream, encoded, and not yet
    /// acknowledged) from now on, to keep it near the path's bandwidth-delay product; a value
    /// under two frames is ignored.
    #[napi]
    pub fn set_buffer_bytes(&self, bytes: u32) {
        self.inner.set_buffer_bytes(bytes as usize);
    }

    /// Probes the path to the sink over the migration's own AMST connections before QEMU's first
    /// byte, for at most `maxMs`; ends early when goodput stops growing or QEMU's stream starts
    /// (which never waits on it). The connections stay up for the stream. Rejects with
    /// `ERR_AMST_PROBE_FAILED` if the path is lost meanwhile; the migration goes on.
    #[napi]
    pub async fn probe(&self, max_ms: u32) -> napi::Result<BindingProbeResult> {
        let max = probe_limit(max_ms).map_err(|e| err(e.into()))?;
        let inner = Arc::clone(&self.inner);
        let report = inner.probe(max).await.map_err(err)?;
        Ok((&report).into())
    }

    /// Resolves once QEMU's stream is complete and the sink's transport has all of it.
    #[napi]
    pub async fn finished(&self) -> napi::Result<BindingMigrationSourceReport> {
        let inner = Arc::clone(&self.inner);
        inner.finished().await.map(Into::into).map_err(err)
    }
}

/// Where a sink listens and delivers.
#[napi(object)]
pub struct BindingMigrationSinkOptions {
    /// The destination QEMU's `migrate-incoming unix:<path>` socket; the sink connects to it.
    pub socket_path: String,
    /// The AMST listener (port 0 picks a free one). Its `windowFrames` defaults to 128 here
    /// (8 MiB of 64 KiB frames), not AMST's 1024: unread frames are acknowledged, so a large
    /// window hides a slow destination from the source and from QEMU's downtime estimate.
    pub listen: BindingListenOptions,
    /// How long to keep trying QEMU's socket once the transfer arrived (default 10000).
    pub connect_timeout_ms: Option<u32>,
}

/// AMST's receive counters.
#[napi(object)]
pub struct BindingReceiveStats {
    pub bytes: f64,
    pub frames: f64,
    pub duplicates: f64,
    pub connections_seen: u32,
    pub connections_refused: u32,
}

/// A sink's progress.
#[napi(object)]
pub struct BindingMigrationSinkStats {
    /// Raw migration-stream bytes written to QEMU, every chunk verified.
    pub bytes_to_qemu: f64,
    /// HDE stream bytes decoded.
    pub wire_bytes: f64,
    pub compression_ratio: f64,
    /// Chunks that came in full, verified and stored.
    pub chunks_received: f64,
    /// Chunks resolved from the store or from earlier in the stream.
    pub chunks_reused: f64,
    pub qemu_connected: bool,
    /// AMST frames that arrived with a wrong CRC (damaged above TLS): dropped, never decoded,
    /// and asked for again.
    pub frames_rejected: f64,
    /// AMST connections that died on a TLS record failing its check (bytes damaged on the
    /// wire); the source resent their frames on a new connection.
    pub connections_corrupted: u32,
    pub transfer: BindingReceiveStats,
}

#[allow(clippy::cast_precision_loss)]
impl From<&SinkStats> for BindingMigrationSinkStats {
    fn from(s: &SinkStats) -> Self {
        BindingMigrationSinkStats {
            bytes_to_qemu: s.bytes_to_qemu as f64,
            wire_bytes: s.wire_bytes() as f64,
            compression_ratio: s.compression_ratio(),
            chunks_received: s.decoder.chunks_received as f64,
            chunks_reused: s.decoder.chunks_reused as f64,
            qemu_connected: s.qemu_connected,
            frames_rejected: s.transfer.corrupt_frames as f64,
            connections_corrupted: s.transfer.connections_corrupted,
            transfer: BindingReceiveStats {
                bytes: s.transfer.bytes as f64,
                frames: s.transfer.frames as f64,
                duplicates: s.transfer.duplicates as f64,
                connections_seen: s.transfer.connections_seen,
                connections_refused: s.transfer.connections_refused,
            },
        }
    }
}

/// A completed sink: the whole stream verified, END record included, and written to QEMU.
#[napi(object)]
pub struct BindingMigrationSinkReport {
    pub stats: BindingMigrationSinkStats,
    pub elapsed_seconds: f64,
}

impl From<SinkReport> for BindingMigrationSinkReport {
    fn from(r: SinkReport) -> Self {
        BindingMigrationSinkReport {
            stats: (&r.stats).into(),
            elapsed_seconds: r.elapsed.as_secs_f64(),
        }
    }
}

/// The sink's default AMST receive window, in frames.
const SINK_WINDOW_FRAMES: u32 = 128;

/// The receiving side of one migration.
#[napi(js_name = "MigrationSink")]
pub struct BindingMigrationSink {
    inner: Arc<MigrationSink>,
}

#[napi]
impl BindingMigrationSink {
    /// Binds the AMST listener and waits natively for one transfer, decoding it into `store`
    /// (the node's one open `ChunkStore`, shared: a store directory is opened once per process).
    #[napi(ts_return_type = "Promise<MigrationSink>")]
    pub fn start<'env>(
        env: &'env Env,
        options: BindingMigrationSinkOptions,
        store: &BindingChunkStore,
    ) -> napi::Result<PromiseRaw<'env, BindingMigrationSink>> {
        let store = SharedStore::from_arc(Arc::clone(&store.inner));
        let prepared = (|| {
            let identity = NodeIdentity::try_from(&options.listen.identity)?;
            let mut config = listener_config(&options.listen)?;
            if options.listen.window_frames.is_none() {
                config.receive.receiver.window = SINK_WINDOW_FRAMES;
            }
            Ok::<_, TransportError>((identity, config))
        })();
        let mut sink_options = SinkOptions::new(&options.socket_path);
        if let Some(ms) = options.connect_timeout_ms {
            sink_options.connect_timeout = Duration::from_millis(u64::from(ms));
        }
        env.spawn_future(async move {
            let (identity, config) = prepared.map_err(|e| err(e.into()))?;
            let sink = MigrationSink::bind(config, &identity, store, sink_options)
                .await
                .map_err(err)?;
            Ok(BindingMigrationSink {
                inner: Arc::new(sink),
            })
        })
    }

    /// The AMST listener's port, for the source's `send.port`.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        u32::from(self.inner.local_addr().port())
    }

    #[napi]
    pub fn stats(&self) -> BindingMigrationSinkStats {
        (&self.inner.stats()).into()
    }

    /// Stops now: AMST's connections and QEMU's socket close.
    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Resolves once the whole stream is verified and written to QEMU.
    #[napi]
    pub async fn finished(&self) -> napi::Result<BindingMigrationSinkReport> {
        let inner = Arc::clone(&self.inner);
        inner.finished().await.map(Into::into).map_err(err)
    }
}

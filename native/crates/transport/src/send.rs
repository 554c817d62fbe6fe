//! The sending side of one transfer: a mechanical driver around the sans-IO [`Sender`] and
//! [`ConnectionPool`]. It dials and closes the connections the pool asks for, moves the
//! producer's bytes, acks and timers between them and the sockets, and reports progress; every
//! decision about connections is the pool's.

use std::collections::HashMap;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dwcp_amst::frame::{self, Frame};
use dwcp_amst::{
    AmstError, ConnId, ConnStats, ConnectionPool, Failure, PoolAction, PoolConfig, PoolFailure,
    Sender, SenderConfig, Transmit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::fault::Hook;
use crate::gauge::{LinkGauge, LinkSample};
use crate::hello::new_session_id;
use crate::link::BoxWrite;
use crate::probing::{ProbeInbox, Probing};
use crate::{Dialer, Link, Result, TransportError};

pub use dwcp_amst::StreamCount;

/// Sending settings.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Connection count policy.
    pub streams: StreamCount,
    /// Framing, windows, stall timeout and rate cap.
    pub sender: SenderConfig,
    /// Dial attempts in a row that may fail before the sender stops dialing (a connection that
    /// ends before its first ack counts as one; see [`dwcp_amst::ConnectionPool`]); it goes on
    /// with the connections it has, and gives up only when none is left.
    pub max_dial_failures: u32,
    /// How often progress is published.
    pub stats_interval: Duration,
    /// A new send buffer limit (bytes taken and not yet acknowledged) whenever it changes, so
    /// the caller can keep it near the path's bandwidth-delay product; `sender.send_buffer` until then.
    pub buffer_limit: Option<watch::Receiver<usize>>,
    /// Requests to probe the path before the stream (see [`crate::ProbeRequest`]); a request
    /// after the stream's first byte is answered at once, with nothing measured.
    pub probes: Option<ProbeInbox>,
    /// Test-only: damages frames after their CRC was computed.
    #[cfg(feature = "fault-injection")]
    pub damage: Option<crate::FrameFault>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            streams: StreamCount::Adaptive(dwcp_amst::AdaptConfig::default()),
            sender: SenderConfig::default(),
            max_dial_failures: 5,
            stats_interval: Duration::from_millis(250),
            buffer_limit: None,
            probes: None,
            #[cfg(feature = "fault-injection")]
            damage: None,
        }
    }
}

/// Progress of a transfer, published while it runs.
#[derive(Debug, Clone, Default)]
pub struct TransferStats {
    /// Bytes taken from the producer.
    pub bytes_written: u64,
    /// Bytes the receiver has.
    pub bytes_acked: u64,
    /// Frames sent again: after a NACK, or off a connection that failed.
    pub frames_resent: u64,
    /// Frames the receiver got with a wrong CRC, dropped and asked for again (NACKs).
    pub frames_nacked: u64,
    /// Connections lost mid-transfer: closed, reset, stalled, or refused by TLS because a
    /// record arrived damaged. Each is replaced by a new one.
    pub connections_failed: u32,
    /// Connections that came up: the first ones, replacements and additions.
    pub connections_opened: u32,
    /// Seconds since the transfer started.
    pub elapsed: f64,
    /// Connections wanted now.
    pub target_streams: u32,
    /// Per-connection measurements: AMST's own and the transport's below it.
    pub connections: Vec<ConnectionStats>,
}

/// One connection's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionStats {
    /// What AMST measured from its acks (RTT with queueing, delivery rate, bytes).
    pub amst: ConnStats,
    /// What the kernel (`TCP_INFO`) or quinn reported at the same refresh; all `None` without
    /// a gauge (a connection that just closed).
    pub link: LinkSample,
}

/// The outcome of a finished transfer.
#[derive(Debug, Clone)]
pub struct SendReport {
    /// Final counters.
    pub stats: TransferStats,
    /// The most connections used at once.
    pub max_streams: u32,
    /// Connections that failed or stalled during the transfer.
    pub failed_connections: u32,
}

enum ConnEvent {
    Up(Link),
    DialFailed(TransportError),
    Ack(frame::Ack),
    Nack { seq: u64, crc: u32 },
    ProbeAck(u64),
    Closed(Option<TransportError>),
}

/// Sends everything `source` yields, then waits until the receiver has all of it.
///
/// Setting `cancel` to `true` stops at once: connections are dropped (the receiver sees the
/// transfer fail) and the result is [`TransportError::Cancelled`].
pub async fn send_stream(
    dialer: Dialer,
    source: mpsc::Receiver<Bytes>,
    options: SendOptions,
    cancel: watch::Receiver<bool>,
    progress: Option<watch::Sender<TransferStats>>,
) -> Result<SendReport> {
    let mut probing = Probing::new(options.probes.as_ref());
    let result = run_transfer(
        dialer.clone(),
        source,
        options,
        cancel,
        progress,
        &mut probing,
    )
    .await;
    probing.end(&match &result {
        Ok(_) => "it completed".to_string(),
        Err(e) => format!("{}: {e}", e.code()),
    });
    dialer.close().await;
    result
}

async fn run_transfer(
    dialer: Dialer,
    mut source: mpsc::Receiver<Bytes>,
    options: SendOptions,
    mut cancel: watch::Receiver<bool>,
    progress: Option<watch::Sender<TransferStats>>,
    probing: &mut Probing,
) -> Result<SendReport> {
    let session = new_session_id()?;
    let mut sender = Sender::new(options.sender.clone())?;
    let mut pool = ConnectionPool::new(PoolConfig {
        streams: options.streams.clone(),
        max_dial_failures: options.max_dial_failures,
    })?;
    let (events_tx, mut events) = mpsc::channel::<(ConnId, ConnEvent)>(1024);
    let mut writers: HashMap<ConnId, mpsc::UnboundedSender<Transmit>> = HashMap::new();
    // Held only while the connection is in use: a TCP gauge keeps its socket open.
    let mut gauges: HashMap<ConnId, LinkGauge> = HashMap::new();
    // The frame version of each connection up, for the probe.
    let mut versions: HashMap<ConnId, frame::Version> = HashMap::new();
    let damage = Hook::of(&options);
    // Only for the message when the pool gives up; it decides nothing.
    let mut last_error: Option<TransportError> = None;
    let mut input = Input::default();
    let started = Instant::now();
    let mut next_stats = started;
    let mut buffer_limit = options.buffer_limit.clone();

    loop {
        let now = Instant::now();
        input.feed(&mut sender);
        probing.step(now, input.started(&sender), &writers, &gauges);
        while let Some(action) = pool.poll_action(&mut sender) {
            match action {
                PoolAction::Dial(id) => spawn_dial(&dialer, session, id, &events_tx),
                PoolAction::Close(id) => {
                    // Dropping its channel makes the link close our direction and stop.
                    writers.remove(&id);
                    gauges.remove(&id);
                    versions.remove(&id);
                    probing.handle_retired(id);
                }
                PoolAction::Done => {
                    let stats = stats_of(&sender, &pool, &gauges, started);
                    if let Some(p) = &progress {
                        p.send_replace(stats.clone());
                    }
                    return Ok(SendReport {
                        stats,
                        max_streams: pool.max_connections_up(),
                        failed_connections: pool.connections_failed(),
                    });
                }
                PoolAction::Fail(failure) => return Err(pool_error(&failure, last_error)),
            }
        }
        while let Some(tx) = sender.poll_transmit(now) {
            if let Some(w) = writers.get(&tx.conn) {
                let _ = w.send(tx);
            }
        }
        if let Some(p) = progress.as_ref().filter(|_| now >= next_stats) {
            p.send_replace(stats_of(&sender, &pool, &gauges, started));
            next_stats = now + options.stats_interval;
        }
        let wake = [
            sender.poll_timeout(),
            pool.poll_timeout(),
            progress.as_ref().map(|_| next_stats),
            probing.poll_timeout(),
            Some(now + Duration::from_millis(100)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now);
        let can_take = input.can_take(&sender);
        tokio::select! {
            biased;
            changed = cancel.changed() => {
                if changed.is_err() || *cancel.borrow() {
                    return Err(TransportError::Cancelled);
                }
            }
            Some((id, event)) = events.recv() => match event {
                ConnEvent::Up(mut link) => {
                    if let Some(gauge) = link.gauge.take() {
                        gauges.insert(id, gauge);
                    }
                    let (tx, rx) = mpsc::unbounded_channel();
                    let version = link.version;
                    tokio::spawn(run_link(id, link, rx, events_tx.clone(), damage.clone()));
                    writers.insert(id, tx);
                    versions.insert(id, version);
                    probing.handle_up(id, version);
                    pool.handle_dialed(&mut sender, id, version, Instant::now());
                }
                ConnEvent::DialFailed(e) => {
                    pool.handle_dial_failed(id, failure_of(&e));
                    last_error = Some(e);
                }
                ConnEvent::Ack(ack) => pool.handle_ack(&mut sender, id, ack, Instant::now()),
                ConnEvent::Nack { seq, crc } => {
                    pool.handle_nack(&mut sender, id, seq, crc, Instant::now())?;
                }
                ConnEvent::ProbeAck(probe) => probing.handle_ack(probe, Instant::now()),
                ConnEvent::Closed(e) => {
                    gauges.remove(&id);
                    versions.remove(&id);
                    let what = e.as_ref().map_or_else(|| "closed by the peer".to_string(), ToString::to_string);
                    probing.handle_lost(id, &what, Instant::now());
                    pool.handle_closed(&mut sender, id, e.as_ref().map(failure_of));
                    last_error = e.or(last_error);
                }
            },
            Some(limit) = next_limit(&mut buffer_limit) => {
                // A value the sender refuses (under two frames) keeps the limit it has.
                let _ = sender.set_send_buffer(limit);
            }
            Some(request) = probing.next_request() => {
                probing.start(request, &versions, input.started(&sender), Instant::now());
            }
            data = source.recv(), if can_take => input.take(data),
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                pool.handle_timeout(&mut sender, Instant::now());
            }
        }
    }
}

/// The producer's side: a piece taken from the source and not yet all written, and whether the
/// source has ended.
#[derive(Default)]
struct Input {
    pending: Option<Bytes>,
    done: bool,
}

impl Input {
    /// Writes what the sender accepts, and ends the stream once the source has ended.
    fn feed(&mut self, sender: &mut Sender) {
        if let Some(data) = self.pending.take() {
            let n = sender.write_bytes(&data);
            if n < data.len() {
                self.pending = Some(data.slice(n..));
            }
        }
        if self.done && self.pending.is_none() && sender.writable() > 0 {
            sender.finish();
        }
    }

    /// Whether the stream has begun: bytes taken, or its end seen. A probe then stops at once.
    fn started(&self, sender: &Sender) -> bool {
        self.pending.is_some() || self.done || sender.stats().bytes_written > 0
    }

    fn can_take(&self, sender: &Sender) -> bool {
        self.pending.is_none() && !self.done && sender.writable() > 0
    }

    fn take(&mut self, data: Option<Bytes>) {
        match data {
            Some(d) => self.pending = Some(d),
            None => self.done = true,
        }
    }
}

fn spawn_dial(
    dialer: &Dialer,
    session: [u8; 16],
    id: ConnId,
    events: &mpsc::Sender<(ConnId, ConnEvent)>,
) {
    let (dialer, tx) = (dialer.clone(), events.clone());
    tokio::spawn(async move {
        let event = match dialer.dial(session, id.0).await {
            Ok(link) => ConnEvent::Up(link),
            Err(e) => ConnEvent::DialFailed(e),
        };
        let _ = tx.send((id, event)).await;
    });
}

/// A refused certificate or name will be refused again; anything else may work next time.
fn failure_of(e: &TransportError) -> Failure {
    match e {
        TransportError::Tls { .. } => Failure::Refused,
        _ => Failure::Transient,
    }
}

/// The error a lost transfer ends with: a refusal as the peer gave it, anything else as what the
/// pool saw (which connection went, how many dials failed) with the last error seen.
fn pool_error(failure: &PoolFailure, last_error: Option<TransportError>) -> TransportError {
    match last_error {
        Some(e @ TransportError::Tls { .. }) if failure.refused => e,
        Some(e) => TransportError::NoConnection(format!("{failure}; the last error: {e}")),
        None => TransportError::NoConnection(failure.to_string()),
    }
}

fn stats_of(
    sender: &Sender,
    pool: &ConnectionPool,
    gauges: &HashMap<ConnId, LinkGauge>,
    started: Instant,
) -> TransferStats {
    let s = sender.stats();
    TransferStats {
        bytes_written: s.bytes_written,
        bytes_acked: s.bytes_acked,
        frames_resent: s.frames_resent,
        frames_nacked: s.frames_nacked,
        connections_failed: pool.connections_failed(),
        connections_opened: pool.connections_opened(),
        elapsed: started.elapsed().as_secs_f64(),
        target_streams: pool.target(),
        connections: sender
            .conn_stats()
            .into_iter()
            .map(|amst| ConnectionStats {
                amst,
                link: gauges
                    .get(&amst.id)
                    .map(LinkGauge::sample)
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

/// The next buffer limit the caller sets; never resolves without a caller, and stops listening
/// once the caller is gone.
async fn next_limit(limit: &mut Option<watch::Receiver<usize>>) -> Option<usize> {
    let Some(rx) = limit.as_mut() else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        *limit = None;
        return std::future::pending().await;
    }
    let value = *rx.borrow_and_update();
    Some(value)
}

/// Writes the frames given to one connection and reads its acks and NACKs.
async fn run_link(
    id: ConnId,
    link: Link,
    mut frames: mpsc::UnboundedReceiver<Transmit>,
    events: mpsc::Sender<(ConnId, ConnEvent)>,
    damage: Hook,
) {
    let Link {
        mut reader,
        mut writer,
        peer,
        version,
        ..
    } = link;
    let acks = events.clone();
    let read = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        let outcome = loop {
            let parsed = frame::parse(&buf, version, 0).and_then(|f| match f {
                Some((Frame::Ack(ack), len)) => Ok(Some((ConnEvent::Ack(ack), len))),
                Some((Frame::Nack { seq, crc }, len)) => {
                    Ok(Some((ConnEvent::Nack { seq, crc }, len)))
                }
                Some((Frame::ProbeAck { id, .. }, len)) => Ok(Some((ConnEvent::ProbeAck(id), len))),
                Some(_) => Err(AmstError::Protocol("a receiver sent data".into())),
                None => Ok(None),
            });
            match parsed {
                Ok(Some((event, len))) => {
                    let _ = buf.split_to(len);
                    if acks.send((id, event)).await.is_err() {
                        break None;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => break Some(e.into()),
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) => break None,
                Ok(_) => {}
                Err(e) => break Some(TransportError::from_read(&peer, &e)),
            }
        };
        let _ = acks.send((id, ConnEvent::Closed(outcome))).await;
    });
    let mut failure = None;
    let mut batch = Vec::new();
    while let Some(tx) = frames.recv().await {
        batch.push(damage.apply(tx));
        let mut bytes = batch[0].header.len() + batch[0].payload.len();
        while bytes < BATCH_BYTES {
            let Ok(tx) = frames.try_recv() else { break };
            bytes += tx.header.len() + tx.payload.len();
            batch.push(damage.apply(tx));
        }
        if let Err(e) = write_batch(&mut writer, &batch).await {
            failure = Some(TransportError::io("write", e));
            break;
        }
        batch.clear();
    }
    match failure {
        Some(e) => {
            let _ = events.send((id, ConnEvent::Closed(Some(e)))).await;
        }
        None => {
            // Retired, finished or cancelled: close our direction and stop reading.
            let _ = writer.shutdown().await;
        }
    }
    read.abort();
}

/// How many bytes of frames a connection's writer hands the link at once, at most. With TLS
/// (see `tcp::SEND_BUFFER`) they become full 16 KiB records and a system call per batch rather
/// than two calls and a tiny record for each frame's header.
const BATCH_BYTES: usize = 256 * 1024;

/// Writes every frame of `batch`, headers and payloads, with as few vectored writes as the link
/// takes. The bytes on the wire are the same as frame by frame.
async fn write_batch(writer: &mut BoxWrite, batch: &[Transmit]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .flat_map(|tx| [IoSlice::new(&tx.header), IoSlice::new(&tx.payload)])
        .filter(|s| !s.is_empty())
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = writer.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

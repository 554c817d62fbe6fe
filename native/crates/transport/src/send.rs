//! The sending side of one transfer: keeps the chosen number of connections open, drives the
//! sans-IO [`Sender`] with the producer's bytes, acks and timers, and reports progress.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use dwcp_amst::frame::{self, Frame};
use dwcp_amst::{
    AdaptConfig, AmstError, ConnId, ConnStats, Sender, SenderConfig, SenderEvent,
    StreamCountController, Transmit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::fault::Hook;
use crate::hello::new_session_id;
use crate::{Dialer, Link, Result, TransportError};

/// How many connections a transfer uses.
#[derive(Debug, Clone)]
pub enum StreamCount {
    /// Exactly this many.
    Fixed(u32),
    /// As many as keep adding goodput (see [`StreamCountController`]).
    Adaptive(AdaptConfig),
}

/// Sending settings.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Connection count policy.
    pub streams: StreamCount,
    /// Framing, windows, stall timeout and rate cap.
    pub sender: SenderConfig,
    /// Dial attempts in a row that may fail before the sender stops dialing; it goes on with
    /// the connections it has, and gives up only when none is left.
    pub max_dial_failures: u32,
    /// How often progress is published.
    pub stats_interval: Duration,
    /// A new send buffer limit (bytes taken and not yet acknowledged) whenever it changes, so
    /// the caller can keep it near the path's bandwidth-delay product; `sender.send_buffer` until then.
    pub buffer_limit: Option<watch::Receiver<usize>>,
    /// Test-only: damages frames after their CRC was computed.
    #[cfg(feature = "fault-injection")]
    pub damage: Option<crate::FrameFault>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            streams: StreamCount::Adaptive(AdaptConfig::default()),
            sender: SenderConfig::default(),
            max_dial_failures: 5,
            stats_interval: Duration::from_millis(250),
            buffer_limit: None,
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
    /// Per-connection measurements.
    pub connections: Vec<ConnStats>,
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
    let result = run_transfer(dialer.clone(), source, options, cancel, progress).await;
    dialer.close().await;
    result
}

async fn run_transfer(
    dialer: Dialer,
    mut source: mpsc::Receiver<Bytes>,
    options: SendOptions,
    mut cancel: watch::Receiver<bool>,
    progress: Option<watch::Sender<TransferStats>>,
) -> Result<SendReport> {
    let session = new_session_id()?;
    let mut sender = Sender::new(options.sender.clone())?;
    let mut controller = match &options.streams {
        StreamCount::Adaptive(c) => Some(StreamCountController::new(c.clone())?),
        StreamCount::Fixed(n) if (1..=256).contains(n) => None,
        StreamCount::Fixed(_) => {
            return Err(TransportError::InvalidParam {
                field: "streams",
                reason: "must be between 1 and 256".into(),
            })
        }
    };
    let fixed = match options.streams {
        StreamCount::Fixed(n) => n,
        StreamCount::Adaptive(_) => 0,
    };
    let (events_tx, mut events) = mpsc::channel::<(ConnId, ConnEvent)>(1024);
    let mut writers: HashMap<ConnId, mpsc::UnboundedSender<Transmit>> = HashMap::new();
    let mut dialing = 0u32;
    let mut next_conn = 0u32;
    let mut dial_failures = 0u32;
    let mut proven: std::collections::HashSet<ConnId> = std::collections::HashSet::new();
    let mut failed_connections = 0u32;
    let mut opened_connections = 0u32;
    let mut max_streams = 0u32;
    let damage = Hook::of(&options);
    let mut last_error: Option<TransportError> = None;
    let mut pending: Option<Bytes> = None;
    let mut source_done = false;
    let started = Instant::now();
    let mut next_stats = started;
    let mut buffer_limit = options.buffer_limit.clone();
    let stats_of = |sender: &Sender, target: u32, failed: u32, opened: u32| {
        let s = sender.stats();
        TransferStats {
            bytes_written: s.bytes_written,
            bytes_acked: s.bytes_acked,
            frames_resent: s.frames_resent,
            frames_nacked: s.frames_nacked,
            connections_failed: failed,
            connections_opened: opened,
            elapsed: started.elapsed().as_secs_f64(),
            target_streams: target,
            connections: sender.conn_stats(),
        }
    };

    loop {
        let now = Instant::now();
        let target = controller
            .as_ref()
            .map_or(fixed, StreamCountController::target);
        let live = u32::try_from(writers.len()).unwrap_or(u32::MAX);
        // Once the receiver has every byte it may close its side of the other connections; do
        // not replace them (it refuses a finished session), unless none is left to carry the FIN.
        let draining = sender.all_data_acked() && !writers.is_empty();
        while !draining && live + dialing < target {
            if dial_failures >= options.max_dial_failures {
                // Stop dialing, but go on with the connections that still work: the next ack
                // resets the count. Only with none left is the transfer lost.
                if !writers.is_empty() {
                    break;
                }
                return Err(last_error.unwrap_or_else(|| {
                    TransportError::NoConnection("dialing keeps failing".into())
                }));
            }
            let id = ConnId(next_conn);
            next_conn += 1;
            dialing += 1;
            let (dialer, tx) = (dialer.clone(), events_tx.clone());
            tokio::spawn(async move {
                let event = match dialer.dial(session, id.0).await {
                    Ok(link) => ConnEvent::Up(link),
                    Err(e) => ConnEvent::DialFailed(e),
                };
                let _ = tx.send((id, event)).await;
            });
        }
        if let Some(data) = pending.take() {
            let n = sender.write(&data);
            if n < data.len() {
                pending = Some(data.slice(n..));
            }
        }
        if source_done && pending.is_none() && sender.writable() > 0 {
            sender.finish();
        }
        while let Some(tx) = sender.poll_transmit(now) {
            if let Some(w) = writers.get(&tx.conn) {
                let _ = w.send(tx);
            }
        }
        while let Some(event) = sender.poll_event() {
            match event {
                SenderEvent::ConnectionFailed(id) => {
                    failed_connections += 1;
                    writers.remove(&id);
                }
                SenderEvent::ConnectionRetired(id) => {
                    writers.remove(&id);
                }
            }
        }
        max_streams = max_streams.max(u32::try_from(writers.len()).unwrap_or(u32::MAX));
        if let Some(p) = &progress {
            if now >= next_stats || sender.is_finished() {
                p.send_replace(stats_of(
                    &sender,
                    target,
                    failed_connections,
                    opened_connections,
                ));
                next_stats = now + options.stats_interval;
            }
        }
        if sender.is_finished() {
            return Ok(SendReport {
                stats: stats_of(&sender, target, failed_connections, opened_connections),
                max_streams,
                failed_connections,
            });
        }
        let wake = [
            sender.poll_timeout(),
            controller
                .as_ref()
                .and_then(StreamCountController::poll_timeout),
            progress.as_ref().map(|_| next_stats),
            Some(now + Duration::from_millis(100)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(now);
        let can_take = pending.is_none() && !source_done && sender.writable() > 0;
        tokio::select! {
            biased;
            changed = cancel.changed() => {
                if changed.is_err() || *cancel.borrow() {
                    return Err(TransportError::Cancelled);
                }
            }
            Some((id, event)) = events.recv() => match event {
                ConnEvent::Up(link) => {
                    dialing -= 1;
                    opened_connections += 1;
                    let (tx, rx) = mpsc::unbounded_channel();
                    let version = link.version;
                    tokio::spawn(run_link(id, link, rx, events_tx.clone(), damage.clone()));
                    writers.insert(id, tx);
                    sender.handle_connected(id, version, Instant::now());
                }
                ConnEvent::DialFailed(e) => {
                    dialing -= 1;
                    dial_failures += 1;
                    // A refused certificate will be refused again: fail now.
                    if matches!(e, TransportError::Tls { .. }) && writers.is_empty() {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
                ConnEvent::Ack(ack) => {
                    // A connection that got an ack works end to end; one that merely connected
                    // may still be refused (TLS 1.3 reports a bad client certificate late).
                    dial_failures = 0;
                    proven.insert(id);
                    if let Err(e) = sender.handle_ack(id, ack, Instant::now()) {
                        last_error = Some(e.into());
                        writers.remove(&id);
                        sender.handle_disconnected(id);
                    }
                }
                ConnEvent::Nack { seq, crc } => {
                    dial_failures = 0;
                    proven.insert(id);
                    // Only a frame damaged past the limit is an error, and it ends the transfer.
                    sender.handle_nack(id, seq, crc, Instant::now())?;
                }
                ConnEvent::Closed(e) => {
                    // A receiver that has every byte closes the other connections cleanly, after
                    // the acks it wrote on them: a clean close that lost nothing is no failure.
                    let lost = e.is_some() || sender.inflight_frames(id) > 0;
                    if writers.remove(&id).is_some() && lost {
                        failed_connections += 1;
                    }
                    if !proven.contains(&id) {
                        dial_failures += 1;
                        if matches!(e, Some(TransportError::Tls { .. })) && writers.is_empty() {
                            return Err(e.unwrap_or(TransportError::Cancelled));
                        }
                    }
                    sender.handle_disconnected(id);
                    if let Some(e) = e {
                        last_error = Some(e);
                    }
                }
            },
            Some(limit) = next_limit(&mut buffer_limit) => {
                // A value the sender refuses (under two frames) keeps the limit it has.
                let _ = sender.set_send_buffer(limit);
            }
            data = source.recv(), if can_take => match data {
                Some(d) => pending = Some(d),
                None => source_done = true,
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let now = Instant::now();
                sender.handle_timeout(now);
                if let Some(c) = controller.as_mut() {
                    if let Some(target) = c.handle_progress(sender.stats().bytes_acked, now) {
                        let mut live: Vec<ConnId> = writers.keys().copied().collect();
                        live.sort();
                        for id in live.into_iter().rev().take(writers.len().saturating_sub(target as usize)) {
                            sender.retire(id);
                        }
                    }
                }
            }
        }
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
    while let Some(tx) = frames.recv().await {
        let tx = damage.apply(tx);
        let written = async {
            writer.write_all(&tx.header).await?;
            if !tx.payload.is_empty() {
                writer.write_all(&tx.payload).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        if let Err(e) = written.await {
            failure = Some(TransportError::io("write", e));
            break;
        }
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

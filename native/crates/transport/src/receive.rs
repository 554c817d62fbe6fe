//! The receiving side of one transfer: frames from every connection of the session go into one
//! sans-IO [`Receiver`]; acks and NACKs go back on the connection each frame came in on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dwcp_amst::frame::{self, encode_ack, encode_nack, encode_probe_ack, Ack, Version, ACK_LEN};
use dwcp_amst::{AmstError, ConnId, Receiver, ReceiverConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::error::damaged_record;
use crate::recycle::FrameBuffers;
use crate::{Link, Result, TransportError};

/// How the receiving side behaves.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// Window and frame limits.
    pub receiver: ReceiverConfig,
    /// With every connection gone and the stream unfinished, fail after this long (the sender
    /// may be reconnecting).
    pub orphan_timeout: Duration,
    /// Pieces buffered for a slow consumer before the window starts to close.
    pub consumer_buffer: usize,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            receiver: ReceiverConfig::default(),
            orphan_timeout: Duration::from_secs(10),
            consumer_buffer: 64,
        }
    }
}

/// Counters of one incoming transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Bytes delivered in order.
    pub bytes: u64,
    /// Frames accepted.
    pub frames: u64,
    /// Copies of frames that had already arrived, dropped.
    pub duplicates: u64,
    /// Frames whose CRC was wrong (damaged above TLS): dropped and asked for again.
    pub corrupt_frames: u64,
    /// PROBE payload bytes answered and discarded before the stream (never delivered).
    pub probe_bytes: u64,
    /// Connections that joined the transfer.
    pub connections_seen: u32,
    /// Connections closed because they broke the protocol or failed.
    pub connections_refused: u32,
    /// Connections that died on a TLS record that failed its authentication check: bytes damaged
    /// on the wire. The sender moves their frames and connects again.
    pub connections_corrupted: u32,
}

enum LinkEvent {
    Frame(Version, Bytes),
    /// The connection ended: cleanly, with an error, or on a damaged TLS record (`true`).
    Closed(Option<TransportError>, bool),
}

/// Encoded ACKs, NACKs and PROBE_ACKs for one connection, written as they are.
type Replies = HashMap<ConnId, mpsc::UnboundedSender<Vec<u8>>>;

/// Queues every ack and NACK the receiver has on the connection it belongs to: one message per
/// connection, so its writer sends all of them in one TLS record and one system call.
fn send_replies(rx: &mut Receiver, replies: &Replies) {
    let mut out: Vec<(ConnId, Vec<u8>)> = Vec::new();
    let mut push = |conn: ConnId, bytes: &[u8]| match out.iter_mut().find(|(c, _)| *c == conn) {
        Some((_, b)) => b.extend_from_slice(bytes),
        None => out.push((conn, bytes.to_vec())),
    };
    while let Some((conn, ack)) = rx.poll_ack() {
        push(conn, &encode_ack(&ack));
    }
    while let Some((conn, seq, crc)) = rx.poll_nack() {
        push(conn, &encode_nack(seq, crc));
    }
    while let Some((conn, id, len)) = rx.poll_probe_ack() {
        push(conn, &encode_probe_ack(id, len));
    }
    for (conn, bytes) in out {
        if let Some(tx) = replies.get(&conn) {
            let _ = tx.send(bytes);
        }
    }
}

/// The final ack of each transfer a listener completed, by session. A sender whose FIN's ack
/// was lost with its connection dials again; it is answered with this ack rather than refused,
/// so it learns the transfer is complete.
#[derive(Clone, Default)]
pub(crate) struct FinalAcks(Arc<Mutex<HashMap<[u8; 16], [u8; ACK_LEN]>>>);

impl FinalAcks {
    fn record(&self, session: [u8; 16], ack: &Ack) {
        if let Ok(mut acks) = self.0.lock() {
            acks.insert(session, encode_ack(ack));
        }
    }

    pub(crate) fn get(&self, session: &[u8; 16]) -> Option<[u8; ACK_LEN]> {
        self.0.lock().ok()?.get(session).copied()
    }

    pub(crate) fn forget(&self, session: &[u8; 16]) {
        if let Ok(mut acks) = self.0.lock() {
            acks.remove(session);
        }
    }
}

/// Answers a connection to a transfer that already completed with its final ack, then closes it
/// cleanly: what the sender writes (its FIN again) is read and dropped, so the close is no reset.
pub(crate) async fn answer_finished(link: Link, ack: [u8; ACK_LEN]) {
    let Link {
        mut reader,
        mut writer,
        ..
    } = link;
    if writer.write_all(&ack).await.is_ok() {
        let _ = writer.shutdown().await;
    }
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// One transfer arriving at a listener. Read it to the end; `Ok(None)` means complete.
pub struct IncomingStream {
    session: [u8; 16],
    data: mpsc::Receiver<Result<Bytes>>,
    stats: watch::Receiver<ReceiveStats>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("stats", &*self.stats.borrow())
            .finish_non_exhaustive()
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IncomingStream {
    pub(crate) fn start(
        session: [u8; 16],
        options: ReceiveOptions,
        final_acks: FinalAcks,
    ) -> (mpsc::Sender<(u32, Link)>, Self) {
        let (links_tx, links_rx) = mpsc::channel(16);
        let (data_tx, data_rx) = mpsc::channel(options.consumer_buffer.max(1));
        let (stats_tx, stats_rx) = watch::channel(ReceiveStats::default());
        let task = tokio::spawn(async move {
            // The final ack is recorded before the consumer sees the end of the stream.
            match run(links_rx, data_tx.clone(), &stats_tx, options).await {
                Ok(Some(ack)) => final_acks.record(session, &ack),
                Ok(None) => {}
                Err(e) => {
                    let _ = data_tx.send(Err(e)).await;
                }
            }
        });
        let stream = IncomingStream {
            session,
            data: data_rx,
            stats: stats_rx,
            task,
        };
        (links_tx, stream)
    }

    /// The transfer's session id.
    pub fn session(&self) -> [u8; 16] {
        self.session
    }

    /// The next in-order piece; `Ok(None)` once the whole stream has arrived.
    pub async fn read(&mut self) -> Result<Option<Bytes>> {
        self.data.recv().await.transpose()
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiveStats {
        *self.stats.borrow()
    }
}

/// Receives one transfer; its final ack once complete, `None` if the consumer went away.
async fn run(
    mut links: mpsc::Receiver<(u32, Link)>,
    data: mpsc::Sender<Result<Bytes>>,
    stats_tx: &watch::Sender<ReceiveStats>,
    options: ReceiveOptions,
) -> Result<Option<Ack>> {
    let mut rx = Receiver::new(options.receiver.clone())?;
    let max_frame = rx.max_frame();
    let (events_tx, mut events) = mpsc::channel::<(ConnId, LinkEvent)>(256);
    let mut acks: Replies = HashMap::new();
    let mut readers: HashMap<ConnId, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut stats = ReceiveStats::default();
    let mut next_id = 0u32;
    let mut pending: Option<Bytes> = None;
    let mut last_error: Option<TransportError> = None;
    let buffers = FrameBuffers::default();
    loop {
        // Hand over what is in order, as far as the consumer keeps up.
        loop {
            if pending.is_none() {
                pending = rx.read();
            }
            let Some(piece) = pending.take() else { break };
            match data.try_send(Ok(piece)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(Ok(piece))) => {
                    pending = Some(piece);
                    break;
                }
                Err(_) => return Ok(None), // the consumer is gone
            }
        }
        send_replies(&mut rx, &acks);
        let s = rx.stats();
        stats.bytes = s.bytes_delivered;
        stats.frames = s.frames;
        stats.duplicates = s.duplicates;
        stats.corrupt_frames = s.corrupt_frames;
        stats.probe_bytes = s.probe_bytes;
        stats_tx.send_replace(stats);
        if let Some(ack) = rx.final_ack().filter(|_| pending.is_none()) {
            return Ok(Some(ack));
        }
        tokio::select! {
            link = links.recv() => {
                let Some((_, link)) = link else {
                    if acks.is_empty() {
                        return Err(last_error.unwrap_or_else(|| TransportError::NoConnection("listener closed".into())));
                    }
                    continue;
                };
                let id = ConnId(next_id);
                next_id += 1;
                stats.connections_seen += 1;
                let (ack_tx, ack_rx) = mpsc::unbounded_channel();
                acks.insert(id, ack_tx);
                readers.insert(id, tokio::spawn(read_frames(id, link, max_frame, buffers.clone(), ack_rx, events_tx.clone())));
            }
            Some((id, event)) = events.recv() => {
                // The events already queued go in before the acks go out, so that each
                // connection's acks leave together.
                let mut next = Some((id, event));
                let mut handled = 0;
                while let Some((id, event)) = next.take() {
                    let mut links = Links { acks: &mut acks, readers: &mut readers };
                    if let Err(e) = on_link_event(&mut rx, &mut links, &mut stats, &mut last_error, id, event, max_frame) {
                        stats.corrupt_frames = rx.stats().corrupt_frames;
                        stats_tx.send_replace(stats);
                        return Err(e);
                    }
                    handled += 1;
                    if handled < EVENT_BATCH {
                        next = events.try_recv().ok();
                    }
                }
            }
            permit = data.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else { return Ok(None) };
                if let Some(piece) = pending.take() {
                    permit.send(Ok(piece));
                }
            }
            () = tokio::time::sleep(options.orphan_timeout), if acks.is_empty() => {
                // A peer that broke the protocol is reported as such; anything else means the
                // connections went away (cancel, crash, cut link).
                return Err(match last_error {
                    Some(e @ TransportError::Protocol(_)) => e,
                    Some(e) => TransportError::NoConnection(format!("every connection closed; the last with: {e}")),
                    None => TransportError::NoConnection("every connection closed before the end of the stream".into()),
                });
            }
        }
    }
}

/// Room asked for a frame's buffer before its header says how long it is.
const HEADER_READ: usize = 64;

/// Events taken from the connections before their acks are sent, at most.
const EVENT_BATCH: usize = 64;

/// The transfer's view of its connections: where their replies go, and their reader tasks.
struct Links<'a> {
    acks: &'a mut Replies,
    readers: &'a mut HashMap<ConnId, tokio::task::JoinHandle<()>>,
}

/// One connection's frame or end. A peer that breaks the protocol is dropped and the transfer
/// goes on; only a frame corrupt too often ends it (its last NACK is queued first).
fn on_link_event(
    rx: &mut Receiver,
    links: &mut Links<'_>,
    stats: &mut ReceiveStats,
    last_error: &mut Option<TransportError>,
    id: ConnId,
    event: LinkEvent,
    max_frame: usize,
) -> Result<()> {
    match event {
        LinkEvent::Frame(version, bytes) => {
            let accepted = frame::parse(&bytes, version, max_frame)
                .map_err(TransportError::from)
                .and_then(|f| {
                    let (f, _) = f.ok_or_else(|| TransportError::BadHello("split frame".into()))?;
                    rx.handle_frame_in(id, f, &bytes)
                        .map_err(TransportError::from)
                });
            match accepted {
                Ok(()) => {}
                Err(e @ TransportError::Protocol(AmstError::FrameCorrupt { .. })) => {
                    // The sender's copy is bad: the stream cannot complete. Its last NACK goes
                    // out so the sender fails with the same error.
                    send_replies(rx, links.acks);
                    return Err(e);
                }
                Err(e) => {
                    stats.connections_refused += 1;
                    drop_link(id, links.acks, links.readers);
                    *last_error = Some(e);
                }
            }
        }
        LinkEvent::Closed(e, damaged) => {
            if damaged {
                stats.connections_corrupted += 1;
            } else if e.is_some() {
                stats.connections_refused += 1;
            }
            if let Some(e) = e {
                *last_error = Some(e);
            }
            drop_link(id, links.acks, links.readers);
        }
    }
    Ok(())
}

fn drop_link(
    id: ConnId,
    acks: &mut Replies,
    readers: &mut HashMap<ConnId, tokio::task::JoinHandle<()>>,
) {
    acks.remove(&id);
    if let Some(task) = readers.remove(&id) {
        task.abort();
    }
}

/// Splits one connection's bytes into frames and writes its acks and NACKs; ends when either
/// side ends.
async fn read_frames(
    id: ConnId,
    link: Link,
    max_frame: usize,
    buffers: FrameBuffers,
    mut replies: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::Sender<(ConnId, LinkEvent)>,
) {
    let Link {
        mut reader,
        mut writer,
        peer,
        version,
        ..
    } = link;
    let ack_writer = tokio::spawn(async move {
        while let Some(mut out) = replies.recv().await {
            // Whatever queued up while the last write went out goes in the same write.
            while out.len() < 64 * 1024 {
                let Ok(more) = replies.try_recv() else { break };
                out.extend_from_slice(&more);
            }
            if writer.write_all(&out).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    // Each frame is read to its end and no further, into a buffer of its own (see `recycle`),
    // so that its payload can go to the consumer without a copy.
    let mut buf = buffers.take(HEADER_READ);
    let (outcome, damaged) = loop {
        match frame::parse(&buf, version, max_frame) {
            Ok(Some((_, len))) => {
                // Only a frame shorter than the header guessed leaves bytes of the next.
                let mut next = buffers.take(HEADER_READ);
                next.extend_from_slice(&buf[len..]);
                buf.truncate(len);
                let one = buffers.freeze(std::mem::replace(&mut buf, next));
                if events
                    .send((id, LinkEvent::Frame(version, one)))
                    .await
                    .is_err()
                {
                    break (None, false);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break (Some(TransportError::from(e)), false),
        }
        let wanted = frame::bytes_wanted(&buf, version);
        buf.reserve(wanted);
        match (&mut reader).take(wanted as u64).read_buf(&mut buf).await {
            Ok(0) => break (None, false),
            Ok(_) => {}
            Err(e) => {
                break (
                    Some(TransportError::from_read(&peer, &e)),
                    damaged_record(&e),
                )
            }
        }
    };
    let _ = events.send((id, LinkEvent::Closed(outcome, damaged))).await;
    // Let the last acks (the FIN's above all) go out and the TLS session close cleanly: the
    // writer ends when the transfer drops this link's ack channel.
    if tokio::time::timeout(Duration::from_secs(5), ack_writer)
        .await
        .is_err()
    {
        // A peer that does not read its acks gets closed without them.
    }
}

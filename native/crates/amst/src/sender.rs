//! The sending half: frames the stream, schedules each frame onto a connection, keeps it until
//! it is acknowledged, sends again what the receiver found corrupt, and moves the frames of a
//! dead or stalled connection to the others.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::conn::Conn;
use crate::frame::{self, Ack, Version, CORRUPT_LIMIT};
use crate::{AmstError, ConnId, ConnStats, Pacer, Result};

/// The `seq` an ACK of a FIN carries.
pub const FIN_SEQ: u64 = u64::MAX;

/// Sender settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Payload bytes per DATA frame.
    pub frame_size: usize,
    /// Bytes accepted from the producer and not yet acknowledged; `write` refuses more.
    pub send_buffer: usize,
    /// Bytes a connection may hold unacknowledged before it has been measured.
    pub initial_window: u64,
    /// A connection with frames in flight and no ack for this long (or 4 × its srtt, if
    /// longer) is declared failed and its frames go elsewhere.
    pub stall_timeout: Duration,
    /// An optional cap in bytes per second over all connections.
    pub rate_cap: Option<u64>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            frame_size: 64 * 1024,
            send_buffer: 64 * 1024 * 1024,
            initial_window: 256 * 1024,
            stall_timeout: Duration::from_secs(3),
            rate_cap: None,
        }
    }
}

impl SenderConfig {
    /// Checks ranges, naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if !(1024..=4 * 1024 * 1024).contains(&self.frame_size) {
            return Err(param(
                "frameSize",
                format!("{} is outside 1024..=4194304", self.frame_size),
            ));
        }
        if self.send_buffer < 2 * self.frame_size {
            return Err(param("sendBuffer", "must hold at least two frames"));
        }
        if self.initial_window < self.frame_size as u64 {
            return Err(param("initialWindow", "must hold at least one frame"));
        }
        if self.rate_cap == Some(0) {
            return Err(param("rateCap", "0 would never send; omit it for no cap"));
        }
        Ok(())
    }
}

fn param(field: &'static str, reason: impl Into<String>) -> AmstError {
    AmstError::InvalidParam {
        field,
        reason: reason.into(),
    }
}

/// One unit of output: bytes to write on a connection.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where to write.
    pub conn: ConnId,
    /// The DATA frame's sequence number; `None` for a FIN.
    pub seq: Option<u64>,
    /// The frame header in the connection's version (or the whole control frame).
    pub header: Vec<u8>,
    /// The payload, empty for control frames. Cheap to clone.
    pub payload: Bytes,
}

/// Something the runtime must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderEvent {
    /// The connection stalled; its frames were moved. Close it (and maybe open another).
    ConnectionFailed(ConnId),
    /// A retiring connection has drained. Close it.
    ConnectionRetired(ConnId),
}

/// Stream-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Bytes accepted from the producer.
    pub bytes_written: u64,
    /// Bytes delivered in order to the receiver.
    pub bytes_acked: u64,
    /// DATA frames handed to connections, first sends and resends.
    pub frames_sent: u64,
    /// Of those, resends: after a NACK, or off a connection that failed or stalled.
    pub frames_resent: u64,
    /// NACKs: frames the receiver got with a wrong CRC and dropped.
    pub frames_nacked: u64,
    /// Live connections.
    pub connections: u32,
}

#[derive(Debug)]
struct Pending {
    data: Bytes,
    /// Computed as the bytes came in, so damage to `data` while it waits here is caught too.
    crc: u32,
    /// Corrupt copies the receiver reported.
    nacks: u32,
    /// The connection carrying it, if in flight.
    conn: Option<ConnId>,
    sent_at: Option<Instant>,
    /// The carrying connection's delivered bytes at send, for its rate sample.
    delivered_at_send: u64,
}

/// The sending state machine. Method groups: getters, `handle_*` inputs, mutators, `poll_*` outputs.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    conns: BTreeMap<ConnId, Conn>,
    /// Every frame not yet acknowledged, queued or in flight.
    frames: BTreeMap<u64, Pending>,
    /// Frames taken off a failed connection, to go out again first.
    resend: BTreeSet<u64>,
    /// Bytes written that do not yet fill a frame.
    partial: BytesMut,
    next_seq: u64,
    /// The lowest sequence number never handed to a connection.
    next_new: u64,
    /// Every frame below this is delivered in order.
    cumulative: u64,
    /// The receiver accepts frames below `cumulative + peer_window`.
    peer_window: u64,
    buffered: usize,
    finishing: bool,
    fin_conn: Option<ConnId>,
    /// A FIN went out at least once. A FIN ack covering every frame counts whichever
    /// connection it comes on, even one already written off: it says the receiver holds the
    /// whole stream, and the receiver may have closed the FIN's connection after sending it.
    fin_sent: bool,
    fin_acked: bool,
    pacer: Pacer,
    pace_until: Option<Instant>,
    events: VecDeque<SenderEvent>,
    stats: SenderStats,
}

impl Sender {
    /// A sender with validated settings.
    pub fn new(config: SenderConfig) -> Result<Self> {
        config.validate()?;
        let burst = (config.frame_size * 4) as u64;
        Ok(Sender {
            pacer: Pacer::new(config.rate_cap, burst),
            partial: BytesMut::with_capacity(config.frame_size),
            config,
            conns: BTreeMap::new(),
            frames: BTreeMap::new(),
            resend: BTreeSet::new(),
            next_seq: 0,
            next_new: 0,
            cumulative: 0,
            peer_window: 64,
            buffered: 0,
            finishing: false,
            fin_conn: None,
            fin_sent: false,
            fin_acked: false,
            pace_until: None,
            events: VecDeque::new(),
            stats: SenderStats::default(),
        })
    }

    // ---- getters ----

    /// Stream-wide counters.
    pub fn stats(&self) -> SenderStats {
        SenderStats {
            connections: u32::try_from(self.conns.len()).unwrap_or(u32::MAX),
            ..self.stats
        }
    }

    /// Per-connection measurements.
    pub fn conn_stats(&self) -> Vec<ConnStats> {
        self.conns
            .values()
            .map(|c| c.stats(self.config.initial_window))
            .collect()
    }

    /// Changes how many bytes may be taken and not yet acknowledged, e.g. as the path's measured
    /// bandwidth-delay product changes. A limit below what is buffered takes nothing more until
    /// acks bring the buffer under it; nothing already taken is dropped.
    pub fn set_send_buffer(&mut self, bytes: usize) -> Result<()> {
        if bytes < 2 * self.config.frame_size {
            return Err(param("sendBuffer", "must hold at least two frames"));
        }
        self.config.send_buffer = bytes;
        Ok(())
    }

    /// The current limit of [`Sender::set_send_buffer`].
    pub fn send_buffer(&self) -> usize {
        self.config.send_buffer
    }

    /// Bytes `write` would accept now (backpressure: 0 means wait for acks).
    pub fn writable(&self) -> usize {
        if self.finishing {
            return 0;
        }
        self.config.send_buffer.saturating_sub(self.buffered)
    }

    /// Whether every byte and the end of the stream are acknowledged.
    pub fn is_finished(&self) -> bool {
        self.fin_acked
    }

    /// Whether every data frame is delivered in order and only the FIN's ack is outstanding.
    pub fn all_data_acked(&self) -> bool {
        self.finishing && self.cumulative == self.next_seq
    }

    /// Live connection ids.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// Frames connection `id` carries that are not yet acknowledged.
    pub fn inflight_frames(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.inflight.len())
    }

    // ---- handle_* inputs ----

    /// A new connection is up and may carry frames, in the frame `version` agreed with the peer.
    pub fn handle_connected(&mut self, id: ConnId, version: Version, now: Instant) {
        self.conns
            .entry(id)
            .or_insert_with(|| Conn::new(id, version, now));
    }

    /// A connection is gone (closed, reset, refused). Its unacknowledged frames go out again on
    /// the others, so nothing is lost; the receiver drops any duplicate.
    pub fn handle_disconnected(&mut self, id: ConnId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        for seq in conn.inflight {
            if let Some(p) = self.frames.get_mut(&seq) {
                p.conn = None;
                self.resend.insert(seq);
            }
        }
        if self.fin_conn == Some(id) && !self.fin_acked {
            self.fin_conn = None;
        }
    }

    /// An ACK arrived on connection `id`.
    pub fn handle_ack(&mut self, id: ConnId, ack: Ack, now: Instant) -> Result<()> {
        if ack.cumulative > self.next_new {
            return Err(AmstError::Protocol(format!(
                "ack cumulative {} beyond the {} frames sent",
                ack.cumulative, self.next_new
            )));
        }
        self.peer_window = u64::from(ack.window);
        if ack.seq == FIN_SEQ {
            if self.fin_sent && ack.cumulative == self.next_seq {
                self.fin_acked = true;
            }
        } else {
            self.ack_one(id, ack.seq, now);
        }
        while self.cumulative < ack.cumulative {
            let seq = self.cumulative;
            self.ack_one(id, seq, now);
            self.cumulative += 1;
        }
        Ok(())
    }

    /// A NACK arrived on connection `id`: the receiver dropped a DATA frame whose CRC was wrong
    /// and echoes the `seq` and `crc` it carried. If they name a frame this connection carries,
    /// that frame goes out again first. If not, the damage hit the header and the lost frame is
    /// unknown: the connection counts as failed and all its frames move, as when it dies.
    ///
    /// A frame reported corrupt more than [`CORRUPT_LIMIT`] times is an error: the copy kept
    /// here must itself be damaged, and sending it again cannot help.
    pub fn handle_nack(&mut self, id: ConnId, seq: u64, crc: u32, now: Instant) -> Result<()> {
        let Some(conn) = self.conns.get_mut(&id) else {
            // Already failed; its frames have moved.
            return Ok(());
        };
        conn.last_progress = now;
        self.stats.frames_nacked += 1;
        let Some(p) = self
            .frames
            .get_mut(&seq)
            .filter(|p| p.conn == Some(id) && p.crc == crc)
        else {
            self.handle_disconnected(id);
            self.events.push_back(SenderEvent::ConnectionFailed(id));
            return Ok(());
        };
        p.nacks += 1;
        if p.nacks > CORRUPT_LIMIT {
            return Err(AmstError::FrameCorrupt {
                seq,
                copies: p.nacks,
            });
        }
        p.conn = None;
        p.sent_at = None;
        conn.forget(seq, p.data.len() as u64);
        self.resend.insert(seq);
        Ok(())
    }

    /// Time has passed: detects stalled connections.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pace_until.is_some_and(|t| t <= now) {
            self.pace_until = None;
        }
        let stalled: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| !c.inflight.is_empty() && now >= c.last_progress + self.stall_timeout(c))
            .map(|c| c.id)
            .collect();
        for id in stalled {
            self.handle_disconnected(id);
            self.events.push_back(SenderEvent::ConnectionFailed(id));
        }
    }

    // ---- mutators ----

    /// Accepts up to [`writable`](Self::writable) bytes of the stream; returns how many.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let take = data.len().min(self.writable());
        let mut rest = &data[..take];
        while !rest.is_empty() {
            let n = self.fill(rest);
            rest = &rest[n..];
        }
        self.took(take)
    }

    /// As [`write`](Self::write), for bytes the caller already holds as `Bytes`: whole frames
    /// are sliced out of `data` rather than copied, so they keep its allocation alive until
    /// they are acknowledged. Only the ends that do not fill a frame of their own are copied.
    /// The frames, and their CRC computed now, are the same as `write` would make.
    pub fn write_bytes(&mut self, data: &Bytes) -> usize {
        let take = data.len().min(self.writable());
        let frame_size = self.config.frame_size;
        let mut at = 0;
        while at < take {
            if self.partial.is_empty() && take - at >= frame_size {
                self.seal(data.slice(at..at + frame_size));
                at += frame_size;
            } else {
                at += self.fill(&data[at..take]);
            }
        }
        self.took(take)
    }

    /// Sends what is written so far without waiting to fill a frame.
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            self.seal_frame();
        }
    }

    /// Ends the stream: no more writes; a FIN follows the last frame.
    pub fn finish(&mut self) {
        self.flush();
        self.finishing = true;
    }

    /// Stops giving new frames to `id`; it is reported retired once it has drained.
    pub fn retire(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.retiring = true;
        }
        self.reap_retired();
    }

    /// Changes the rate cap (bytes per second), e.g. from the bandwidth predictor.
    pub fn set_rate_cap(&mut self, rate: Option<u64>) -> Result<()> {
        if rate == Some(0) {
            return Err(param("rateCap", "0 would never send; omit it for no cap"));
        }
        self.pacer.set_rate(rate);
        Ok(())
    }

    // ---- poll_* outputs ----

    /// The next frame to write, and where. `None`: nothing may go now; see `poll_timeout`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.pace_until.is_some_and(|t| t > now) {
            return None;
        }
        let Some(seq) = self.next_to_send() else {
            return self.poll_fin();
        };
        let len = self.frames.get(&seq).map_or(0, |p| p.data.len());
        let conn = self.pick_connection(len as u64)?;
        if let Some(at) = self.pacer.delay_until(len + frame::DATA_HEADER_LEN, now) {
            self.pace_until = Some(at);
            return None;
        }
        self.pacer.on_sent(len + frame::DATA_HEADER_LEN, now);
        let resent = self.resend.remove(&seq);
        if !resent {
            self.next_new += 1;
        }
        let c = self.conns.get_mut(&conn)?;
        c.on_sent(seq, len as u64, now);
        let delivered = c.delivered;
        let p = self.frames.get_mut(&seq)?;
        p.conn = Some(conn);
        p.sent_at = Some(now);
        p.delivered_at_send = delivered;
        self.stats.frames_sent += 1;
        if resent {
            self.stats.frames_resent += 1;
            c.moved_frames += 1;
        }
        let (header, n) = frame::data_header(c.version, seq, len, p.crc);
        Some(Transmit {
            conn,
            seq: Some(seq),
            header: header[..n].to_vec(),
            payload: p.data.clone(),
        })
    }

    /// The earliest time `handle_timeout` should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall = self
            .conns
            .values()
            .filter(|c| !c.inflight.is_empty())
            .map(|c| c.last_progress + self.stall_timeout(c))
            .min();
        match (stall, self.pace_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Connection events for the runtime.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    // ---- internals ----

    /// Copies what fits of `data` into the frame being filled, sealing it once full.
    fn fill(&mut self, data: &[u8]) -> usize {
        if self.partial.is_empty() {
            self.partial.reserve(self.config.frame_size);
        }
        let n = (self.config.frame_size - self.partial.len()).min(data.len());
        self.partial.extend_from_slice(&data[..n]);
        if self.partial.len() == self.config.frame_size {
            self.seal_frame();
        }
        n
    }

    fn took(&mut self, bytes: usize) -> usize {
        self.buffered += bytes;
        self.stats.bytes_written += bytes as u64;
        bytes
    }

    fn seal_frame(&mut self) {
        let data = self.partial.split().freeze();
        self.seal(data);
    }

    fn seal(&mut self, data: Bytes) {
        self.frames.insert(
            self.next_seq,
            Pending {
                crc: frame::crc(self.next_seq, &data),
                nacks: 0,
                data,
                conn: None,
                sent_at: None,
                delivered_at_send: 0,
            },
        );
        self.next_seq += 1;
    }

    fn next_to_send(&self) -> Option<u64> {
        if let Some(&seq) = self.resend.first() {
            return Some(seq);
        }
        let in_window = self.next_new < self.cumulative + self.peer_window;
        (self.next_new < self.next_seq && in_window).then_some(self.next_new)
    }

    /// Earliest-completion-first: the active connection expected to deliver a `len`-byte frame
    /// first, counting the queue it must drain. If that one has no room in its window, nothing
    /// goes now: handing the frame to a slower connection would deliver it later, and a frame
    /// late to the reorder buffer holds up the whole stream. Connections not yet measured get
    /// one frame at a time, so that they are measured.
    fn pick_connection(&self, len: u64) -> Option<ConnId> {
        let initial = self.config.initial_window;
        let active = || self.conns.values().filter(|c| !c.retiring);
        if let Some(c) = active().find(|c| c.delivery_rate == 0.0 && c.inflight.is_empty()) {
            return Some(c.id);
        }
        let best = active().filter(|c| c.delivery_rate > 0.0).min_by(|a, b| {
            a.expected_delivery(len)
                .total_cmp(&b.expected_delivery(len))
        })?;
        (best.inflight.is_empty() || best.inflight_bytes + len <= best.window(initial))
            .then_some(best.id)
    }

    fn poll_fin(&mut self) -> Option<Transmit> {
        let all_sent = self.finishing && self.next_new == self.next_seq && self.resend.is_empty();
        if !all_sent || self.fin_conn.is_some() || self.fin_acked {
            return None;
        }
        let conn = self
            .conns
            .values()
            .find(|c| !c.retiring)
            .or_else(|| self.conns.values().next())?
            .id;
        self.fin_conn = Some(conn);
        self.fin_sent = true;
        Some(Transmit {
            conn,
            seq: None,
            header: frame::encode_fin(self.next_seq, self.stats.bytes_written).to_vec(),
            payload: Bytes::new(),
        })
    }

    fn ack_one(&mut self, id: ConnId, seq: u64, now: Instant) {
        let Some(p) = self.frames.remove(&seq) else {
            return;
        };
        self.resend.remove(&seq);
        let len = p.data.len() as u64;
        self.buffered -= p.data.len();
        match p.conn {
            Some(carrier) if carrier == id => {
                if let (Some(c), Some(sent_at)) = (self.conns.get_mut(&id), p.sent_at) {
                    c.on_acked(seq, len, sent_at, p.delivered_at_send, now);
                }
            }
            Some(carrier) => {
                if let Some(c) = self.conns.get_mut(&carrier) {
                    c.forget(seq, len);
                }
            }
            None => {}
        }
        self.stats.bytes_acked += len;
        self.reap_retired();
    }

    fn reap_retired(&mut self) {
        let drained: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| c.retiring && c.inflight.is_empty() && self.fin_conn != Some(c.id))
            .map(|c| c.id)
            .collect();
        for id in drained {
            self.conns.remove(&id);
            self.events.push_back(SenderEvent::ConnectionRetired(id));
        }
    }

    fn stall_timeout(&self, c: &Conn) -> Duration {
        c.srtt.map_or(self.config.stall_timeout, |s| {
            self.config.stall_timeout.max(s * 4)
        })
    }
}

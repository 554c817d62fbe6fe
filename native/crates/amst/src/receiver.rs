//! The receiving half: accepts frames from any connection, checks their CRC, drops duplicates,
//! reorders within a bounded window, and acks each frame on the connection it came in on. A
//! frame with a wrong CRC is neither acked nor delivered: it is NACKed on its connection.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::frame::{self, Ack, Frame, CORRUPT_LIMIT};
use crate::sender::FIN_SEQ;
use crate::{AmstError, ConnId, Result};

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// The largest DATA payload accepted; larger frames close the connection.
    pub max_frame: usize,
    /// Frames accepted beyond the next in-order one; bounds the reorder buffer to
    /// `window × max_frame` bytes.
    pub window: u32,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            max_frame: 4 * 1024 * 1024,
            window: 1024,
        }
    }
}

/// Counters of the receiving side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Frames accepted.
    pub frames: u64,
    /// Frames that had already arrived (resends after a stall), dropped.
    pub duplicates: u64,
    /// Frames whose CRC was wrong: dropped and NACKed.
    pub corrupt_frames: u64,
    /// Bytes handed out in order.
    pub bytes_delivered: u64,
    /// Bytes waiting in the reorder buffer.
    pub buffered_bytes: u64,
    /// PROBE payload bytes acknowledged and discarded: path measurement, not stream.
    pub probe_bytes: u64,
}

/// The receiving state machine.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    /// The next in-order frame.
    next: u64,
    reorder: BTreeMap<u64, Bytes>,
    ready: VecDeque<Bytes>,
    acks: VecDeque<(ConnId, Ack)>,
    /// NACKs to send: the connection, and the damaged frame's `seq` and `crc`.
    nacks: VecDeque<(ConnId, u64, u32)>,
    /// PROBE_ACKs to send: the connection, and the probe's id and length.
    probe_acks: VecDeque<(ConnId, u64, u32)>,
    /// Corrupt copies per frame not yet delivered, for [`CORRUPT_LIMIT`].
    corrupt: BTreeMap<u64, u32>,
    fin: Option<(u64, u64)>,
    /// The window last advertised, and where: reading reopens a closing window.
    advertised: u32,
    last_conn: Option<ConnId>,
    stats: ReceiverStats,
}

/// The `seq` of an ACK that only reopens the window.
pub const WINDOW_UPDATE_SEQ: u64 = u64::MAX - 1;

impl Receiver {
    /// A receiver with validated settings.
    pub fn new(config: ReceiverConfig) -> Result<Self> {
        if config.window == 0 {
            return Err(AmstError::InvalidParam {
                field: "window",
                reason: "must be at least 1 frame".into(),
            });
        }
        Ok(Receiver {
            config: config.clone(),
            next: 0,
            reorder: BTreeMap::new(),
            ready: VecDeque::new(),
            acks: VecDeque::new(),
            nacks: VecDeque::new(),
            probe_acks: VecDeque::new(),
            corrupt: BTreeMap::new(),
            fin: None,
            advertised: config.window,
            last_conn: None,
            stats: ReceiverStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Once the whole stream has arrived, the FIN's ack: the answer for a sender that lost it
    /// and comes back.
    pub fn final_ack(&self) -> Option<Ack> {
        self.is_complete().then_some(Ack {
            seq: FIN_SEQ,
            cumulative: self.next,
            window: self.advertised,
        })
    }

    /// The largest payload this receiver accepts (for the frame parser).
    pub fn max_frame(&self) -> usize {
        self.config.max_frame
    }

    /// Whether the whole stream arrived and was read.
    pub fn is_complete(&self) -> bool {
        self.fin.is_some_and(|(frames, _)| self.next == frames) && self.ready.is_empty()
    }

    /// A frame arrived on `conn`. An error means the peer broke the protocol: close it. The
    /// exception is [`AmstError::FrameCorrupt`], which fails the whole stream; its NACK is still
    /// queued, so the sender learns of it and fails with the same error.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Frame<'_>) -> Result<()> {
        self.handle(conn, frame, None)
    }

    /// As [`handle_frame`](Self::handle_frame), for a frame parsed from `wire`: a DATA payload
    /// is kept as a slice of `wire` (no copy), which stays allocated until it is read and
    /// dropped. A payload that does not lie within `wire` is copied.
    pub fn handle_frame_in(&mut self, conn: ConnId, frame: Frame<'_>, wire: &Bytes) -> Result<()> {
        self.handle(conn, frame, Some(wire))
    }

    fn handle(&mut self, conn: ConnId, frame: Frame<'_>, wire: Option<&Bytes>) -> Result<()> {
        match frame {
            Frame::Data { seq, payload, crc } => {
                if payload.len() > self.config.max_frame {
                    return Err(AmstError::FrameTooLarge {
                        len: payload.len(),
                        limit: self.config.max_frame,
                    });
                }
                // Before anything else looks at `seq`: it may be the damaged part.
                match crc {
                    Some(crc) if crc != frame::crc(seq, payload) => self.on_corrupt(conn, seq, crc),
                    _ => self.on_data(conn, seq, payload, wire),
                }
            }
            Frame::Fin {
                total_frames,
                total_bytes,
            } => {
                if let Some(prev) = self.fin {
                    if prev != (total_frames, total_bytes) {
                        return Err(AmstError::Protocol("two FINs that disagree".into()));
                    }
                }
                if total_frames < self.next {
                    return Err(AmstError::Protocol(format!(
                        "FIN says {total_frames} frames but {} already arrived",
                        self.next
                    )));
                }
                self.fin = Some((total_frames, total_bytes));
                self.check_total()?;
                self.last_conn = Some(conn);
                let ack = self.ack(FIN_SEQ);
                self.acks.push_back((conn, ack));
                Ok(())
            }
            Frame::Probe { id, len } => {
                // Never part of the stream: answered on its connection and dropped.
                self.stats.probe_bytes += u64::from(len);
                self.probe_acks.push_back((conn, id, len));
                Ok(())
            }
            Frame::Ack(_) | Frame::Nack { .. } | Frame::ProbeAck { .. } => Err(
                AmstError::Protocol("ACK, NACK or PROBE_ACK sent to a receiver".into()),
            ),
        }
    }

    /// The next in-order piece of the stream. Unread pieces count against the window, so a
    /// consumer that stops reading stops the sender.
    pub fn read(&mut self) -> Option<Bytes> {
        let data = self.ready.pop_front()?;
        let half = self.config.window / 2;
        if let Some(conn) = self.last_conn {
            if self.advertised < half && self.open_window() >= half {
                let ack = self.ack(WINDOW_UPDATE_SEQ);
                self.acks.push_back((conn, ack));
            }
        }
        Some(data)
    }

    /// The next ack to write, and on which connection.
    pub fn poll_ack(&mut self) -> Option<(ConnId, Ack)> {
        self.acks.pop_front()
    }

    /// The next NACK to write, on which connection, and the `seq` and `crc` it echoes.
    pub fn poll_nack(&mut self) -> Option<(ConnId, u64, u32)> {
        self.nacks.pop_front()
    }

    /// The next PROBE_ACK to write, on which connection, with the probe's id and length.
    pub fn poll_probe_ack(&mut self) -> Option<(ConnId, u64, u32)> {
        self.probe_acks.pop_front()
    }

    /// A DATA frame whose CRC is wrong: nothing of it is trusted, so it is not acked and not
    /// delivered. The NACK echoes its header so the sender can tell which frame it was.
    fn on_corrupt(&mut self, conn: ConnId, seq: u64, crc: u32) -> Result<()> {
        self.stats.corrupt_frames += 1;
        self.nacks.push_back((conn, seq, crc));
        // Count only where a real frame can be, so a damaged `seq` cannot grow the map.
        if seq < self.next || seq >= self.next + u64::from(self.config.window) {
            return Ok(());
        }
        let copies = self.corrupt.entry(seq).or_insert(0);
        *copies += 1;
        if *copies > CORRUPT_LIMIT {
            return Err(AmstError::FrameCorrupt {
                seq,
                copies: *copies,
            });
        }
        Ok(())
    }

    fn on_data(
        &mut self,
        conn: ConnId,
        seq: u64,
        payload: &[u8],
        wire: Option<&Bytes>,
    ) -> Result<()> {
        let window = u64::from(self.config.window);
        if seq >= self.next + window {
            return Err(AmstError::BeyondWindow {
                seq,
                next: self.next,
                window,
            });
        }
        if let Some((frames, _)) = self.fin {
            if seq >= frames {
                return Err(AmstError::Protocol(format!(
                    "frame {seq} after a FIN of {frames} frames"
                )));
            }
        }
        if seq < self.next || self.reorder.contains_key(&seq) {
            self.stats.duplicates += 1;
        } else {
            self.stats.frames += 1;
            self.stats.buffered_bytes += payload.len() as u64;
            self.reorder.insert(seq, keep(payload, wire));
            while let Some(data) = self.reorder.remove(&self.next) {
                self.stats.buffered_bytes -= data.len() as u64;
                self.stats.bytes_delivered += data.len() as u64;
                self.ready.push_back(data);
                self.next += 1;
            }
            if !self.corrupt.is_empty() {
                self.corrupt = self.corrupt.split_off(&self.next);
            }
            self.check_total()?;
        }
        // Ack duplicates too: the sender is waiting on them.
        self.last_conn = Some(conn);
        let ack = self.ack(seq);
        self.acks.push_back((conn, ack));
        if self.fin.is_some_and(|(frames, _)| frames == self.next) {
            // The FIN came before the last frames: ack it again now that the stream is whole.
            let ack = self.ack(FIN_SEQ);
            self.acks.push_back((conn, ack));
        }
        Ok(())
    }

    fn check_total(&self) -> Result<()> {
        if let Some((frames, bytes)) = self.fin {
            if self.next == frames && self.stats.bytes_delivered != bytes {
                return Err(AmstError::Protocol(format!(
                    "FIN declared {bytes} bytes, {} arrived",
                    self.stats.bytes_delivered
                )));
            }
        }
        Ok(())
    }

    fn open_window(&self) -> u32 {
        let unread = u32::try_from(self.ready.len()).unwrap_or(u32::MAX);
        self.config.window.saturating_sub(unread)
    }

    fn ack(&mut self, seq: u64) -> Ack {
        self.advertised = self.open_window();
        Ack {
            seq,
            cumulative: self.next,
            window: self.advertised,
        }
    }
}

/// The payload as `Bytes`: a slice of the buffer it was parsed from when it lies within it,
/// else a copy.
fn keep(payload: &[u8], wire: Option<&Bytes>) -> Bytes {
    let within = |w: &&Bytes| {
        let (start, end) = (w.as_ptr() as usize, w.as_ptr() as usize + w.len());
        let p = payload.as_ptr() as usize;
        p >= start && p + payload.len() <= end
    };
    match wire.filter(within) {
        Some(w) => w.slice_ref(payload),
        None => Bytes::copy_from_slice(payload),
    }
}

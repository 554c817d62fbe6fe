//! The driver's side of a path probe: it hands the sans-IO [`Probe`] the connections, acks and
//! timers, writes its PROBE frames and answers the caller. Every decision is the core's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_amst::frame::{self, Version};
use dwcp_amst::{ConnId, Probe, ProbeConfig, ProbeResult, Transmit};
use tokio::sync::{mpsc, oneshot};

use crate::gauge::{LinkGauge, LinkSample};
use crate::{Result, TransportError};

/// Payload of every PROBE frame: its content is ignored, so one shared buffer serves all.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A caller's request to probe the path before the stream, for at most `max`.
#[derive(Debug)]
pub struct ProbeRequest {
    max: Duration,
    reply: oneshot::Sender<Result<ProbeReport>>,
}

impl ProbeRequest {
    /// A request, and where its answer comes.
    pub fn new(max: Duration) -> (Self, oneshot::Receiver<Result<ProbeReport>>) {
        let (reply, rx) = oneshot::channel();
        (ProbeRequest { max, reply }, rx)
    }
}

/// Where a transfer takes its probe requests from: the receiving end of [`ProbeInbox::new`]'s
/// channel. Cloning shares it (so [`crate::SendOptions`] stays `Clone`); the first transfer to
/// run takes it.
#[derive(Debug, Clone)]
pub struct ProbeInbox(std::sync::Arc<std::sync::Mutex<Option<mpsc::Receiver<ProbeRequest>>>>);

impl ProbeInbox {
    /// An inbox, and the sender its caller requests probes with.
    pub fn new() -> (mpsc::Sender<ProbeRequest>, Self) {
        let (tx, rx) = mpsc::channel(4);
        (
            tx,
            ProbeInbox(std::sync::Arc::new(std::sync::Mutex::new(Some(rx)))),
        )
    }

    fn take(&self) -> Option<mpsc::Receiver<ProbeRequest>> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// What a probe measured, with each connection's kernel or quinn view at its end.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The core's measurement.
    pub result: ProbeResult,
    /// Each probed connection's [`LinkSample`] when the probe ended.
    pub links: Vec<(ConnId, LinkSample)>,
}

/// The probe in progress, if any, and where requests come from.
pub(crate) struct Probing {
    requests: Option<mpsc::Receiver<ProbeRequest>>,
    active: Option<(Probe, oneshot::Sender<Result<ProbeReport>>)>,
}

impl Probing {
    pub(crate) fn new(inbox: Option<&ProbeInbox>) -> Self {
        Probing {
            requests: inbox.and_then(ProbeInbox::take),
            active: None,
        }
    }

    /// The next request; never resolves without a caller.
    pub(crate) async fn next_request(&mut self) -> Option<ProbeRequest> {
        let Some(rx) = self.requests.as_mut() else {
            return std::future::pending().await;
        };
        let request = rx.recv().await;
        if request.is_none() {
            self.requests = None;
            return std::future::pending().await;
        }
        request
    }

    /// Starts a probe over the connections up now. One already running refuses the new one.
    pub(crate) fn start(
        &mut self,
        request: ProbeRequest,
        up: &HashMap<ConnId, Version>,
        stream_started: bool,
        now: Instant,
    ) {
        if self.active.is_some() {
            let _ = request.reply.send(Err(TransportError::Probe(
                "a probe is already running".into(),
            )));
            return;
        }
        let mut probe = Probe::new(ProbeConfig::new(request.max), now);
        for (&id, &version) in up {
            self.handle_up_of(&mut probe, id, version);
        }
        if stream_started {
            probe.handle_stream_waiting(now);
        }
        self.active = Some((probe, request.reply));
    }

    fn handle_up_of(&self, probe: &mut Probe, id: ConnId, version: Version) {
        if version.probes() {
            probe.handle_connection(id);
        } else {
            probe.handle_old_peer(id);
        }
    }

    pub(crate) fn handle_up(&mut self, id: ConnId, version: Version) {
        if let Some((mut probe, reply)) = self.active.take() {
            self.handle_up_of(&mut probe, id, version);
            self.active = Some((probe, reply));
        }
    }

    pub(crate) fn handle_retired(&mut self, id: ConnId) {
        if let Some((probe, _)) = self.active.as_mut() {
            probe.handle_retired(id);
        }
    }

    pub(crate) fn handle_lost(&mut self, id: ConnId, what: &str, now: Instant) {
        if let Some((probe, _)) = self.active.as_mut() {
            probe.handle_lost(id, what, now);
        }
    }

    pub(crate) fn handle_ack(&mut self, id: u64, now: Instant) {
        if let Some((probe, _)) = self.active.as_mut() {
            probe.handle_ack(id, now);
        }
    }

    /// Timers, the stream's first bytes, PROBE frames out, and the answer once it ended.
    pub(crate) fn step(
        &mut self,
        now: Instant,
        stream_waiting: bool,
        writers: &HashMap<ConnId, mpsc::UnboundedSender<Transmit>>,
        gauges: &HashMap<ConnId, LinkGauge>,
    ) {
        let Some((probe, _)) = self.active.as_mut() else {
            return;
        };
        if stream_waiting {
            probe.handle_stream_waiting(now);
        }
        probe.handle_timeout(now);
        while let Some(tx) = probe.poll_transmit(now) {
            let len = (tx.len as usize).min(ZEROS.len());
            if let Some(w) = writers.get(&tx.conn) {
                let _ = w.send(Transmit {
                    conn: tx.conn,
                    seq: None,
                    header: frame::probe_header(tx.id, len).to_vec(),
                    payload: Bytes::from_static(&ZEROS[..len]),
                });
            }
        }
        let Some(outcome) = probe.poll_outcome() else {
            return;
        };
        let Some((_, reply)) = self.active.take() else {
            return;
        };
        let answer = outcome
            .map(|result| ProbeReport {
                links: result
                    .connections
                    .iter()
                    .map(|c| {
                        (
                            c.id,
                            gauges.get(&c.id).map(LinkGauge::sample).unwrap_or_default(),
                        )
                    })
                    .collect(),
                result,
            })
            .map_err(|e| TransportError::Probe(e.to_string()));
        let _ = reply.send(answer);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.active.as_ref().and_then(|(p, _)| p.poll_timeout())
    }

    /// The transfer ended (done, failed or cancelled) with a probe running: it fails saying so.
    pub(crate) fn end(&mut self, why: &str) {
        if let Some((_, reply)) = self.active.take() {
            let _ = reply.send(Err(TransportError::Probe(format!(
                "the transfer ended during the probe: {why}"
            ))));
        }
    }
}

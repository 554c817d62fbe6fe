//! What the layer under AMST knows about one connection: the kernel's `TCP_INFO` for TCP + TLS,
//! quinn's path stats for QUIC. The driver reads it at each stats refresh (not per frame) and
//! attaches it to the connection's stats; the sans-IO core does not need it and never sees it.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// One reading of a connection's congestion state. Fields are `None` where the kernel or quinn
/// does not report them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkSample {
    /// Congestion window in bytes (TCP: `snd_cwnd × snd_mss`).
    pub cwnd_bytes: Option<u64>,
    /// The rate the kernel paces at, bytes per second (TCP only).
    pub pacing_rate: Option<f64>,
    /// The kernel's most recent delivery-rate sample, bytes per second (TCP only).
    pub delivery_rate: Option<f64>,
    /// Cumulative resends: TCP's retransmitted segments, QUIC's lost packets (quinn sends the
    /// data of each lost packet again).
    pub retransmits: Option<u64>,
    /// Smoothed RTT of the transport below, without AMST's queueing.
    pub rtt: Option<Duration>,
    /// The smallest RTT it has seen.
    pub min_rtt: Option<Duration>,
    /// Congestion events (QUIC only).
    pub congestion_events: Option<u64>,
}

/// A handle that reads a live connection's [`LinkSample`]. Hold it only while the connection is
/// in use: for TCP it is a duplicate of the socket's descriptor, which keeps the socket open.
#[derive(Debug)]
pub enum LinkGauge {
    /// The TCP socket under TLS.
    Tcp(OwnedFd),
    /// The QUIC connection.
    Quic(quinn::Connection),
}

impl LinkGauge {
    /// A gauge on a TCP socket, or `None` if its descriptor cannot be duplicated.
    pub(crate) fn tcp(sock: &impl AsFd) -> Option<Self> {
        sock.as_fd().try_clone_to_owned().ok().map(LinkGauge::Tcp)
    }

    /// Reads the connection's state now; all `None` if the kernel refuses.
    pub fn sample(&self) -> LinkSample {
        match self {
            LinkGauge::Tcp(fd) => tcp_sample(fd).unwrap_or_default(),
            LinkGauge::Quic(conn) => {
                let path = conn.stats().path;
                LinkSample {
                    cwnd_bytes: Some(path.cwnd),
                    pacing_rate: None,
                    delivery_rate: None,
                    retransmits: Some(path.lost_packets),
                    rtt: Some(path.rtt),
                    min_rtt: Some(path.min_rtt).filter(|d| !d.is_zero()),
                    congestion_events: Some(path.congestion_events),
                }
            }
        }
    }
}

/// `getsockopt(TCP_INFO)`. Older kernels fill a shorter struct; fields past what they wrote are
/// left out rather than read as zero.
#[allow(unsafe_code)]
fn tcp_sample(fd: &OwnedFd) -> Option<LinkSample> {
    use std::mem::{offset_of, size_of, MaybeUninit};
    use std::os::fd::AsRawFd;
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).ok()?;
    // SAFETY: the fd is a live socket we own; `info` is a writable buffer of `len` bytes, and the
    // kernel writes at most `len` bytes and reports how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zero-initialised, then (partly) written by the kernel: every bit pattern of this
    // plain-integer struct is valid.
    let info = unsafe { info.assume_init() };
    let written = usize::try_from(len).ok()?;
    let has = |end: usize| written >= end;
    let end_of = |offset: usize, size: usize| offset + size;
    let us = |v: u32| Duration::from_micros(u64::from(v));
    // `u64::MAX` (~0) means "unlimited / not measured" in the kernel's pacing rate.
    let rate = |v: u64| (v != u64::MAX && v != 0).then_some(v as f64);
    Some(LinkSample {
        cwnd_bytes: Some(u64::from(info.tcpi_snd_cwnd) * u64::from(info.tcpi_snd_mss)),
        pacing_rate: has(end_of(offset_of!(libc::tcp_info, tcpi_pacing_rate), 8))
            .then_some(info.tcpi_pacing_rate)
            .and_then(rate),
        delivery_rate: has(end_of(offset_of!(libc::tcp_info, tcpi_delivery_rate), 8))
            .then_some(info.tcpi_delivery_rate)
            .and_then(rate),
        retransmits: has(end_of(offset_of!(libc::tcp_info, tcpi_total_retrans), 4))
            .then_some(u64::from(info.tcpi_total_retrans)),
        rtt: (info.tcpi_rtt > 0).then(|| us(info.tcpi_rtt)),
        min_rtt: has(end_of(offset_of!(libc::tcp_info, tcpi_min_rtt), 4))
            .then_some(info.tcpi_min_rtt)
            .filter(|&v| v > 0 && v != u32::MAX)
            .map(us),
        congestion_events: None,
    })
}

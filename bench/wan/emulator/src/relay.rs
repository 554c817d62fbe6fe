//! Fallback where network namespaces are unavailable: a TCP relay on loopback that delays and
//! rate-caps each direction of every connection through it.
//!
//! A byte stream cannot lose bytes, so there is no loss, and a full bottleneck pushes back on the
//! sender (TCP flow control) instead of dropping. The relay holds at most what the emulated path
//! would: rate x (delay + jitter) on the wire plus the bottleneck queue.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::link::{Link, LinkConfig, until};
use crate::rate_schedule::RateSchedule;
use crate::stats::{DirectionCounters, PathCounters};
use crate::token_bucket::TokenBucket;

/// Bytes read from a socket at a time: one "packet" of the relay's link. Small enough that the
/// rate cap paces smoothly, large enough to keep syscalls cheap at Gbit/s.
pub const CHUNK: u32 = 16 * 1024;
/// What the relay may hold per direction when the rate is uncapped (delay x line rate is unbounded).
const UNCAPPED_HOLD_BYTES: u64 = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts on `listen` forever; each connection gets a fresh connection to `target` and one thread
/// per direction. With a rate schedule, every connection follows it from the one `epoch`. With
/// `shared`, all connections share one bottleneck per direction (else each has its own rate).
/// Returns only if the listener fails.
pub fn serve(
    listener: TcpListener,
    target: SocketAddr,
    config: LinkConfig,
    schedule: Option<(Arc<RateSchedule>, Instant)>,
    shared: bool,
    seed: u64,
    counters: Arc<PathCounters>,
) -> io::Result<()> {
    let hold = hold_limit(&config);
    let next_seed = AtomicU64::new(seed);
    // The queue limit is enforced by back-pressure (`hold`), never by dropping stream bytes.
    let config = LinkConfig {
        loss: 0.0,
        queue_bytes: u64::MAX,
        ..config
    };
    let bucket = || {
        Arc::new(Mutex::new(TokenBucket::new(
            config.rate_bps,
            config.burst_bytes,
            config.queue_bytes,
        )))
    };
    let buckets = shared.then(|| [bucket(), bucket()]);
    let new_link = |seed, direction: usize| {
        let mut link = Link::new(config, seed);
        if let Some(b) = &buckets {
            link = link.with_shared_bottleneck(Arc::clone(&b[direction]));
        }
        match &schedule {
            Some((s, epoch)) => link.with_schedule(Arc::clone(s), *epoch),
            None => link,
        }
    };
    for client in listener.incoming() {
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                eprintln!("dwcp-wanem: relay: accept: {e}");
                continue;
            }
        };
        let server = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "dwcp-wanem: relay: connect {target}: {e}; closing the client connection"
                );
                continue;
            }
        };
        for s in [&client, &server] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        let seed_a = next_seed.fetch_add(2, Relaxed);
        let pumps = [
            Pump::new(
                "relay-a-to-b",
                &client,
                &server,
                new_link(seed_a, 0),
                hold,
                Arc::clone(&counters.a_to_b),
            )?,
            Pump::new(
                "relay-b-to-a",
                &server,
                &client,
                new_link(seed_a + 1, 1),
                hold,
                Arc::clone(&counters.b_to_a),
            )?,
        ];
        for pump in pumps {
            std::thread::Builder::new()
                .name(pump.name.into())
                .spawn(move || pump.run())?;
        }
    }
    Ok(())
}

fn hold_limit(config: &LinkConfig) -> u64 {
    match config.rate_bps {
        Some(rate) => {
            let wire = config.delay.base + config.delay.jitter;
            (rate as f64 / 8.0 * wire.as_secs_f64()) as u64
                + config.queue_bytes.min(UNCAPPED_HOLD_BYTES)
        }
        None => UNCAPPED_HOLD_BYTES,
    }
    .max(u64::from(CHUNK) * 2)
}

/// One direction of one relayed connection.
struct Pump {
    name: &'static str,
    src: TcpStream,
    dst: TcpStream,
    link: Link<Vec<u8>>,
    hold: u64,
    stats: Arc<DirectionCounters>,
}

impl Pump {
    fn new(
        name: &'static str,
        src: &TcpStream,
        dst: &TcpStream,
        link: Link<Vec<u8>>,
        hold: u64,
        stats: Arc<DirectionCounters>,
    ) -> io::Result<Self> {
        Ok(Self {
            name,
            src: src.try_clone()?,
            dst: dst.try_clone()?,
            link,
            hold,
            stats,
        })
    }

    fn run(mut self) {
        if let Err(e) = self.pump() {
            // Tear down both directions, like a path that went away.
            let _ = self.src.shutdown(Shutdown::Both);
            let _ = self.dst.shutdown(Shutdown::Both);
            if !matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
            ) {
                eprintln!("dwcp-wanem: {}: {e}", self.name);
            }
        }
        self.stats
            .add_in_flight(-(self.link.in_flight_packets() as i64));
    }

    fn pump(&mut self) -> io::Result<()> {
        let stats = Arc::clone(&self.stats);
        let mut pending: Option<(Vec<u8>, usize)> = None;
        let mut eof = false;
        loop {
            // Write side: finish the partial chunk, then everything that is due.
            let mut write_blocked = false;
            loop {
                if pending.is_none() {
                    pending = self.link.poll_release(Instant::now()).map(|c| (c, 0));
                    if pending.is_some() {
                        stats.add_in_flight(-1);
                    }
                }
                let Some((chunk, off)) = pending.as_mut() else {
                    break;
                };
                match self.dst.write(&chunk[*off..]) {
                    Ok(n) => {
                        *off += n;
                        if *off == chunk.len() {
                            stats.forwarded(chunk.len());
                            pending = None;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        write_blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // Read side: only while the emulated path has room, so a slow path slows the sender.
            let mut read_blocked = eof;
            while !eof && self.link.in_flight_bytes() < self.hold {
                let mut buf = vec![0u8; CHUNK as usize];
                match self.src.read(&mut buf) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        buf.truncate(n);
                        stats.received(n);
                        stats.add_in_flight(1);
                        // Loss is off and the queue unbounded here, so the link always accepts.
                        let _ = self.link.handle_packet(Instant::now(), buf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        read_blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if eof && pending.is_none() && self.link.in_flight_packets() == 0 {
                // Pass the half-close on, after the last byte has crossed the path.
                return self.dst.shutdown(Shutdown::Write);
            }
            let want_read = read_blocked && !eof && self.link.in_flight_bytes() < self.hold;
            let deadline = if pending.is_some() {
                None
            } else {
                self.link.poll_timeout()
            };
            if want_read || write_blocked || deadline.is_some() {
                self.wait(want_read, write_blocked, deadline)?;
            }
        }
    }

    fn wait(&self, read: bool, write: bool, deadline: Option<Instant>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut fds = [
            libc::pollfd {
                fd: if read { self.src.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if write { self.dst.as_raw_fd() } else { -1 },
                events: libc::POLLOUT,
                revents: 0,
            },
        ];
        let timeout = deadline.map(|d| {
            let left = until(Instant::now(), d);
            libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            }
        });
        let timeout_ptr = timeout
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: fds and timeout outlive the call; negative fds are ignored by poll.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, timeout_ptr, std::ptr::null()) };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delay_line::{DelayModel, JitterDist};

    /// Real loopback sockets: an echo server behind the relay, 20 ms each way, 80 Mbit/s.
    #[test]
    fn relays_a_stream_both_ways_with_delay_rate_and_half_close() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            s.write_all(&all).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        });
        let relay = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let config = LinkConfig {
            delay: DelayModel {
                base: Duration::from_millis(20),
                jitter: Duration::ZERO,
                dist: JitterDist::Uniform,
                allow_reorder: false,
            },
            loss: 0.0,
            rate_bps: Some(80_000_000),
            burst_bytes: u64::from(CHUNK),
            queue_bytes: 1_000_000,
        };
        let counters = Arc::new(PathCounters::default());
        let c = Arc::clone(&counters);
        std::thread::spawn(move || serve(relay, target, config, None, false, 1, c));

        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let mut client = TcpStream::connect(relay_addr).unwrap();
        client.write_all(&payload).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        let elapsed = started.elapsed();

        assert!(
            back == payload,
            "stream corrupted: {} of {} bytes back",
            back.len(),
            payload.len()
        );
        // 1 MB at 80 Mbit/s is 100 ms per direction, plus 20 ms of delay each way.
        assert!(
            elapsed >= Duration::from_millis(220),
            "{elapsed:?} is faster than the emulated path"
        );
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let v: serde_json::Value =
            serde_json::from_str(&counters.json_line("final", "relay", started)).unwrap();
        assert_eq!(v["a_to_b"]["tx_bytes"], 1_000_000);
        assert_eq!(v["b_to_a"]["tx_bytes"], 1_000_000);
    }
}

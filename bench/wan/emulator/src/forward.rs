//! The namespace forwarder: one thread per direction reads packets from one TUN, runs them through
//! that direction's `Link`, and writes them into the other TUN when they fall due.
//!
//! One thread per direction (not one epoll loop) so the two directions use both cores and a
//! backlog in one never delays the other. Each thread sleeps in ppoll until its TUN is readable or
//! its next packet is due, whichever is first.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::link::{Drop, Link, LinkConfig, until};
use crate::rate_schedule::RateSchedule;
use crate::stats::DirectionCounters;
use crate::tun::Tun;

/// Packets read in one go before releasing due packets again; bounds how late a release can be
/// while a flood arrives.
const READ_BATCH: usize = 64;
/// Free buffers kept for reuse; past this, buffers go back to the allocator.
const POOL_LIMIT: usize = 8192;
/// Timer slack for the forwarding threads. The default 50 us would smear releases at 10 Gbit/s,
/// where a 9000-byte packet takes 7 us.
const TIMER_SLACK_NS: libc::c_ulong = 1_000;
/// Real-time priority of the forwarding threads when asked for: above every normal process, low
/// among real-time ones. The threads block in ppoll when idle, and the kernel's RT throttling
/// (95% by default) still leaves the machine usable if they ever spin.
pub const REALTIME_PRIORITY: i32 = 10;

/// One direction: from `input` to `output`.
pub struct Direction {
    /// Thread name, e.g. "a-to-b".
    pub name: &'static str,
    /// Device the packets come from.
    pub input: Arc<Tun>,
    /// Device they go to.
    pub output: Arc<Tun>,
    /// Shaping of this direction.
    pub config: LinkConfig,
    /// Rate schedule and its time zero, if the rate follows one.
    pub schedule: Option<(Arc<RateSchedule>, Instant)>,
    /// Seed of this direction's loss and jitter.
    pub seed: u64,
    /// Largest packet (the TUN MTU).
    pub mtu: usize,
    /// Where to count.
    pub counters: Arc<DirectionCounters>,
    /// Run at SCHED_FIFO, so the path is not starved by the very processes whose traffic it
    /// carries (on 2 cores the sender and receiver otherwise overflow the TUN ring now and then).
    pub realtime: bool,
}

impl Direction {
    /// Starts the forwarding thread. It runs until the process exits; a fatal I/O error ends the
    /// process, since a half-working path would quietly skew a bench.
    pub fn spawn(self) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(self.name.to_string())
            .spawn(move || {
                if let Err(e) = self.run() {
                    eprintln!("dwcp-wanem: {}: fatal: {e}", self.name);
                    std::process::exit(1);
                }
            })
    }

    fn run(&self) -> io::Result<()> {
        // SAFETY: prctl with an integer argument affects only this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, TIMER_SLACK_NS) };
        if self.realtime {
            let param = libc::sched_param {
                sched_priority: REALTIME_PRIORITY,
            };
            // SAFETY: sets this thread's own policy from a valid sched_param.
            let rc = unsafe {
                libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param)
            };
            if rc != 0 {
                let e = io::Error::from_raw_os_error(rc);
                eprintln!(
                    "dwcp-wanem: {}: cannot use SCHED_FIFO ({e}); forwarding at normal priority",
                    self.name
                );
            }
        }
        let mut link: Link<Vec<u8>> = Link::new(self.config, self.seed);
        if let Some((schedule, epoch)) = &self.schedule {
            link = link.with_schedule(Arc::clone(schedule), *epoch);
        }
        let mut pool: Vec<Vec<u8>> = Vec::new();
        loop {
            let released = self.release_due(&mut link, &mut pool);
            let read = self.read_batch(&mut link, &mut pool)?;
            self.counters.add_in_flight(read as i64 - released as i64);
            if read == 0 && released == 0 {
                self.wait(link.poll_timeout())?;
            }
        }
    }

    /// Writes every packet that is due; returns how many left the line.
    fn release_due(&self, link: &mut Link<Vec<u8>>, pool: &mut Vec<Vec<u8>>) -> usize {
        let now = Instant::now();
        let mut released = 0;
        while let Some(packet) = link.poll_release(now) {
            match self.output.write(&packet) {
                Ok(_) => self.counters.forwarded(packet.len()),
                Err(_) => self.counters.write_failed(),
            }
            released += 1;
            recycle(pool, packet);
        }
        released
    }

    /// Reads up to a batch of packets into the link; returns how many entered it (not dropped).
    fn read_batch(&self, link: &mut Link<Vec<u8>>, pool: &mut Vec<Vec<u8>>) -> io::Result<usize> {
        let mut entered = 0;
        for _ in 0..READ_BATCH {
            let mut buf = pool.pop().unwrap_or_default();
            buf.resize(self.mtu, 0);
            let n = match self.input.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    recycle(pool, buf);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("read from {}: {e}", self.input.name()),
                    ));
                }
            };
            buf.truncate(n);
            self.counters.received(n);
            match link.handle_packet(Instant::now(), buf) {
                Ok(_) => entered += 1,
                Err((why, buf)) => {
                    match why {
                        Drop::Lost => self.counters.lost(),
                        Drop::QueueFull => self.counters.queue_dropped(),
                    }
                    recycle(pool, buf);
                }
            }
        }
        Ok(entered)
    }

    /// Sleeps until the input is readable or `deadline` passes.
    fn wait(&self, deadline: Option<Instant>) -> io::Result<()> {
        let mut fds = [libc::pollfd {
            fd: self.input.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
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
        // SAFETY: fds and timeout outlive the call; a null sigmask leaves the mask alone.
        let rc = unsafe { libc::ppoll(fds.as_mut_ptr(), 1, timeout_ptr, std::ptr::null()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

fn recycle(pool: &mut Vec<Vec<u8>>, buf: Vec<u8>) {
    if pool.len() < POOL_LIMIT {
        pool.push(buf);
    }
}

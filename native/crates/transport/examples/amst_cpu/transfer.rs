//! One measured transfer: this process sends, a child process (this binary, `receive`) receives,
//! over TCP + TLS 1.3 on loopback. Each side reports the CPU time it spent on the transfer alone.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dwcp_transport::pki::{generate_cluster_ca, issue_node_certificate, NodeCertRequest};
use dwcp_transport::{
    send_stream, Congestion, Dialer, LinkKind, Listener, ListenerConfig, NodeIdentity,
    ReceiveOptions, SendOptions, StreamCount,
};
use tokio::sync::{mpsc, watch};

use crate::Error;

/// The producer hands the sender pieces of this size (as the addon's `write` does).
const PIECE: usize = 1 << 20;

/// What `pair` measured, as one `key=value` line on stdout (the report parses it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub bytes: u64,
    /// From the sender's start to the receiver's ack of the end of the stream.
    pub seconds: f64,
    pub send_cpu: Cpu,
    pub recv_cpu: Cpu,
    pub send_pid: u32,
    pub recv_pid: u32,
    /// When the transfer started and ended, CLOCK_MONOTONIC seconds (perf's `-k mono` clock).
    pub start: f64,
    pub end: f64,
}

/// User and system CPU seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub user: f64,
    pub sys: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.user + self.sys
    }

    /// This process's CPU time so far (all threads).
    #[allow(unsafe_code)]
    pub fn now() -> Cpu {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a writable rusage; getrusage only writes into it.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        if rc != 0 {
            return Cpu::default();
        }
        // SAFETY: zero-initialised, then filled by the kernel; plain integers.
        let usage = unsafe { usage.assume_init() };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu {
            user: secs(usage.ru_utime),
            sys: secs(usage.ru_stime),
        }
    }

    pub(crate) fn since(self, start: Cpu) -> Cpu {
        Cpu {
            user: self.user - start.user,
            sys: self.sys - start.sys,
        }
    }
}

/// CLOCK_MONOTONIC in seconds: the clock `perf record -k mono` stamps samples with.
#[allow(unsafe_code)]
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl Sample {
    pub fn to_line(self) -> String {
        format!(
            "result bytes={} seconds={:.6} send_user={:.6} send_sys={:.6} recv_user={:.6} recv_sys={:.6} send_pid={} recv_pid={} start={:.6} end={:.6}",
            self.bytes,
            self.seconds,
            self.send_cpu.user,
            self.send_cpu.sys,
            self.recv_cpu.user,
            self.recv_cpu.sys,
            self.send_pid,
            self.recv_pid,
            self.start,
            self.end
        )
    }

    pub fn parse(line: &str) -> Option<Sample> {
        let rest = line.strip_prefix("result ")?;
        let mut s = Sample::default();
        for field in rest.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            let f = || value.parse::<f64>().ok();
            match key {
                "bytes" => s.bytes = value.parse().ok()?,
                "seconds" => s.seconds = f()?,
                "send_user" => s.send_cpu.user = f()?,
                "send_sys" => s.send_cpu.sys = f()?,
                "recv_user" => s.recv_cpu.user = f()?,
                "recv_sys" => s.recv_cpu.sys = f()?,
                "send_pid" => s.send_pid = value.parse().ok()?,
                "recv_pid" => s.recv_pid = value.parse().ok()?,
                "start" => s.start = f()?,
                "end" => s.end = f()?,
                _ => {}
            }
        }
        Some(s)
    }

    /// Sender CPU seconds per GB (10^9 bytes) moved.
    pub fn send_per_gb(&self) -> f64 {
        self.send_cpu.total() / (self.bytes as f64 / 1e9)
    }

    /// Receiver CPU seconds per GB moved.
    pub fn recv_per_gb(&self) -> f64 {
        self.recv_cpu.total() / (self.bytes as f64 / 1e9)
    }

    /// Goodput in Gbit/s.
    pub fn gbit(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.seconds / 1e9
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    // Two workers, as the addon's runtime has on this 2-core machine.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Sends `bytes` over `streams` connections to a receiver in a child process; with `record`,
/// under `perf record` into that file, attached to both processes once they are up.
pub fn pair(bytes: u64, streams: u32, record: Option<&str>) -> Result<Sample, Error> {
    let ca = generate_cluster_ca("amst-cpu")?;
    let server = issue_node_certificate(&ca, &NodeCertRequest::new("node-b"))?;
    let client = issue_node_certificate(&ca, &NodeCertRequest::new("node-a"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("receive")
        .env("AMST_CPU_CA", &ca.cert_pem)
        .env("AMST_CPU_CERT", &server.cert_pem)
        .env("AMST_CPU_KEY", &server.key_pem)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
    let addr = lines
        .next()
        .ok_or("the receiver ended before listening")??
        .strip_prefix("listening ")
        .ok_or("the receiver did not say where it listens")?
        .parse()?;
    // Attached rather than started with the processes: perf then reads their mappings from
    // /proc, where following a fork and exec sometimes lost the child's and so its call chains.
    let perf = match record {
        Some(path) => Some(crate::profile::attach(
            path,
            &[std::process::id(), child.id()],
        )?),
        None => None,
    };
    let identity = NodeIdentity::from_pem(&ca.cert_pem, &client.cert_pem, &client.key_pem)?;
    let dialer = Dialer::new(
        LinkKind::Tcp,
        addr,
        "node-b",
        &identity,
        Congestion::Default,
    )?;
    let rt = runtime()?;
    let (seconds, send_cpu, start, end) = rt.block_on(async move {
        let pattern = (0..PIECE).map(|i| u8::try_from((i * 31 + 7) % 251).unwrap_or(0));
        let piece = Bytes::from(pattern.collect::<Vec<u8>>());
        let (tx, rx) = mpsc::channel(16);
        let (_cancel_tx, cancel) = watch::channel(false);
        let options = SendOptions {
            streams: StreamCount::Fixed(streams),
            stats_interval: Duration::from_secs(1),
            ..SendOptions::default()
        };
        let cpu = Cpu::now();
        let start = monotonic();
        let started = Instant::now();
        tokio::spawn(async move {
            let mut left = bytes;
            while left > 0 {
                let n = left.min(PIECE as u64);
                // n <= PIECE, a usize.
                #[allow(clippy::cast_possible_truncation)]
                let part = piece.slice(..n as usize);
                if tx.send(part).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        // On a worker, as the addon runs it, not on this thread.
        tokio::spawn(send_stream(dialer, rx, options, cancel, None)).await??;
        let seconds = started.elapsed().as_secs_f64();
        Ok::<_, Error>((seconds, Cpu::now().since(cpu), start, monotonic()))
    })?;
    drop(rt);
    if let Some(perf) = perf {
        crate::profile::detach(perf)?;
    }
    let done = lines
        .next()
        .ok_or("the receiver ended without a result")??;
    // Closing its stdin lets the receiver go: it stays up until the sender has its final ack.
    drop(child.stdin.take());
    child.wait()?;
    let mut sample = Sample::parse(&done).ok_or_else(|| format!("bad receiver line: {done}"))?;
    if sample.bytes != bytes {
        return Err(format!("the receiver got {} of {bytes} bytes", sample.bytes).into());
    }
    sample.seconds = seconds;
    sample.send_cpu = send_cpu;
    sample.send_pid = std::process::id();
    sample.start = start;
    sample.end = end;
    Ok(sample)
}

/// The child: accepts one transfer, reads it to the end, reports its bytes and CPU time.
pub fn receive() -> Result<(), Error> {
    let env = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
    let identity = NodeIdentity::from_pem(
        &env("AMST_CPU_CA")?,
        &env("AMST_CPU_CERT")?,
        &env("AMST_CPU_KEY")?,
    )?;
    let rt = runtime()?;
    let (bytes, cpu) = rt.block_on(async move {
        let config = ListenerConfig {
            kind: LinkKind::Tcp,
            addr: "127.0.0.1:0".parse()?,
            congestion: Congestion::Default,
            receive: ReceiveOptions::default(),
        };
        let listener = Listener::bind(config, &identity).await?;
        let mut out = std::io::stdout();
        writeln!(out, "listening {}", listener.local_addr())?;
        out.flush()?;
        let cpu = Cpu::now();
        let mut incoming = listener.accept().await.ok_or("listener closed")?;
        let mut bytes = 0u64;
        while let Some(piece) = incoming.read().await? {
            bytes += piece.len() as u64;
        }
        Ok::<_, Error>((bytes, Cpu::now().since(cpu)))
    })?;
    let sample = Sample {
        bytes,
        recv_cpu: cpu,
        recv_pid: std::process::id(),
        ..Sample::default()
    };
    println!("{}", sample.to_line());
    // Its runtime keeps writing acks (the FIN's last) until the sender is done and says so.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(rt);
    Ok(())
}

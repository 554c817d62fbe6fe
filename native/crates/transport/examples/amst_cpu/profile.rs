//! One transfer under `perf record` (software clock sampling, DWARF call chains), its samples
//! sorted into what the CPU was doing: AES-GCM, each copy of the payload (named by its caller),
//! the kernel's TCP work, wake-ups, the allocator, tokio, AMST itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::transfer::Sample;
use crate::Error;

/// Sampling rate: ~2 kHz per CPU.
const FREQUENCY: &str = "1999";

/// What every sample is counted as, in the order reports list them.
pub const CATEGORIES: &[&str] = &[
    "TLS: AES-GCM seal/open (ring)",
    "copy: payload into frames (Sender::write)",
    "copy: plaintext into TLS records (rustls)",
    "copy: decrypted record into rustls' plaintext buffer",
    "copy: plaintext out of rustls into the read buffer",
    "copy: frame into the reorder buffer (Receiver)",
    "copy: read buffer growth (BytesMut::reserve)",
    "copy: other",
    "CRC-32 (crc32fast)",
    "allocator (malloc/free)",
    "tokio runtime (tasks, channels, timers)",
    "rustls record layer (framing, buffers)",
    "AMST core (dwcp_amst)",
    "AMST driver (dwcp_transport)",
    "other user space",
    "kernel: copy to/from user (TCP payload)",
    "kernel: page faults (fresh buffer pages)",
    "kernel: TCP send, loopback delivery included",
    "kernel: TCP receive",
    "kernel: memory mapping (mmap, munmap, madvise)",
    "kernel: wake-ups and waits (futex, epoll, scheduler)",
    "kernel: other",
];

/// One process's samples.
#[derive(Debug, Clone, Default)]
pub struct RoleProfile {
    pub samples: u64,
    /// Samples per entry of [`CATEGORIES`].
    pub categories: Vec<u64>,
    /// The most frequent functions the CPU was in, with their sample counts.
    pub top_symbols: Vec<(String, u64)>,
    /// Who called memcpy/memmove in user space, with sample counts.
    pub copy_callers: Vec<(String, u64)>,
}

impl RoleProfile {
    pub fn share(&self, category: usize) -> f64 {
        self.categories[category] as f64 / self.samples.max(1) as f64
    }
}

/// The sender's and the receiver's profile of one transfer.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub sender: RoleProfile,
    pub receiver: RoleProfile,
}

/// Runs `exe pair`, which has perf record it, and sorts its samples taken during the transfer.
pub fn record(exe: &Path, mib: u64, streams: u32) -> Result<(Sample, Profile), Error> {
    let data = std::env::temp_dir().join(format!("amst-cpu-{}.perf", std::process::id()));
    let out = Command::new(exe)
        .args(["pair", "--mib", &mib.to_string()])
        .args(["--streams", &streams.to_string()])
        .arg("--record")
        .arg(&data)
        .stderr(Stdio::inherit())
        .output()?;
    let sample = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(Sample::parse)
        .ok_or_else(|| format!("pair --record {}: no result from the transfer", out.status))?;
    let profile = sort(&data, &sample);
    let _ = std::fs::remove_file(&data);
    Ok((sample, profile?))
}

/// Starts `perf record` on running processes, and gives it time to read their mappings.
pub fn attach(path: &str, pids: &[u32]) -> Result<Child, Error> {
    let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
    let child = Command::new("perf")
        .args(["record", "-q", "-F", FREQUENCY, "-k", "mono"])
        .args([
            "--call-graph",
            "dwarf,16384",
            "-o",
            path,
            "-p",
            &pids.join(","),
        ])
        .spawn()
        .map_err(|e| format!("perf record: {e} (install linux-perf)"))?;
    std::thread::sleep(Duration::from_secs(1));
    Ok(child)
}

/// Stops `perf record` as Ctrl-C would, so it writes a complete file.
#[allow(unsafe_code)]
pub fn detach(mut perf: Child) -> Result<(), Error> {
    let pid = libc::pid_t::try_from(perf.id())?;
    // SAFETY: a plain syscall on the pid of a child we started and have not yet waited for.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = perf.wait()?;
    // perf ends by re-raising the SIGINT once the file is written.
    let interrupted = std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT);
    if !status.success() && !interrupted {
        return Err(format!("perf record ended with {status}").into());
    }
    Ok(())
}

/// One stack: its top frame first, as (symbol, object).
type Stack = Vec<(String, String)>;

fn sort(data: &Path, sample: &Sample) -> Result<Profile, Error> {
    let mut script = Command::new("perf")
        .args(["script", "-F", "pid,time,ip,sym,dso", "--no-inline", "-i"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let lines = BufReader::new(script.stdout.take().ok_or("no perf script output")?).lines();
    let mut tally = [Tally::default(), Tally::default()];
    let mut current: Option<(u32, f64)> = None;
    let mut stack: Stack = Vec::new();
    let mut flush = |header: Option<(u32, f64)>, stack: &mut Stack| {
        if let Some((pid, time)) = header {
            let in_window = time >= sample.start && time <= sample.end;
            let role = if pid == sample.send_pid {
                Some(0)
            } else if pid == sample.recv_pid {
                Some(1)
            } else {
                None
            };
            if let (Some(role), true, false) = (role, in_window, stack.is_empty()) {
                tally[role].add(stack);
            }
        }
        stack.clear();
    };
    for line in lines {
        let line = line?;
        if line.trim().is_empty() {
            flush(current.take(), &mut stack);
        } else if line.starts_with('\t') {
            if let Some(frame) = parse_frame(&line) {
                stack.push(frame);
            }
        } else {
            // A sample's header (pid, time); its frames follow, one per line, indented by a tab.
            flush(current.take(), &mut stack);
            current = parse_header(&line);
        }
    }
    flush(current.take(), &mut stack);
    script.wait()?;
    let [sender, receiver] = tally;
    Ok(Profile {
        sender: sender.finish(),
        receiver: receiver.finish(),
    })
}

/// `"31342 11952.698635: "`: the pid and the time (CLOCK_MONOTONIC seconds, from `-k mono`).
fn parse_header(line: &str) -> Option<(u32, f64)> {
    let mut parts = line.split_whitespace();
    let pid = parts.next()?.split('/').next()?.parse().ok()?;
    let time = parts.next()?.trim_end_matches(':').parse().ok()?;
    Some((pid, time))
}

/// `"\t ffffffff81463b80 __css_rstat_updated ([kernel.kallsyms])"`.
fn parse_frame(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (_, rest) = line.split_once(' ')?;
    let open = rest.rfind(" (")?;
    let sym = rest[..open].trim();
    let dso = rest[open + 2..].trim_end_matches(')');
    Some((strip_offset(sym).to_string(), dso.to_string()))
}

fn strip_offset(sym: &str) -> &str {
    match sym.rfind("+0x") {
        Some(at) => &sym[..at],
        None => sym,
    }
}

#[derive(Default)]
struct Tally {
    samples: u64,
    categories: Vec<u64>,
    symbols: HashMap<String, u64>,
    copy_callers: HashMap<String, u64>,
}

impl Tally {
    fn add(&mut self, stack: &Stack) {
        if self.categories.is_empty() {
            self.categories = vec![0; CATEGORIES.len()];
        }
        self.samples += 1;
        let (category, caller) = classify(stack);
        self.categories[category] += 1;
        *self.symbols.entry(short(&stack[0].0)).or_default() += 1;
        if let Some(caller) = caller {
            *self.copy_callers.entry(short(&caller)).or_default() += 1;
        }
    }

    fn finish(self) -> RoleProfile {
        let top = |m: HashMap<String, u64>, n: usize| {
            let mut v: Vec<(String, u64)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(n);
            v
        };
        RoleProfile {
            samples: self.samples,
            categories: if self.categories.is_empty() {
                vec![0; CATEGORIES.len()]
            } else {
                self.categories
            },
            top_symbols: top(self.symbols, 15),
            copy_callers: top(self.copy_callers, 8),
        }
    }
}

/// Drops generic parameters and closure suffixes, which make names unreadable in a table.
fn short(sym: &str) -> String {
    let mut out = String::with_capacity(sym.len());
    let mut depth = 0u32;
    for c in sym.chars() {
        match c {
            '<' => {
                depth += 1;
                if depth == 1 {
                    out.push('<');
                }
            }
            '>' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    out.push('>');
                }
            }
            _ if depth <= 1 => out.push(c),
            _ => {}
        }
    }
    out.replace("::{{closure}}", "").replace('|', "/")
}

fn is_kernel(frame: &(String, String)) -> bool {
    frame.1.contains("kernel")
}

fn is_memcpy(sym: &str) -> bool {
    sym.starts_with("__memmove")
        || sym.starts_with("__memcpy")
        || sym == "memcpy"
        || sym == "memmove"
}

fn category(name: &str) -> usize {
    CATEGORIES
        .iter()
        .position(|c| *c == name)
        .unwrap_or(CATEGORIES.len() - 1)
}

/// The category of one stack, and for a user-space copy the function that asked for it.
fn classify(stack: &Stack) -> (usize, Option<String>) {
    let top = &stack[0];
    if is_kernel(top) {
        return (category(kernel_category(stack)), None);
    }
    let sym = top.0.as_str();
    if is_memcpy(sym) {
        let caller = stack
            .iter()
            .find(|f| !is_memcpy(&f.0) && !f.1.contains("libc"))
            .map_or_else(|| "?".to_string(), |f| f.0.clone());
        return (category(copy_category(&caller)), Some(caller));
    }
    let name = if [
        "aes_gcm", "gcm_", "aes_hw", "aesni", "ghash", "chacha", "poly1305",
    ]
    .iter()
    .any(|p| sym.contains(p))
        || sym.starts_with("ring::aead")
    {
        "TLS: AES-GCM seal/open (ring)"
    } else if sym.contains("crc32fast") {
        "CRC-32 (crc32fast)"
    } else if [
        "malloc", "free", "_int_", "realloc", "calloc", "tcache", "arena",
    ]
    .iter()
    .any(|p| sym.contains(p))
    {
        "allocator (malloc/free)"
    } else if sym.contains("tokio_rustls") || sym.contains("rustls") {
        "rustls record layer (framing, buffers)"
    } else if sym.contains("tokio::") || sym.starts_with("<tokio") {
        "tokio runtime (tasks, channels, timers)"
    } else if sym.contains("dwcp_amst") {
        "AMST core (dwcp_amst)"
    } else if sym.contains("dwcp_transport") || sym.contains("amst_cpu") {
        "AMST driver (dwcp_transport)"
    } else {
        "other user space"
    };
    (category(name), None)
}

fn copy_category(caller: &str) -> &'static str {
    if caller.contains("dwcp_amst::sender::Sender::write") {
        "copy: payload into frames (Sender::write)"
    } else if caller.contains("copy_to_vec") || caller.contains("encrypt") {
        "copy: plaintext into TLS records (rustls)"
    } else if caller.contains("into_vec") || caller.contains("take_received_plaintext") {
        "copy: decrypted record into rustls' plaintext buffer"
    } else if caller.contains("poll_read")
        || caller.contains("Reader")
        || caller.contains("read_buf")
    {
        "copy: plaintext out of rustls into the read buffer"
    } else if caller.contains("copy_from_slice") || caller.contains("dwcp_amst::receiver") {
        "copy: frame into the reorder buffer (Receiver)"
    } else if caller.contains("reserve") {
        "copy: read buffer growth (BytesMut::reserve)"
    } else {
        "copy: other"
    }
}

fn kernel_category(stack: &Stack) -> &'static str {
    let top = stack[0].0.as_str();
    let kernel: Vec<&str> = stack
        .iter()
        .filter(|f| is_kernel(f))
        .map(|f| f.0.as_str())
        .collect();
    let any = |names: &[&str]| kernel.iter().any(|s| names.iter().any(|n| s.contains(n)));
    if any(&["exc_page_fault"]) || top.starts_with("clear_page") {
        "kernel: page faults (fresh buffer pages)"
    } else if [
        "_copy_to_iter",
        "_copy_from_iter",
        "copy_user",
        "rep_movs",
        "skb_copy_datagram",
    ]
    .iter()
    .any(|p| top.contains(p))
    {
        "kernel: copy to/from user (TCP payload)"
    } else if any(&[
        "do_writev",
        "ksys_write",
        "__sys_sendto",
        "__sys_sendmsg",
        "tcp_sendmsg",
    ]) {
        "kernel: TCP send, loopback delivery included"
    } else if any(&[
        "__sys_recvfrom",
        "__sys_recvmsg",
        "ksys_read",
        "do_readv",
        "tcp_recvmsg",
    ]) {
        "kernel: TCP receive"
    } else if any(&["do_mmap", "munmap", "do_mprotect", "do_madvise", "sys_brk"]) {
        "kernel: memory mapping (mmap, munmap, madvise)"
    } else if any(&[
        "futex",
        "epoll",
        "schedule",
        "finish_task_switch",
        "try_to_wake_up",
    ]) {
        "kernel: wake-ups and waits (futex, epoll, scheduler)"
    } else {
        "kernel: other"
    }
}

/// Kernel events counted over one transfer (both processes), by `perf stat`: what each frame
/// costs in system calls, wake-ups and fresh pages.
pub const COUNTED: &[(&str, &str)] = &[
    ("syscalls:sys_enter_writev", "writev"),
    ("syscalls:sys_enter_write", "write"),
    ("syscalls:sys_enter_recvfrom", "recvfrom"),
    ("syscalls:sys_enter_read", "read"),
    ("syscalls:sys_enter_futex", "futex"),
    ("syscalls:sys_enter_epoll_wait", "epoll_wait"),
    ("context-switches", "context switches"),
    ("exceptions:page_fault_user", "page faults (user space)"),
];

/// Runs `exe pair` under `perf stat`; the count of each of [`COUNTED`] the kernel supports.
pub fn count(exe: &Path, mib: u64, streams: u32) -> Result<(Sample, Vec<(String, u64)>), Error> {
    let events: Vec<&str> = COUNTED.iter().map(|(e, _)| *e).collect();
    let out = Command::new("perf")
        .args(["stat", "-x", ",", "-e", &events.join(",")])
        .arg("--")
        .arg(exe)
        .args(["pair", "--mib", &mib.to_string()])
        .args(["--streams", &streams.to_string()])
        .output()
        .map_err(|e| format!("perf stat: {e} (install linux-perf)"))?;
    let sample = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(Sample::parse)
        .ok_or_else(|| format!("perf stat {}: no result from the transfer", out.status))?;
    // CSV on stderr: value,unit,event,...
    let stderr = String::from_utf8_lossy(&out.stderr);
    let counts = COUNTED
        .iter()
        .filter_map(|(event, name)| {
            stderr.lines().find_map(|l| {
                let mut f = l.split(',');
                let value = f.next()?.parse::<u64>().ok()?;
                (f.nth(1)? == *event).then(|| ((*name).to_string(), value))
            })
        })
        .collect();
    Ok((sample, counts))
}

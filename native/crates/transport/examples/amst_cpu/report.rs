//! `report`: transfers of one or two builds (this one, and optionally a baseline commit built
//! from git), run alternately, then one profile of each, written as JSON and Markdown.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::profile::{self, Profile, RoleProfile, CATEGORIES};
use crate::transfer::Sample;
use crate::{Error, Options};

/// One build under test.
struct Build {
    label: &'static str,
    commit: String,
    exe: PathBuf,
    samples: Vec<Sample>,
    /// Load average (1 min) before each run: other work on the machine shows here.
    loads: Vec<f64>,
    profile: Option<(Sample, Profile)>,
    /// Kernel event counts of one transfer, both processes.
    counts: Vec<(String, u64)>,
}

pub fn run(o: &Options) -> Result<(), Error> {
    let out = o
        .out
        .as_deref()
        .ok_or("report needs --out PATH (without extension)")?;
    let repo = git(None, &["rev-parse", "--show-toplevel"])?;
    let repo = PathBuf::from(repo);
    let mut builds = Vec::new();
    if let Some(rev) = &o.baseline {
        let commit = git(Some(&repo), &["rev-parse", "--short", rev])?;
        let exe = build_baseline(&repo, rev)?;
        builds.push(Build::new("before", commit, exe));
    }
    let label = if builds.is_empty() {
        "current"
    } else {
        "after"
    };
    builds.push(Build::new(
        label,
        current_commit(&repo)?,
        std::env::current_exe()?,
    ));
    let started_load = load_average();
    for run in 0..o.runs {
        for b in &mut builds {
            b.loads.push(load_average());
            let s = pair(&b.exe, o.mib, o.streams)?;
            eprintln!(
                "{} run {}: {:.2} Gbit/s, sender {:.2} s/GB, receiver {:.2} s/GB",
                b.label,
                run + 1,
                s.gbit(),
                s.send_per_gb(),
                s.recv_per_gb()
            );
            b.samples.push(s);
        }
    }
    if o.perf {
        for b in &mut builds {
            let (s, p) = profile::record(&b.exe, o.perf_mib, o.streams)?;
            eprintln!(
                "{} profile: {} sender and {} receiver samples",
                b.label, p.sender.samples, p.receiver.samples
            );
            b.profile = Some((s, p));
            b.counts = profile::count(&b.exe, o.perf_mib, o.streams)?.1;
        }
    }
    let machine = Machine::read(started_load);
    let command = command_line(o);
    std::fs::write(format!("{out}.json"), json(o, &machine, &command, &builds))?;
    std::fs::write(
        format!("{out}.md"),
        markdown(o, &machine, &command, &builds),
    )?;
    eprintln!("wrote {out}.json and {out}.md");
    Ok(())
}

impl Build {
    fn new(label: &'static str, commit: String, exe: PathBuf) -> Self {
        Build {
            label,
            commit,
            exe,
            samples: Vec::new(),
            loads: Vec::new(),
            profile: None,
            counts: Vec::new(),
        }
    }

    fn median(&self, f: impl Fn(&Sample) -> f64) -> Stat {
        Stat::of(self.samples.iter().map(f).collect())
    }
}

/// Median and range of one measure over the runs.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Stat {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"median\": {:.3}, \"min\": {:.3}, \"max\": {:.3}}}",
            self.median, self.min, self.max
        )
    }

    fn cell(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

fn pair(exe: &Path, mib: u64, streams: u32) -> Result<Sample, Error> {
    let out = Command::new(exe)
        .args(["pair", "--mib", &mib.to_string()])
        .args(["--streams", &streams.to_string()])
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().find_map(Sample::parse).ok_or_else(|| {
        format!(
            "{} pair failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into()
    })
}

fn git(dir: Option<&Path>, args: &[&str]) -> Result<String, Error> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// HEAD, and whether AMST's sources differ from it (the build measured is the working tree).
fn current_commit(repo: &Path) -> Result<String, Error> {
    let head = git(Some(repo), &["rev-parse", "--short", "HEAD"])?;
    let dirty = git(
        Some(repo),
        &[
            "status",
            "--porcelain",
            "--",
            "native/crates/amst",
            "native/crates/transport",
        ],
    )?;
    Ok(if dirty.is_empty() {
        head
    } else {
        format!("{head} + uncommitted changes in native/crates/amst or transport")
    })
}

/// Builds this example against the AMST crates of `rev`: the tree of `rev` (from `git archive`,
/// so the working tree is not touched) with this example's sources copied in. Kept under
/// `native/target/amst-cpu-baseline`, so a second report does not build it again.
fn build_baseline(repo: &Path, rev: &str) -> Result<PathBuf, Error> {
    let full = git(Some(repo), &["rev-parse", rev])?;
    let root = repo.join("native/target/amst-cpu-baseline");
    let tree = root.join(&full);
    if !tree.join("native/Cargo.toml").exists() {
        std::fs::create_dir_all(&tree)?;
        let archive = Command::new("sh")
            .arg("-c")
            .arg("git -C \"$1\" archive \"$2\" native | tar -x -C \"$3\"")
            .args([
                "sh",
                &repo.to_string_lossy(),
                &full,
                &tree.to_string_lossy(),
            ])
            .status()?;
        if !archive.success() {
            return Err(format!("git archive {rev} failed").into());
        }
    }
    let example = tree.join("native/crates/transport/examples/amst_cpu");
    std::fs::create_dir_all(&example)?;
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/amst_cpu");
    for entry in std::fs::read_dir(&here)? {
        let entry = entry?;
        let (from, to) = (entry.path(), example.join(entry.file_name()));
        // Unchanged files keep their timestamps, so cargo does not rebuild the example.
        if std::fs::read(&to).ok() != Some(std::fs::read(&from)?) {
            std::fs::copy(&from, &to)?;
        }
    }
    eprintln!("building the baseline {rev} in {}", tree.display());
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "dwcp-transport",
            "--example",
            "amst_cpu",
        ])
        .arg("--manifest-path")
        .arg(tree.join("native/Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target"))
        .status()?;
    if !status.success() {
        return Err(format!("building the baseline {rev} failed").into());
    }
    Ok(root.join("target/release/examples/amst_cpu"))
}

/// DATA frames in a transfer of `mib` MiB at the default frame size (64 KiB).
fn frames(mib: u64) -> f64 {
    (mib * 16) as f64
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
    load_at_start: f64,
}

impl Machine {
    fn read(load_at_start: f64) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            load_at_start,
        }
    }
}

fn command_line(o: &Options) -> String {
    let mut c = format!(
        "npm run bench:amst-cpu -- --runs {} --mib {} --streams {}",
        o.runs, o.mib, o.streams
    );
    if let Some(rev) = &o.baseline {
        let _ = write!(c, " --baseline {rev}");
    }
    if !o.perf {
        c.push_str(" --no-perf");
    } else if o.perf_mib != 2048 {
        let _ = write!(c, " --perf-mib {}", o.perf_mib);
    }
    c
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn role_json(r: &RoleProfile, cpu_per_gb: f64) -> String {
    let cats: Vec<String> = CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "{{\"what\": {}, \"samples\": {}, \"share\": {:.4}, \"cpu_s_per_gb\": {:.3}}}",
                esc(name),
                r.categories[i],
                r.share(i),
                r.share(i) * cpu_per_gb
            )
        })
        .collect();
    let pairs = |v: &[(String, u64)]| {
        v.iter()
            .map(|(s, n)| format!("{{\"symbol\": {}, \"samples\": {n}}}", esc(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{{\"samples\": {}, \"categories\": [{}], \"top_symbols\": [{}], \"copy_callers\": [{}]}}",
        r.samples,
        cats.join(", "),
        pairs(&r.top_symbols),
        pairs(&r.copy_callers)
    )
}

fn json(o: &Options, m: &Machine, command: &str, builds: &[Build]) -> String {
    let mut j = String::new();
    let _ = writeln!(j, "{{");
    let _ = writeln!(j, "  \"command\": {},", esc(command));
    let _ = writeln!(
        j,
        "  \"machine\": {{\"cpu\": {}, \"cores\": {}, \"kernel\": {}, \"shared\": true, \"load_average_at_start\": {:.2}}},",
        esc(&m.cpu),
        m.cores,
        esc(&m.kernel),
        m.load_at_start
    );
    let _ = writeln!(
        j,
        "  \"transfer\": {{\"mib\": {}, \"streams\": {}, \"runs\": {}, \"link\": \"TCP + TLS 1.3 (rustls, ring), loopback\", \"perf_mib\": {}}},",
        o.mib, o.streams, o.runs, o.perf_mib
    );
    let _ = writeln!(j, "  \"builds\": [");
    for (i, b) in builds.iter().enumerate() {
        let send = b.median(Sample::send_per_gb);
        let recv = b.median(Sample::recv_per_gb);
        let runs: Vec<String> = b
            .samples
            .iter()
            .zip(&b.loads)
            .map(|(s, load)| {
                format!(
                    "{{\"seconds\": {:.3}, \"gbit_per_s\": {:.3}, \"sender_cpu_s\": {:.3}, \"sender_user_s\": {:.3}, \"sender_sys_s\": {:.3}, \"receiver_cpu_s\": {:.3}, \"receiver_user_s\": {:.3}, \"receiver_sys_s\": {:.3}, \"load_average\": {load:.2}}}",
                    s.seconds, s.gbit(), s.send_cpu.total(), s.send_cpu.user, s.send_cpu.sys,
                    s.recv_cpu.total(), s.recv_cpu.user, s.recv_cpu.sys
                )
            })
            .collect();
        let profile = b.profile.as_ref().map_or_else(
            || "null".to_string(),
            |(_, p)| {
                format!(
                    "{{\"sender\": {}, \"receiver\": {}}}",
                    role_json(&p.sender, send.median),
                    role_json(&p.receiver, recv.median)
                )
            },
        );
        let frames = frames(o.perf_mib);
        let counts: Vec<String> = b
            .counts
            .iter()
            .map(|(name, n)| {
                format!(
                    "{{\"what\": {}, \"count\": {n}, \"per_frame\": {:.3}}}",
                    esc(name),
                    *n as f64 / frames
                )
            })
            .collect();
        let _ = writeln!(
            j,
            "    {{\"label\": {}, \"commit\": {}, \"sender_cpu_s_per_gb\": {}, \"receiver_cpu_s_per_gb\": {}, \"both_cpu_s_per_gb\": {}, \"goodput_gbit_per_s\": {}, \"runs\": [{}], \"profile\": {}, \"kernel_events\": [{}]}}{}",
            esc(b.label),
            esc(&b.commit),
            send.json(),
            recv.json(),
            b.median(|s| s.send_per_gb() + s.recv_per_gb()).json(),
            b.median(Sample::gbit).json(),
            runs.join(", "),
            profile,
            counts.join(", "),
            if i + 1 < builds.len() { "," } else { "" }
        );
    }
    let _ = writeln!(j, "  ]");
    let _ = writeln!(j, "}}");
    j
}

fn markdown(o: &Options, m: &Machine, command: &str, builds: &[Build]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# AMST: CPU per GB over TCP + TLS\n");
    let _ = writeln!(
        md,
        "Written by `{command}` (`native/crates/transport/examples/amst_cpu`); do not edit by hand.\n"
    );
    let loads: Vec<f64> = builds
        .iter()
        .flat_map(|b| b.loads.iter().copied())
        .collect();
    let load = Stat::of(loads);
    let _ = writeln!(
        md,
        "- **Machine**: {}, {} cores, Linux {}. **Shared with other work** (other builds and tests ran on the same 2 cores): the 1-minute load average was {:.2} at the start and {:.2}–{:.2} before the runs, so single runs spread widely; compare medians.",
        m.cpu, m.cores, m.kernel, m.load_at_start, load.min, load.max
    );
    let _ = writeln!(
        md,
        "- **Transfer**: {} MiB from a sender process to a receiver process (this example, `pair` and `receive`), {} connections, TCP + TLS 1.3 (rustls with ring's AES-GCM), on loopback (MTU 65536, so the kernel's per-packet work is lighter than on a real link). Each process has a 2-worker tokio runtime, as the addon has here. The producer hands the sender 1 MiB pieces of one shared buffer; the receiver only counts the bytes (no hash).",
        o.mib, o.streams
    );
    let _ = writeln!(
        md,
        "- **CPU** = getrusage user + system time of each process, from the transfer's start to its end (handshakes included, certificate generation not), per GB (10⁹ bytes) moved. {} runs per build{}.",
        o.runs,
        if builds.len() > 1 { ", the builds alternating" } else { "" }
    );
    if let Some(rev) = &o.baseline {
        let _ = writeln!(
            md,
            "- **before** is commit `{rev}`'s AMST crates built with this example; **after** is the working tree the command ran in."
        );
    }
    let _ = writeln!(md, "\n## CPU per GB and goodput\n");
    let _ = writeln!(
        md,
        "Median (min–max) over the runs.\n\n| build | commit | sender CPU s/GB | receiver CPU s/GB | both ends s/GB | goodput Gbit/s |\n|---|---|---:|---:|---:|---:|"
    );
    for b in builds {
        let _ = writeln!(
            md,
            "| {} | `{}` | {} | {} | {} | {} |",
            b.label,
            b.commit,
            b.median(Sample::send_per_gb).cell(2),
            b.median(Sample::recv_per_gb).cell(2),
            b.median(|s| s.send_per_gb() + s.recv_per_gb()).cell(2),
            b.median(Sample::gbit).cell(2)
        );
    }
    let profiled: Vec<&Build> = builds.iter().filter(|b| b.profile.is_some()).collect();
    if profiled.is_empty() {
        return md;
    }
    let _ = writeln!(md, "\n## Where the CPU goes\n");
    let _ = writeln!(
        md,
        "`perf record -F 1999 --call-graph dwarf` (software clock: this VM has no PMU) of one {} MiB transfer per build, both processes. A share is the fraction of that process's samples taken during the transfer; s/GB is the share times the process's median CPU s/GB above. A user-space copy is named by the function that called memcpy. On loopback the sender's send syscall also runs the receiving side of TCP (softirq), so kernel send time includes delivery.\n",
        o.perf_mib
    );
    for (role, pick) in [
        (
            "Sender",
            (|p: &Profile| &p.sender) as fn(&Profile) -> &RoleProfile,
        ),
        ("Receiver", |p: &Profile| &p.receiver),
    ] {
        let _ = write!(md, "### {role}\n\n| what |");
        for b in &profiled {
            let _ = write!(md, " {} % | {} s/GB |", b.label, b.label);
        }
        let _ = write!(md, "\n|---|");
        for _ in &profiled {
            let _ = write!(md, "---:|---:|");
        }
        let _ = writeln!(md);
        for (i, name) in CATEGORIES.iter().enumerate() {
            let shown = profiled.iter().any(|b| {
                b.profile
                    .as_ref()
                    .is_some_and(|(_, p)| pick(p).share(i) >= 0.0005)
            });
            if !shown {
                continue;
            }
            let _ = write!(md, "| {name} |");
            for b in &profiled {
                let per_gb = if role == "Sender" {
                    b.median(Sample::send_per_gb).median
                } else {
                    b.median(Sample::recv_per_gb).median
                };
                if let Some((_, p)) = &b.profile {
                    let share = pick(p).share(i);
                    let _ = write!(md, " {:.1} | {:.3} |", share * 100.0, share * per_gb);
                }
            }
            let _ = writeln!(md);
        }
        let _ = write!(md, "| samples |");
        for b in &profiled {
            if let Some((_, p)) = &b.profile {
                let _ = write!(md, " {} | |", pick(p).samples);
            }
        }
        let _ = writeln!(md, "\n");
    }
    if profiled.iter().any(|b| !b.counts.is_empty()) {
        let _ = writeln!(
            md,
            "### Per frame\n\nKernel events of one more {} MiB transfer per build under `perf stat`, both processes together (start-up included), divided by its {:.0} frames of 64 KiB.\n",
            o.perf_mib,
            frames(o.perf_mib)
        );
        let _ = write!(md, "| event |");
        for b in &profiled {
            let _ = write!(md, " {} |", b.label);
        }
        let _ = write!(md, "\n|---|");
        for _ in &profiled {
            let _ = write!(md, "---:|");
        }
        let _ = writeln!(md);
        for (_, name) in profile::COUNTED {
            let _ = write!(md, "| {name} |");
            for b in &profiled {
                match b.counts.iter().find(|(n, _)| n == name) {
                    Some((_, n)) => {
                        let _ = write!(md, " {:.2} |", *n as f64 / frames(o.perf_mib));
                    }
                    None => md.push_str(" – |"),
                }
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "### The functions behind it\n");
    for b in &profiled {
        let Some((_, p)) = &b.profile else { continue };
        for (role, r) in [("sender", &p.sender), ("receiver", &p.receiver)] {
            let _ = writeln!(md, "**{}, {role}**: most samples in (self)\n", b.label);
            for (sym, n) in &r.top_symbols {
                let _ = writeln!(
                    md,
                    "- {:.1} % `{sym}`",
                    100.0 * *n as f64 / r.samples.max(1) as f64
                );
            }
            let callers: Vec<_> = r
                .copy_callers
                .iter()
                .filter(|(_, n)| *n as f64 >= 0.001 * r.samples as f64)
                .collect();
            if !callers.is_empty() {
                let _ = writeln!(md, "\nmemcpy called from\n");
                for (sym, n) in callers {
                    let _ = writeln!(
                        md,
                        "- {:.1} % `{sym}`",
                        100.0 * *n as f64 / r.samples.max(1) as f64
                    );
                }
            }
            let _ = writeln!(md);
        }
    }
    md
}

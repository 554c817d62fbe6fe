//! Command line: clap definitions, and their resolution (scenario, then explicit flags) into a
//! checked `PathConfig`. Every error names the flag at fault.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::delay_line::{DelayModel, JitterDist};
use crate::link::LinkConfig;
use crate::rate_schedule::RateSchedule;
use crate::scenario;

/// Parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "dwcp-wanem",
    version,
    about = "User-space WAN emulator for DWCP tests and benches",
    long_about = "Forwards IP packets between two network namespaces through a TUN device in each \
                  (default mode), or relays a TCP byte stream on loopback (`relay`), applying \
                  one-way delay, jitter, random loss and a rate cap with a drop-tail queue to each \
                  direction. Scenario values apply first; explicit flags override them.",
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
pub struct Cli {
    /// Another mode; without one, forward between two network namespaces.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Namespace mode flags.
    #[command(flatten)]
    pub netns: NetnsArgs,
    /// Path impairment flags.
    #[command(flatten)]
    pub path: PathArgs,
}

/// Modes other than the default namespace forwarder.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fallback without namespaces: relay TCP connections on loopback with delay and a rate cap.
    Relay(Box<RelayArgs>),
    /// Print the built-in scenarios as JSON.
    Scenarios,
}

/// Where the namespace forwarder puts its TUN devices.
#[derive(Debug, Args)]
pub struct NetnsArgs {
    /// Namespace of side A (gets 10.77.0.1/30); must exist in /var/run/netns.
    #[arg(long, default_value = "dwcp-a")]
    pub ns_a: String,
    /// Namespace of side B (gets 10.77.0.2/30).
    #[arg(long, default_value = "dwcp-b")]
    pub ns_b: String,
    /// Name of the TUN device created in each namespace.
    #[arg(long, default_value = "wan0")]
    pub tun_name: String,
    /// TUN MTU [default: the scenario's, else 1500].
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Run the forwarding threads at normal priority instead of SCHED_FIFO.
    #[arg(long)]
    pub no_realtime: bool,
}

/// The TCP relay's endpoints.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Address to accept connections on (side A).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Address to connect each accepted connection to (side B).
    #[arg(long)]
    pub connect: SocketAddr,
    /// All connections share one bottleneck per direction, as flows on one path do (default: each
    /// connection gets the whole rate to itself).
    #[arg(long)]
    pub shared_bottleneck: bool,
    /// Path impairment flags.
    #[command(flatten)]
    pub path: PathArgs,
}

/// How each direction of the path is impaired, plus reporting.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct PathArgs {
    /// Start from a built-in scenario (see `dwcp-wanem scenarios`).
    #[arg(long)]
    pub scenario: Option<String>,
    /// One-way delay in ms.
    #[arg(long)]
    pub delay_ms: Option<f64>,
    /// One-way jitter in ms: half-width (uniform) or standard deviation (normal).
    #[arg(long)]
    pub jitter_ms: Option<f64>,
    /// Distribution of the jitter.
    #[arg(long, value_enum, default_value_t = JitterDist::Uniform)]
    pub jitter_dist: JitterDist,
    /// Let jitter reorder packets (off: a packet never overtakes an earlier one).
    #[arg(long)]
    pub allow_reorder: bool,
    /// Loss probability per packet and direction, as a fraction (0.01 = 1%).
    #[arg(long)]
    pub loss: Option<f64>,
    /// Rate cap in Mbit/s per direction; 0 means uncapped.
    #[arg(long)]
    pub rate_mbit: Option<f64>,
    /// Change the rate cap over time: a file of `seconds Mbit/s` lines (the bench/traces format),
    /// times from the emulator's start; each value holds until the next, the last for ever.
    #[arg(long, conflicts_with = "rate_mbit")]
    pub rate_trace: Option<PathBuf>,
    /// Bottleneck queue length in ms at the capped rate [default: the scenario's, else 100].
    #[arg(long)]
    pub queue_ms: Option<f64>,
    /// Bottleneck queue length in bytes; overrides --queue-ms.
    #[arg(long)]
    pub queue_bytes: Option<u64>,
    /// Token bucket depth in bytes [default: 1 ms at the rate, at least two packets].
    #[arg(long)]
    pub burst_bytes: Option<u64>,
    /// Seed for loss and jitter, to repeat a run exactly [default: from the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also print a stats line every this many seconds (always printed on SIGINT/SIGTERM).
    #[arg(long)]
    pub stats_interval: Option<f64>,
    /// Keep the latest stats line in this file (rewritten atomically every interval, 1 s by default).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
}

/// A flag with a bad value; the message names the flag.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The resolved, checked path parameters shared by both directions.
#[derive(Debug, Clone, Serialize)]
pub struct PathConfig {
    /// Scenario the values started from, if any.
    pub scenario: Option<&'static str>,
    /// One-way delay in ms.
    pub delay_ms: f64,
    /// One-way jitter in ms.
    pub jitter_ms: f64,
    /// Jitter distribution.
    pub jitter_dist: JitterDist,
    /// Whether jitter may reorder.
    pub allow_reorder: bool,
    /// Loss probability per packet and direction.
    pub loss: f64,
    /// Rate cap in Mbit/s; `None` means uncapped. With a rate trace, its first step.
    pub rate_mbit: Option<f64>,
    /// File the rate schedule came from, if any.
    pub rate_trace: Option<PathBuf>,
    /// The rate schedule (`--rate-trace`), if any.
    #[serde(skip)]
    pub rate_schedule: Option<Arc<RateSchedule>>,
    /// Bottleneck queue in bytes.
    pub queue_bytes: u64,
    /// Token bucket depth in bytes.
    pub burst_bytes: u64,
    /// TUN MTU (namespace mode) or read size (relay mode): the largest packet.
    pub max_packet: u32,
    /// Seed of direction A→B; B→A uses `seed + 1`.
    pub seed: u64,
    /// Seconds between stats lines, if any.
    pub stats_interval_s: Option<f64>,
    /// File that holds the latest stats line, if any.
    pub stats_file: Option<PathBuf>,
}

impl PathConfig {
    /// The per-direction pipeline parameters.
    pub fn link_config(&self) -> LinkConfig {
        LinkConfig {
            delay: DelayModel {
                base: Duration::from_secs_f64(self.delay_ms / 1e3),
                jitter: Duration::from_secs_f64(self.jitter_ms / 1e3),
                dist: self.jitter_dist,
                allow_reorder: self.allow_reorder,
            },
            loss: self.loss,
            rate_bps: self.rate_mbit.map(|m| (m * 1e6).round() as u64),
            burst_bytes: self.burst_bytes,
            queue_bytes: self.queue_bytes,
        }
    }

    /// How often the main thread wakes to print or write stats, if at all.
    pub fn stats_period(&self) -> Option<Duration> {
        match (self.stats_interval_s, &self.stats_file) {
            (Some(s), _) => Some(Duration::from_secs_f64(s)),
            (None, Some(_)) => Some(Duration::from_secs(1)),
            (None, None) => None,
        }
    }
}

const DEFAULT_QUEUE_MS: f64 = 100.0;
const DEFAULT_MTU: u32 = 1500;
/// Ten minutes: longer than any path, short enough that a typo in units is caught.
const MAX_DELAY_MS: f64 = 600_000.0;

/// Resolves namespace-mode flags; the TUN MTU becomes `max_packet`.
pub fn resolve_netns(netns: &NetnsArgs, path: &PathArgs) -> Result<PathConfig, CliError> {
    check_name("--ns-a", &netns.ns_a, 255)?;
    check_name("--ns-b", &netns.ns_b, 255)?;
    if netns.ns_a == netns.ns_b {
        return Err(CliError(format!(
            "--ns-a and --ns-b must differ (both are '{}')",
            netns.ns_a
        )));
    }
    check_name("--tun-name", &netns.tun_name, 15)?;
    let scenario = lookup(path)?;
    let mtu = netns.mtu.or(scenario.map(|s| s.mtu)).unwrap_or(DEFAULT_MTU);
    if !(576..=65_535).contains(&mtu) {
        return Err(CliError(format!(
            "--mtu must be between 576 and 65535, got {mtu}"
        )));
    }
    resolve_path(path, scenario, mtu)
}

/// Resolves relay-mode flags; `max_packet` is the relay's read size.
pub fn resolve_relay(path: &PathArgs, max_packet: u32) -> Result<PathConfig, CliError> {
    let scenario = lookup(path)?;
    resolve_path(path, scenario, max_packet)
}

fn lookup(path: &PathArgs) -> Result<Option<&'static scenario::Scenario>, CliError> {
    path.scenario
        .as_deref()
        .map(|name| {
            scenario::find(name).ok_or_else(|| {
                CliError(format!(
                    "--scenario: unknown scenario '{name}' (known: {})",
                    scenario::names()
                ))
            })
        })
        .transpose()
}

fn resolve_path(
    path: &PathArgs,
    scenario: Option<&'static scenario::Scenario>,
    max_packet: u32,
) -> Result<PathConfig, CliError> {
    let pick = |flag: Option<f64>, from: fn(&scenario::Scenario) -> f64, default: f64| {
        flag.or(scenario.map(from)).unwrap_or(default)
    };
    let delay_ms = in_range(
        "--delay-ms",
        pick(path.delay_ms, |s| s.delay_ms, 0.0),
        0.0,
        MAX_DELAY_MS,
    )?;
    let jitter_ms = in_range(
        "--jitter-ms",
        pick(path.jitter_ms, |s| s.jitter_ms, 0.0),
        0.0,
        MAX_DELAY_MS,
    )?;
    let loss = in_range("--loss", pick(path.loss, |s| s.loss, 0.0), 0.0, 1.0)?;
    let rate_schedule = path.rate_trace.as_deref().map(load_trace).transpose()?;
    let rate_mbit = match &rate_schedule {
        Some(s) => s.first_rate_bps() as f64 / 1e6,
        None => in_range(
            "--rate-mbit",
            pick(path.rate_mbit, |s| s.rate_mbit, 0.0),
            0.0,
            10_000_000.0,
        )?,
    };
    let queue_ms = in_range(
        "--queue-ms",
        pick(path.queue_ms, |s| s.queue_ms, DEFAULT_QUEUE_MS),
        0.0,
        MAX_DELAY_MS,
    )?;
    let rate_mbit = (rate_mbit > 0.0).then_some(rate_mbit);
    let max_packet_bytes = u64::from(max_packet);

    let queue_bytes = match (path.queue_bytes, rate_mbit) {
        (Some(q), _) if q < max_packet_bytes => {
            return Err(CliError(format!(
                "--queue-bytes must hold at least one packet ({max_packet} bytes), got {q}"
            )));
        }
        (Some(q), _) => q,
        // A queue shorter than two packets would drop nearly everything past the burst.
        (None, Some(rate)) => {
            ((rate * 1e6 / 8.0 * queue_ms / 1e3) as u64).max(2 * max_packet_bytes)
        }
        (None, None) => u64::MAX,
    };
    let burst_bytes = match path.burst_bytes {
        Some(0) => return Err(CliError("--burst-bytes must be at least 1".into())),
        Some(b) => b,
        // 1 ms of rate keeps bursts short next to any scenario's delay, yet lets the forwarder
        // wake about once per millisecond instead of once per packet.
        None => rate_mbit.map_or(0, |rate| {
            ((rate * 1e3 / 8.0) as u64).max(2 * max_packet_bytes)
        }),
    };
    let stats_interval_s = match path.stats_interval {
        Some(s) if !(s.is_finite() && s >= 0.01) => {
            return Err(CliError(format!(
                "--stats-interval must be at least 0.01 seconds, got {s}"
            )));
        }
        other => other,
    };
    Ok(PathConfig {
        scenario: scenario.map(|s| s.name),
        delay_ms,
        jitter_ms,
        jitter_dist: path.jitter_dist,
        allow_reorder: path.allow_reorder,
        loss,
        rate_mbit,
        rate_trace: path.rate_trace.clone(),
        rate_schedule: rate_schedule.map(Arc::new),
        queue_bytes,
        burst_bytes,
        max_packet,
        seed: path.seed.unwrap_or_else(clock_seed),
        stats_interval_s,
        stats_file: path.stats_file.clone(),
    })
}

fn load_trace(path: &std::path::Path) -> Result<RateSchedule, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError(format!("--rate-trace: cannot read {}: {e}", path.display())))?;
    RateSchedule::parse(&text)
        .map_err(|e| CliError(format!("--rate-trace: {}: {e}", path.display())))
}

fn in_range(flag: &str, value: f64, min: f64, max: f64) -> Result<f64, CliError> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(CliError(format!(
            "{flag} must be between {min} and {max}, got {value}"
        )))
    }
}

fn check_name(flag: &str, name: &str, max_len: usize) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.len() <= max_len
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(CliError(format!(
            "{flag}: '{name}' is not a valid name (1-{max_len} characters, no '/' or spaces)"
        )))
    }
}

fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<PathConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("dwcp-wanem").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match &cli.command {
            None => resolve_netns(&cli.netns, &cli.path).map_err(|e| e.0),
            Some(Command::Relay(r)) => resolve_relay(&r.path, 16_384).map_err(|e| e.0),
            Some(Command::Scenarios) => Err("scenarios".into()),
        }
    }

    #[test]
    fn scenario_values_then_flags_override() {
        let c = parse(&["--scenario", "internet", "--seed", "1"]).unwrap();
        assert_eq!(
            (c.delay_ms, c.loss, c.rate_mbit, c.max_packet),
            (50.0, 0.01, Some(100.0), 1500)
        );
        assert_eq!(c.queue_bytes, 1_250_000); // 100 ms at 100 Mbit/s
        let c = parse(&[
            "--scenario",
            "internet",
            "--loss",
            "0",
            "--delay-ms",
            "5",
            "--mtu",
            "9000",
        ])
        .unwrap();
        assert_eq!(
            (c.delay_ms, c.loss, c.rate_mbit, c.max_packet),
            (5.0, 0.0, Some(100.0), 9000)
        );
    }

    #[test]
    fn no_scenario_means_a_clean_uncapped_path() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.delay_ms, c.jitter_ms, c.loss, c.rate_mbit),
            (0.0, 0.0, 0.0, None)
        );
        assert_eq!(c.queue_bytes, u64::MAX);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, flag) in [
            (&["--loss", "1.5"][..], "--loss"),
            (&["--delay-ms", "-1"], "--delay-ms"),
            (&["--rate-mbit", "NaN"], "--rate-mbit"),
            (&["--scenario", "moon"], "--scenario"),
            (&["--ns-a", "x", "--ns-b", "x"], "--ns-a"),
            (&["--tun-name", "much-too-long-name"], "--tun-name"),
            (&["--mtu", "100"], "--mtu"),
            (
                &["--rate-mbit", "10", "--queue-bytes", "100"],
                "--queue-bytes",
            ),
            (&["--stats-interval", "0"], "--stats-interval"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        assert!(
            parse(&["--delay-ms", "abc"])
                .unwrap_err()
                .contains("--delay-ms")
        );
    }

    #[test]
    fn relay_takes_the_same_path_flags() {
        let c = parse(&[
            "relay",
            "--listen",
            "127.0.0.1:1",
            "--connect",
            "127.0.0.1:2",
            "--scenario",
            "regional",
        ])
        .unwrap();
        assert_eq!(
            (c.delay_ms, c.rate_mbit, c.max_packet),
            (10.0, Some(1000.0), 16_384)
        );
        assert!(parse(&["relay", "--listen", "nowhere", "--connect", "127.0.0.1:2"]).is_err());
    }

    #[test]
    fn rate_trace_sets_the_rate_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("dwcp-wanem-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "0 80\n10 40\n").unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "0 80\n10 forty\n").unwrap();
        let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());

        // The trace overrides the scenario's rate; queue and burst are sized from its first step.
        let c = parse(&["--scenario", "internet", "--rate-trace", good]).unwrap();
        assert_eq!(c.rate_mbit, Some(80.0));
        assert_eq!(c.queue_bytes, 1_000_000); // 100 ms at 80 Mbit/s
        assert_eq!(c.rate_schedule.as_ref().map(|s| s.len()), Some(2));
        let c = parse(&[
            "relay",
            "--listen",
            "127.0.0.1:1",
            "--connect",
            "127.0.0.1:2",
            "--rate-trace",
            good,
        ])
        .unwrap();
        assert_eq!(c.rate_mbit, Some(80.0));

        let err = parse(&["--rate-trace", bad]).unwrap_err();
        assert!(
            err.starts_with("--rate-trace: ") && err.contains(&format!("{bad}: line 2: ")),
            "{err}"
        );
        let err = parse(&["--rate-trace", "/nonexistent/trace"]).unwrap_err();
        assert!(
            err.contains("--rate-trace: cannot read /nonexistent/trace"),
            "{err}"
        );
        let err = parse(&["--rate-trace", good, "--rate-mbit", "5"]).unwrap_err();
        assert!(err.contains("--rate-mbit"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

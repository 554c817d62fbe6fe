//! `dwcp-wanem`: a user-space WAN emulator for DWCP tests and benches (this kernel has no netem).
//!
//! Start-up messages go to stderr; machine-readable JSON lines (start, stats, final) go to stdout.

mod cli;
mod delay_line;
mod forward;
mod link;
mod loss;
mod netns;
mod rate_schedule;
mod relay;
mod scenario;
mod stats;
mod token_bucket;
mod tun;

use std::net::{Ipv4Addr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Command, PathConfig};
use crate::forward::Direction;
use crate::stats::PathCounters;
use crate::tun::Tun;

/// Side A's and side B's TUN addresses: a /30 with exactly these two hosts.
const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PREFIX: u8 = 30;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Block SIGINT/SIGTERM before any thread starts, so every thread inherits the mask and the
    // main thread alone takes them in `report_until_signal`.
    let signals = block_stop_signals();
    let result = match cli.command {
        None => run_netns(&cli),
        Some(Command::Relay(ref args)) => run_relay(args),
        Some(Command::Scenarios) => {
            println!(
                "{}",
                serde_json::to_string_pretty(scenario::SCENARIOS).expect("scenarios serialise")
            );
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok((mode, config, counters)) => {
            report_until_signal(&signals, mode, &config, &counters);
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(e)) => {
            eprintln!("dwcp-wanem: error: {e}\n(see dwcp-wanem --help)");
            ExitCode::from(2)
        }
        Err(Failure::Setup(e)) => {
            eprintln!("dwcp-wanem: error: {e}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(cli::CliError),
    Setup(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Setup(e)
    }
}

type Running = (&'static str, PathConfig, Arc<PathCounters>);

fn run_netns(cli: &Cli) -> Result<Running, Failure> {
    let config = cli::resolve_netns(&cli.netns, &cli.path).map_err(Failure::Usage)?;
    let (ns_a, ns_b) = (&cli.netns.ns_a, &cli.netns.ns_b);
    let mtu = config.max_packet;
    let name = &cli.netns.tun_name;
    let tun_a = netns::within(&netns::open(ns_a)?, || {
        Tun::create(name, ADDR_A, PREFIX, mtu)
    })?;
    let tun_b = netns::within(&netns::open(ns_b)?, || {
        Tun::create(name, ADDR_B, PREFIX, mtu)
    })?;
    eprintln!(
        "dwcp-wanem: mode: netns (TUN forwarder): {ns_a}/{} {ADDR_A}/{PREFIX} <-> {ns_b}/{} {ADDR_B}/{PREFIX}, MTU {mtu}",
        tun_a.name(),
        tun_b.name()
    );
    eprintln!("dwcp-wanem: each direction: {}", describe(&config));
    if cli.netns.no_realtime {
        eprintln!("dwcp-wanem: forwarding threads at normal priority (--no-realtime)");
    } else {
        eprintln!(
            "dwcp-wanem: forwarding threads at SCHED_FIFO priority {}",
            forward::REALTIME_PRIORITY
        );
    }
    eprintln!(
        "dwcp-wanem: run commands with: ip netns exec {ns_a} ping {ADDR_B}   /   ip netns exec {ns_b} iperf3 -s"
    );

    let counters = Arc::new(PathCounters::default());
    let (tun_a, tun_b) = (Arc::new(tun_a), Arc::new(tun_b));
    let link = config.link_config();
    let schedule = config.rate_schedule.clone().map(|s| (s, Instant::now()));
    for (name, input, output, seed, counters) in [
        ("a-to-b", &tun_a, &tun_b, config.seed, &counters.a_to_b),
        (
            "b-to-a",
            &tun_b,
            &tun_a,
            config.seed.wrapping_add(1),
            &counters.b_to_a,
        ),
    ] {
        let (input, output, counters) =
            (Arc::clone(input), Arc::clone(output), Arc::clone(counters));
        let realtime = !cli.netns.no_realtime;
        Direction {
            name,
            input,
            output,
            config: link,
            schedule: schedule.clone(),
            seed,
            mtu: mtu as usize,
            counters,
            realtime,
        }
        .spawn()?;
    }
    print_start("netns", &config);
    Ok(("netns", config, counters))
}

fn run_relay(args: &cli::RelayArgs) -> Result<Running, Failure> {
    let mut config = cli::resolve_relay(&args.path, relay::CHUNK).map_err(Failure::Usage)?;
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("relay: bind {}: {e}", args.listen)))?;
    eprintln!(
        "dwcp-wanem: mode: relay (loopback TCP byte stream, no namespaces): {} -> {}",
        listener.local_addr()?,
        args.connect
    );
    if config.loss > 0.0 {
        eprintln!(
            "dwcp-wanem: warning: loss {:.2}% requested, but a TCP byte stream cannot lose packets: loss is NOT emulated in relay mode",
            config.loss * 100.0
        );
        // Report what is emulated, not what was asked for.
        config.loss = 0.0;
    } else {
        eprintln!(
            "dwcp-wanem: note: relay mode emulates delay, jitter and rate only; packet loss cannot be emulated on a TCP byte stream"
        );
    }
    eprintln!("dwcp-wanem: each direction: {}", describe(&config));
    let counters = Arc::new(PathCounters::default());
    let schedule = config.rate_schedule.clone().map(|s| (s, Instant::now()));
    let shared = args.shared_bottleneck;
    if shared {
        eprintln!("dwcp-wanem: all connections share one bottleneck per direction");
    }
    let (link, seed, target, c) = (
        config.link_config(),
        config.seed,
        args.connect,
        Arc::clone(&counters),
    );
    std::thread::Builder::new()
        .name("relay-accept".into())
        .spawn(move || {
            if let Err(e) = relay::serve(listener, target, link, schedule, shared, seed, c) {
                eprintln!("dwcp-wanem: relay: fatal: {e}");
                std::process::exit(1);
            }
        })?;
    print_start("relay", &config);
    Ok(("relay", config, counters))
}

fn describe(c: &PathConfig) -> String {
    let rate = match (&c.rate_schedule, &c.rate_trace) {
        (Some(s), Some(path)) => format!(
            "from {} ({} steps over {:.1} s, then the last holds; {} Mbit/s first)",
            path.display(),
            s.len(),
            s.last_change().as_secs_f64(),
            s.first_rate_bps() as f64 / 1e6
        ),
        _ => c
            .rate_mbit
            .map_or("uncapped".to_string(), |r| format!("{r} Mbit/s")),
    };
    let queue = if c.rate_mbit.is_some() {
        format!("queue {} B, burst {} B", c.queue_bytes, c.burst_bytes)
    } else {
        "no queue".into()
    };
    format!(
        "scenario {}, delay {} ms, jitter {} ms ({}, {}), loss {:.3}%, rate {rate}, {queue}, seed {}",
        c.scenario.unwrap_or("none"),
        c.delay_ms,
        c.jitter_ms,
        format!("{:?}", c.jitter_dist).to_lowercase(),
        if c.allow_reorder {
            "may reorder"
        } else {
            "no reordering"
        },
        c.loss * 100.0,
        c.seed
    )
}

fn print_start(mode: &str, config: &PathConfig) {
    let line = serde_json::json!({ "event": "start", "mode": mode, "pid": std::process::id(), "config": config });
    println!("{line}");
}

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask affects this thread (and the
    // threads it creates from now on).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Prints (and stores) stats every period until SIGINT/SIGTERM, then prints the final line.
fn report_until_signal(
    signals: &libc::sigset_t,
    mode: &str,
    config: &PathConfig,
    counters: &PathCounters,
) {
    let started = Instant::now();
    let period = config.stats_period();
    let emit = |event: &str| {
        let line = counters.json_line(event, mode, started);
        if event == "final" || config.stats_interval_s.is_some() {
            println!("{line}");
        }
        if let Some(Err(e)) = config
            .stats_file
            .as_ref()
            .map(|path| stats::write_stats_file(path, &line))
        {
            eprintln!("dwcp-wanem: cannot write stats file: {e}");
        }
    };
    loop {
        let wait = period.unwrap_or(Duration::from_secs(3600));
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: signals is a valid set; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(signals, std::ptr::null_mut(), &ts) };
        if sig == libc::SIGINT || sig == libc::SIGTERM {
            emit("final");
            return;
        }
        if period.is_some() && sig < 0 {
            emit("stats");
        }
    }
}

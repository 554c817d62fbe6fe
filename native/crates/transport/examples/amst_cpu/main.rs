//! Where AMST's CPU goes: real transfers over TCP + TLS 1.3 on loopback, the sender in this
//! process and the receiver in a child, each reporting its own CPU time (getrusage), then one
//! transfer under `perf record` whose samples are sorted into what they were doing.
//!
//! ```text
//! amst_cpu pair [--mib N] [--streams N] [--record FILE]
//!                                                one transfer; prints a `result ...` line
//! amst_cpu report --out PATH [--runs N] [--mib N] [--streams N] [--baseline REV] [--no-perf]
//!                                                writes PATH.json and PATH.md
//! ```
//! `npm run bench:amst-cpu` runs `report` into `docs/benchmarks/amst-cpu`.

mod profile;
mod report;
mod transfer;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Command-line options shared by the subcommands.
#[derive(Debug, Clone)]
struct Options {
    mib: u64,
    streams: u32,
    runs: usize,
    out: Option<String>,
    baseline: Option<String>,
    perf: bool,
    perf_mib: u64,
    record: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, Error> {
        let mut o = Options {
            mib: 2048,
            streams: 8,
            runs: 5,
            out: None,
            baseline: None,
            perf: true,
            perf_mib: 2048,
            record: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--mib" => o.mib = value()?.parse()?,
                "--streams" => o.streams = value()?.parse()?,
                "--runs" => o.runs = value()?.parse()?,
                "--out" => o.out = Some(value()?.clone()),
                "--baseline" => o.baseline = Some(value()?.clone()),
                "--perf-mib" => o.perf_mib = value()?.parse()?,
                "--no-perf" => o.perf = false,
                "--record" => o.record = Some(value()?.clone()),
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        Ok(o)
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = args
        .split_first()
        .ok_or("usage: amst_cpu pair|receive|report ...")?;
    let options = Options::parse(rest)?;
    match command.as_str() {
        "pair" => {
            let record = options.record.as_deref();
            let sample = transfer::pair(options.mib << 20, options.streams, record)?;
            println!("{}", sample.to_line());
            Ok(())
        }
        "receive" => transfer::receive(),
        "report" => report::run(&options),
        other => Err(format!("unknown command {other}").into()),
    }
}

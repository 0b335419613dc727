//! `massa-load`: a gRPC load generator in the spirit of ghz, for Massa's
//! benchmarks and for anyone without ghz (a Go binary that cannot be
//! installed here). It speaks h2 through Massa's own client, so the
//! requests it sends are what any gRPC client sends.
//!
//! ```text
//! massa-load --call example.echo.Echo/Say --proto example/echo/echo.proto \
//!   --import-path proto -d '{"text":"hi {{i}}"}' -n 100000 -c 4 --concurrency 64 127.0.0.1:9000
//! ```

mod report;
mod request;
mod run;

use std::{
    io::IsTerminal,
    net::ToSocketAddrs,
    path::PathBuf,
    process::ExitCode,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use clap::Parser;

use massa::userfn::Target;

/// A gRPC load generator (ghz-compatible output).
#[derive(Parser, Debug)]
#[command(name = "massa-load", version)]
struct Args {
    /// Server address, host:port (as ghz takes it).
    #[arg(value_name = "HOST", required_unless_present = "host")]
    address: Option<String>,
    /// Server address, host:port (alternative to the positional HOST).
    #[arg(long, conflicts_with = "address")]
    host: Option<String>,
    /// Method to call: package.Service/Method.
    #[arg(long)]
    call: String,
    /// Request as JSON; `{{i}}` (or ghz's `{{.RequestNumber}}`) is replaced
    /// by the request number (modulo `--keys`), `{{n}}` by the request
    /// number itself.
    #[arg(short = 'd', long)]
    data: Option<String>,
    /// Request as raw protobuf bytes from a file.
    #[arg(long, conflicts_with = "data")]
    binary_file: Option<PathBuf>,
    /// .proto files describing the method (compiled here, no protoc).
    #[arg(long)]
    proto: Vec<PathBuf>,
    /// Import paths for --proto.
    #[arg(long)]
    import_path: Vec<PathBuf>,
    /// A FileDescriptorSet (protoc --include_imports -o).
    #[arg(long)]
    protoset: Option<PathBuf>,
    /// Take `{{i}}` modulo N: spread calls over N keys.
    #[arg(long)]
    keys: Option<u64>,
    /// Total requests (default 200 unless --duration is given).
    #[arg(short = 'n', long)]
    total: Option<u64>,
    /// Run for this long (e.g. 10s), then stop.
    #[arg(short = 'z', long, value_parser = massa::config::parse_duration)]
    duration: Option<Duration>,
    /// Connections to the server.
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Open-loop rate: requests are due at fixed intervals and latency is
    /// measured from when each was due.
    #[arg(long)]
    rps: Option<f64>,
    /// Give up on a call after this long.
    #[arg(long, default_value = "20s", value_parser = massa::config::parse_duration)]
    timeout: Duration,
    /// Messages per call for client-streaming and bidi methods.
    #[arg(long, default_value_t = 1)]
    stream_messages: usize,
    /// Load threads, one executor each (default: one per --cpus entry, else 1).
    #[arg(long)]
    threads: Option<usize>,
    /// CPUs to pin load threads to (e.g. 0,1), round-robin.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// `summary` (human) or `json` (ghz's JSON report).
    #[arg(long, default_value = "summary")]
    format: String,
    /// Progress line on stderr every second (default: when stderr is a TTY).
    #[arg(long)]
    progress: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("massa-load: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    if !matches!(args.format.as_str(), "summary" | "json") {
        return Err(format!("--format {}: expected summary or json", args.format));
    }
    let pool = request::descriptors(args.protoset.as_ref(), &args.proto, &args.import_path)?;
    let binary = match &args.binary_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()))?.into()),
        None => None,
    };
    let plan = request::plan(&args.call, pool.as_ref(), args.data.as_deref(), binary, args.keys)?;
    let address = args.host.clone().or(args.address.clone()).unwrap_or_default();
    let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("{address}: expected host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("{address}: bad port"))?;
    // Fail fast, with one line, when nothing listens there.
    let addr = (host, port).to_socket_addrs().map_err(|e| format!("{address}: {e}"))?.next();
    let addr = addr.ok_or_else(|| format!("{address}: no address"))?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot reach {address}: {e}"))?;

    let total = args.total.or(if args.duration.is_none() { Some(200) } else { None });
    let load = run::Load {
        plan: Arc::new(plan),
        target: Target::Tcp { host: host.to_owned(), port },
        connections: args.connections.max(1),
        concurrency: args.concurrency.max(1),
        total,
        duration: args.duration,
        rps: args.rps.filter(|r| *r > 0.0),
        timeout: args.timeout,
        stream_messages: args.stream_messages,
        threads: args.threads.unwrap_or(args.cpus.len().max(1)).max(1),
        cpus: args.cpus.clone(),
    };
    let options = options(&args, &address, total);
    let progress = Arc::new(run::Progress { next: 0.into(), done: 0.into(), stop: false.into(), finished: false.into() });
    let show = args.progress || std::io::stderr().is_terminal();
    let watcher = {
        let (progress, duration) = (progress.clone(), args.duration);
        std::thread::spawn(move || watch(&progress, total, duration, show))
    };
    let date = std::time::SystemTime::now();
    let (stats, elapsed) = run::run(load, progress.clone());
    progress.finished.store(true, Ordering::Relaxed);
    progress.stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let end_reason = if args.duration.is_some() && total.is_none() { "timeout" } else { "normal" };
    match args.format.as_str() {
        "json" => println!("{}", stats.ghz_json(elapsed, end_reason, options, date)),
        _ => print!("{}", stats.summary(elapsed)),
    }
    let failed = stats.count() - stats.codes.get("OK").copied().unwrap_or(0);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The run's settings in ghz's `options` shape (durations in nanoseconds).
fn options(args: &Args, address: &str, total: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "call": args.call,
        "host": address,
        "proto": args.proto.first(),
        "import-paths": args.import_path,
        "protoset": args.protoset,
        "binary": args.binary_file.is_some(),
        "data": args.data.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
        "insecure": true,
        "total": total.unwrap_or(0),
        "concurrency": args.concurrency,
        "connections": args.connections,
        "rps": args.rps.unwrap_or(0.0),
        "duration": args.duration.map_or(0, |d| d.as_nanos() as u64),
        "timeout": args.timeout.as_nanos() as u64,
        "cpus": args.cpus.len(),
    })
}

/// How long after `--duration` plus the in-flight grace the process exits
/// regardless, so a wedged connection can never hang a scripted benchmark.
const HARD_STOP_SLACK: Duration = Duration::from_secs(3);

/// Prints progress each second from the second second on (so short runs
/// stay quiet) and stops new calls at the duration; calls in flight get
/// `run::GRACE`, and past that plus `HARD_STOP_SLACK` the process exits.
fn watch(progress: &run::Progress, total: Option<u64>, duration: Option<Duration>, show: bool) {
    let start = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut next_line = Duration::from_secs(2);
    let mut printed = false;
    while !progress.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let elapsed = start.elapsed();
        if duration.is_some_and(|d| elapsed >= d) {
            progress.stop.store(true, Ordering::Relaxed);
        }
        if show && elapsed >= next_line {
            next_line += Duration::from_secs(1);
            let done = progress.done.load(Ordering::Relaxed);
            let of = total.map(|t| format!("/{t}")).unwrap_or_default();
            let line = format!("{:>6.1}s  {done}{of} done, {:.0} req/s", elapsed.as_secs_f64(), done as f64 / elapsed.as_secs_f64());
            // A terminal gets one line rewritten in place; a log gets lines.
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            printed = true;
        }
    }
    if printed && tty {
        eprintln!();
    }
    if let Some(d) = duration {
        while !progress.finished.load(Ordering::Relaxed) {
            if start.elapsed() >= d + run::GRACE + HARD_STOP_SLACK {
                eprintln!("massa-load: calls still running {:?} after --duration; giving up", run::GRACE + HARD_STOP_SLACK);
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

//! Configuration: every setting is a CLI flag with an environment variable
//! (the reference proxy's names where it has one, `MASSA_*` otherwise), and
//! an optional TOML file supplies defaults. Precedence: flag > env > file >
//! built-in default. `massa --help` is the reference.

use std::{ffi::OsString, net::{IpAddr, SocketAddr}, num::NonZeroUsize, path::PathBuf, time::Duration};

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// Bad flags or environment, or `--help` / `--version` (clap renders it).
    Clap(clap::Error),
    /// A config file problem.
    Invalid(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Clap(e) => write!(f, "{}", e.render()),
            LoadError::Invalid(s) => f.write_str(s),
        }
    }
}

/// Which I/O driver each worker runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IoDriver {
    /// io_uring when the kernel (and seccomp) allow it, epoll otherwise.
    Auto,
    Uring,
    Epoll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Entity state store.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded RocksDB in `--data-dir`.
    Rocksdb,
    /// In memory; lost at exit.
    Memory,
    /// A PostgreSQL database at `--postgres-url`.
    Postgres,
}

/// When a write counts as done.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Async,
}

/// Massa: a thread-per-core Cloudstate sidecar proxy.
///
/// Massa discovers the user function's services (Cloudstate protocol 0.2,
/// older 0.0/0.1 SDKs accepted), then serves them over gRPC on the public
/// port, one pinned executor per core.
#[derive(Parser, Debug, Clone)]
#[command(name = "massa", version)]
pub struct Config {
    /// Public port: the function's gRPC services, reflection and health.
    #[arg(long, env = "HTTP_PORT", default_value_t = 9000)]
    pub http_port: u16,

    /// Interface the public port binds.
    #[arg(long, env = "MASSA_HTTP_INTERFACE", default_value = "0.0.0.0")]
    pub http_interface: IpAddr,

    /// Admin HTTP port: /health/live, /health/ready, /metrics.
    #[arg(long, env = "METRICS_PORT", default_value_t = 9090)]
    pub admin_port: u16,

    /// Interface the admin port binds.
    #[arg(long, env = "METRICS_HOST", default_value = "0.0.0.0")]
    pub admin_interface: IpAddr,

    /// Host of the user function.
    #[arg(long, env = "USER_FUNCTION_HOST", default_value = "127.0.0.1")]
    pub user_function_host: String,

    /// Port of the user function.
    #[arg(long, env = "USER_FUNCTION_PORT", default_value_t = 8080)]
    pub user_function_port: u16,

    /// Reach the user function over this Unix socket instead of TCP.
    #[arg(long, env = "MASSA_USER_FUNCTION_UDS")]
    pub user_function_uds: Option<PathBuf>,

    /// h2 connections from each worker to the user function.
    #[arg(long, env = "MASSA_USER_FUNCTION_CONNECTIONS", default_value_t = 2)]
    pub user_function_connections: usize,

    /// Worker threads (one executor each); default: CPUs available to the
    /// process, cgroup quota and affinity mask included.
    #[arg(long, env = "MASSA_WORKERS")]
    pub workers: Option<usize>,

    /// Pin each worker to one CPU of the process's affinity mask.
    #[arg(long, env = "MASSA_PIN_WORKERS", default_value_t = true, action = ArgAction::Set)]
    pub pin_workers: bool,

    /// I/O driver.
    #[arg(long, env = "MASSA_IO_DRIVER", value_enum, default_value_t = IoDriver::Auto)]
    pub io_driver: IoDriver,

    /// Refuse functions that do not report protocol 0.2 (the reference's
    /// protocol-compatibility-check).
    #[arg(long, env = "MASSA_STRICT_PROTOCOL")]
    pub strict_protocol: bool,

    /// Largest gRPC message accepted from clients or the function.
    #[arg(long, env = "MASSA_MAX_MESSAGE_SIZE", default_value = "12MiB", value_parser = parse_size)]
    pub max_message_size: usize,

    /// How long in-flight calls may take to finish on SIGTERM/SIGINT.
    #[arg(long, env = "MASSA_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Where entity state lives.
    #[arg(long, env = "MASSA_STORE", value_enum, default_value_t = StoreKind::Rocksdb)]
    pub store: StoreKind,

    /// The database of `--store postgres`: a `postgresql://user@host:port/db`
    /// URL or `host=... dbname=...` pairs (plaintext; no TLS yet).
    #[arg(long, env = "MASSA_POSTGRES_URL")]
    pub postgres_url: Option<String>,

    /// How long a command waits for storage (a read, a batch, a lease):
    /// past it a read or a batch not yet started fails UNAVAILABLE, and a
    /// batch already sent fails DEADLINE_EXCEEDED as outcome unknown, so
    /// an unreachable database never leaves a caller without an answer.
    #[arg(long, env = "MASSA_STORE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub store_timeout: Duration,

    /// Lease shards the entity key space is split into (`--store
    /// postgres`); fixed for a cluster on its first start.
    #[arg(long, env = "MASSA_SHARDS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub shards: u32,

    /// How long a shard lease lasts unrenewed (by the database clock); a
    /// crashed proxy's entities are taken over after at most this long.
    #[arg(long, env = "MASSA_LEASE_DURATION", default_value = "10s", value_parser = parse_lease_duration)]
    pub lease_duration: Duration,

    /// How other proxies name and reach this one: its lease owner name and
    /// cluster member id, `host:port` or a bare host (the public port is
    /// appended). Default: `$POD_IP`, else the host name.
    #[arg(long, env = "MASSA_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,

    /// Gossip with these proxies to form a cluster (`--store postgres`
    /// only): `host:port` or bare hosts (then `--cluster-port`),
    /// comma-separated; names are resolved again every minute (e.g. a
    /// Kubernetes headless Service). Seeds that are this proxy are skipped.
    #[arg(long, env = "MASSA_CLUSTER_SEEDS", value_delimiter = ',')]
    pub cluster_seeds: Vec<String>,

    /// UDP port of cluster gossip, bound on the advertised host (or every
    /// interface when that is not this machine's address).
    #[arg(long, env = "MASSA_CLUSTER_PORT", default_value_t = 9100)]
    pub cluster_port: u16,

    /// RocksDB data directory.
    #[arg(long, env = "MASSA_DATA_DIR", default_value = "./massa-data")]
    pub data_dir: PathBuf,

    /// Writes fail (cleanly) while the data volume has less free space.
    #[arg(long, env = "MASSA_MIN_FREE_DISK", default_value = "64MiB", value_parser = parse_size)]
    pub min_free_disk: usize,

    /// `sync`: fsync every batch before replies are released; `async`:
    /// written to the WAL, fsync left to the OS.
    #[arg(long, env = "MASSA_DURABILITY", value_enum, default_value_t = Durability::Sync)]
    pub durability: Durability,

    /// Idle time after which an entity is passivated (its function stream
    /// closed), unless the function's discovery overrides it.
    #[arg(long, env = "MASSA_PASSIVATION_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub passivation_timeout: Duration,

    /// Active entities per core, a hard cap: at it the least recently used
    /// idle one is passivated first; if every one is busy the activation
    /// fails with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MASSA_MAX_ACTIVE_ENTITIES_PER_CORE", default_value_t = 100_000)]
    pub max_active_entities_per_core: usize,

    /// Per-core cache of passivated entities' state (bytes).
    #[arg(long, env = "MASSA_ENTITY_CACHE", default_value = "64MiB", value_parser = parse_size)]
    pub entity_cache: usize,

    /// Commands queued per entity while one is in flight; more fail with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MASSA_ENTITY_QUEUE", default_value_t = 1024)]
    pub entity_queue: usize,

    /// Bytes of request messages queued per entity; more fail with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "MASSA_ENTITY_QUEUE_BYTES", default_value = "16MiB", value_parser = parse_size)]
    pub entity_queue_bytes: usize,

    /// How long the function may take to answer one entity command; then
    /// the command fails with DEADLINE_EXCEEDED and the entity restarts.
    #[arg(long, env = "MASSA_ENTITY_COMMAND_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub entity_command_timeout: Duration,

    /// Asynchronous side effects running per core; beyond it a new one runs
    /// before its command's reply (backpressure instead of unbounded tasks).
    #[arg(long, env = "MASSA_MAX_ASYNC_SIDE_EFFECTS", default_value_t = 1024)]
    pub max_async_side_effects: usize,

    /// Connections per core to the function when its MAX_CONCURRENT_STREAMS
    /// is reached on the first `--user-function-connections`.
    #[arg(long, env = "MASSA_MAX_USER_FUNCTION_CONNECTIONS", default_value_t = 32)]
    pub max_user_function_connections: usize,

    /// Client connections open at once, all cores together; more are
    /// refused (HTTP/2 GOAWAY or HTTP/1.1 503).
    #[arg(long, env = "MASSA_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Client connections open at once on one core.
    #[arg(long, env = "MASSA_MAX_CONNECTIONS_PER_CORE", default_value_t = 4096)]
    pub max_connections_per_core: usize,

    /// Streams a client may open at once on one HTTP/2 connection.
    #[arg(long, env = "MASSA_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    pub max_concurrent_streams: u32,

    /// HTTP/2 receive window per stream: request bytes a client may send
    /// before its call reads them.
    #[arg(long, env = "MASSA_STREAM_WINDOW", default_value = "1MiB", value_parser = parse_window)]
    pub stream_window: u32,

    /// HTTP/2 receive window per connection (all its streams together).
    #[arg(long, env = "MASSA_CONNECTION_WINDOW", default_value = "16MiB", value_parser = parse_window)]
    pub connection_window: u32,

    /// Time a new connection has to send its preface / request head and
    /// finish the HTTP/2 handshake.
    #[arg(long, env = "MASSA_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// A client connection with no open stream for this long is closed
    /// (HTTP/2 GOAWAY).
    #[arg(long, env = "MASSA_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time a started request message (or a unary request) has to arrive
    /// completely; then the call fails with DEADLINE_EXCEEDED.
    #[arg(long, env = "MASSA_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// A reply that cannot make progress because the client does not open
    /// its flow-control window for this long is reset (CANCEL).
    #[arg(long, env = "MASSA_SEND_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub send_stall_timeout: Duration,

    /// Bytes one client connection may make Massa hold beyond the HTTP/2
    /// windows: partial request messages and replies waiting for window.
    #[arg(long, env = "MASSA_CONNECTION_BUFFER", default_value = "16MiB", value_parser = parse_size)]
    pub connection_buffer: usize,

    /// The same, for all connections of one core together.
    #[arg(long, env = "MASSA_CORE_BUFFER", default_value = "256MiB", value_parser = parse_size)]
    pub core_buffer: usize,

    /// Largest plain HTTP request body (HTTP/JSON, gRPC-Web) Massa reads;
    /// larger ones get 413 before they are read.
    #[arg(long, env = "MASSA_MAX_HTTP_BODY", default_value = "4MiB", value_parser = parse_size)]
    pub max_http_body: usize,

    /// Browser origins allowed to call the public port cross-origin
    /// (gRPC-Web, HTTP/JSON), comma-separated, e.g.
    /// `https://app.example.com`; `*` allows any. Default: none.
    #[arg(long, env = "MASSA_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// PEM certificate chain (end entity first) for TLS on the public port,
    /// with `--tls-key`; without them the port speaks plaintext (h2c).
    /// Both are reloaded when they change and on SIGHUP.
    #[arg(long, env = "MASSA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MASSA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates: clients must present a certificate one of them
    /// signed (mTLS); its subject reaches the function as the request
    /// header `x-forwarded-client-cert: Subject="CN=..."`.
    #[arg(long, env = "MASSA_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Log format (filter with RUST_LOG).
    #[arg(long, env = "MASSA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// TOML file of defaults; keys are the long flag names (`http-port = 9000`).
    #[arg(long, env = "MASSA_CONFIG")]
    pub config: Option<PathBuf>,
}

impl Config {
    /// Parses flags, environment and the optional config file.
    pub fn load<I, T>(args: I) -> Result<Config, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut cmd = Config::command();
        if let Some(path) = config_path(&args) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| LoadError::Invalid(format!("reading {}: {e}", path.display())))?;
            let defaults = file_defaults(&text).map_err(|e| LoadError::Invalid(format!("{}: {e}", path.display())))?;
            for (key, value) in defaults {
                let id = key.replace('-', "_");
                if id == "config" || !cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
                    return Err(LoadError::Invalid(format!("{}: unknown setting `{key}`", path.display())));
                }
                cmd = cmd.mut_arg(id, |a| a.default_value(value));
            }
        }
        let matches = cmd.try_get_matches_from(args).map_err(LoadError::Clap)?;
        Config::from_arg_matches(&matches).map_err(LoadError::Clap)
    }

    /// This proxy's advertised `host:port`: `--advertise-address`, else
    /// `pod_ip`, else `hostname()`, a bare host getting `public_port`.
    pub fn advertised(&self, public_port: u16, pod_ip: Option<String>, hostname: impl FnOnce() -> String) -> String {
        let host = self.advertise_address.clone().or(pod_ip).unwrap_or_else(hostname);
        with_port(&host, public_port)
    }

    /// Worker count: the flag, or what the process may run on.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| default_workers(std::thread::available_parallelism().ok())).max(1)
    }
}

/// One worker per CPU the process may use. std's `available_parallelism`
/// already honours the cgroup CPU quota and the affinity mask.
pub fn default_workers(available: Option<NonZeroUsize>) -> usize {
    available.map_or(1, NonZeroUsize::get)
}

/// `addr` if it has a port (`host:port`, `[v6]:port`), else the bare host
/// (a name, an IPv4 or IPv6 address, bracketed or not) with `port`.
pub fn with_port(addr: &str, port: u16) -> String {
    if addr.parse::<SocketAddr>().is_ok() {
        return addr.to_owned();
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        return SocketAddr::new(ip, port).to_string();
    }
    match addr.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') && p.parse::<u16>().is_ok() => addr.to_owned(),
        _ => format!("{addr}:{port}"),
    }
}

/// The host of a `host:port` (IPv6 without its brackets).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("MASSA_CONFIG").map(PathBuf::from)
}

/// Flattens a TOML document of scalars into `(key, value-as-flag-text)`.
fn file_defaults(text: &str) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    table
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Float(f) => f.to_string(),
                other => return Err(format!("setting `{k}` must be a string, number or bool, not {}", other.type_str())),
            };
            Ok((k, v))
        })
        .collect()
}

/// A lease duration: long enough to be renewed a few times over.
fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(300) {
        return Err(format!("{s} is too short for a lease (at least 300ms: it is renewed every third of it)"));
    }
    Ok(d)
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration `{s}` (try 10s, 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" => n / 1e6,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("invalid duration unit `{u}` in `{s}`")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// An HTTP/2 window: a size from 64 KiB - 1 (the protocol's initial value)
/// to 2^31 - 1.
fn parse_window(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !(65_535..=0x7fff_ffff).contains(&n) {
        return Err(format!("window `{s}` must be between 65535 and 2147483647 bytes"));
    }
    Ok(n as u32)
}

/// `12MiB`, `12M`, `64KiB`, `1k`, or a bare number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("invalid size `{s}` (try 12MiB)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        u => return Err(format!("invalid size unit `{u}` in `{s}`")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size `{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert_eq!(parse_size("12MiB"), Ok(12 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 furlongs").is_err());
    }

    #[test]
    fn defaults_match_the_reference_proxy() {
        let c = Config::load(["massa"]).unwrap();
        assert_eq!(c.http_port, 9000);
        assert_eq!(c.admin_port, 9090);
        assert_eq!(c.user_function_port, 8080);
        assert_eq!(c.user_function_host, "127.0.0.1");
        assert_eq!(c.max_message_size, 12 << 20);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    }

    #[test]
    fn file_supplies_defaults_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("massa-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("massa.toml");
        std::fs::write(&file, "http-port = 9100\nuser_function_port = 8181\nstrict-protocol = true\n").unwrap();
        let f = file.to_str().unwrap();
        let c = Config::load(["massa", "--config", f, "--http-port", "9200"]).unwrap();
        assert_eq!((c.http_port, c.user_function_port, c.strict_protocol), (9200, 8181, true));
        std::fs::write(&file, "no-such-setting = 1\n").unwrap();
        let err = Config::load(["massa", "--config", f]).unwrap_err().to_string();
        assert!(err.contains("unknown setting `no-such-setting`"), "{err}");
    }

    #[test]
    fn advertised_address_gets_the_public_port_when_bare() {
        assert_eq!(with_port("10.1.2.3", 9000), "10.1.2.3:9000");
        assert_eq!(with_port("10.1.2.3:8000", 9000), "10.1.2.3:8000");
        assert_eq!(with_port("pod-0.massa", 9000), "pod-0.massa:9000");
        assert_eq!(with_port("pod-0.massa:8000", 9000), "pod-0.massa:8000");
        assert_eq!(with_port("fd00::1", 9000), "[fd00::1]:9000");
        assert_eq!(with_port("[fd00::1]", 9000), "[fd00::1]:9000");
        assert_eq!(with_port("[fd00::1]:8000", 9000), "[fd00::1]:8000");
        assert_eq!((host_of("[fd00::1]:8000"), host_of("pod-0.massa:1"), host_of("10.1.2.3:9")), ("fd00::1", "pod-0.massa", "10.1.2.3"));

        let host = || "box".to_owned();
        let c = Config::load(["massa"]).unwrap();
        assert_eq!(c.advertised(9000, None, host), "box:9000");
        assert_eq!(c.advertised(9000, Some("10.0.0.7".into()), host), "10.0.0.7:9000");
        let c = Config::load(["massa", "--advertise-address", "127.0.0.2"]).unwrap();
        assert_eq!(c.advertised(9001, Some("10.0.0.7".into()), host), "127.0.0.2:9001");
    }

    #[test]
    fn cluster_flags() {
        let c = Config::load(["massa"]).unwrap();
        assert_eq!((c.cluster_seeds.len(), c.cluster_port), (0, 9100));
        let c = Config::load(["massa", "--cluster-seeds", "massa-headless,10.0.0.1:9200", "--cluster-port", "9300"]).unwrap();
        assert_eq!((c.cluster_seeds, c.cluster_port), (vec!["massa-headless".to_owned(), "10.0.0.1:9200".to_owned()], 9300));
    }

    #[test]
    fn worker_default_follows_available_cpus() {
        assert_eq!(default_workers(NonZeroUsize::new(6)), 6);
        assert_eq!(default_workers(None), 1);
    }
}

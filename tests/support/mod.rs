//! Test DSL: start the real `massa` binary and the real example user
//! function on loopback ports, and call through the proxy with a gRPC client
//! (Massa's own HTTP/2 client, which the proxy uses towards functions).
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    cell::RefCell,
    rc::Rc,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use massa::http2::Headers;
use prost::Message;

use massa::config::IoDriver;
use massa::grpc::{encode_prost, Status};
use massa::proto::example::echo::{EchoReply, EchoRequest};
use massa::userfn::{CallResponse, Pool, Target};

pub mod cart;
pub mod interceptor;
pub mod netns;
pub mod postgres;

/// Upper bound for anything a test waits for; generous, never a threshold.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The value of `var`, a prerequisite prepared outside the test (see
/// tests/run); panics with `how` to get it, so a missing prerequisite fails
/// the test instead of passing it unrun.
#[track_caller]
pub fn require_env(var: &str, how: &str) -> String {
    match std::env::var(var) {
        Ok(value) => value,
        Err(_) => panic!("{var} not set: {how}"),
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed on drop, with its stderr captured.
pub struct Proc {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Spawns any command with stderr captured (killed on drop).
    pub fn spawn_command(cmd: Command) -> Proc {
        Proc::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Proc {
        let level = std::env::var("MASSA_TEST_LOG").unwrap_or_else(|_| "info".into());
        let echo = std::env::var_os("MASSA_TEST_LOG").is_some();
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).env("RUST_LOG", level);
        let mut child = cmd.spawn().expect("spawning test process");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc { child, stderr }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the captured stderr contains `needle`.
    pub fn must_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < PATIENCE, "never logged {needle:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for exit and returns the status code.
    pub fn must_exit(&mut self) -> i32 {
        self.must_exit_within(PATIENCE)
    }

    /// [`Proc::must_exit`] for a process whose work takes longer than
    /// [`PATIENCE`] (e.g. a browser run); `bound` is generous, never a threshold.
    pub fn must_exit_within(&mut self, bound: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(start.elapsed() < bound, "process did not exit; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the example user function on `port` with extra flags.
pub fn start_example_fn(port: u16, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_massa-example-fn"));
    cmd.args(["--port", &port.to_string()]).args(extra);
    let p = Proc::spawn(cmd);
    p.must_log("listening on");
    p
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("massa-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the TCK model user function (`massa-tck-model`) on `port`,
/// declaring the entity kinds Massa serves today.
pub fn start_tck_model(port: u16) -> Proc {
    start_tck_model_with(port, &["--only", "action,valueentity,eventsourced"])
}

/// Starts the TCK model user function with its own flags.
pub fn start_tck_model_with(port: u16, flags: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_massa-tck-model"));
    cmd.args(["--port", &port.to_string()]).args(flags);
    let p = Proc::spawn(cmd);
    p.must_log("listening on");
    p
}

/// A running proxy and its ports.
pub struct Massa {
    pub proc: Proc,
    pub port: u16,
    pub admin: u16,
    /// Its RocksDB directory, unless the test chose one.
    pub data: Option<TempDir>,
}

/// Starts `massa` in front of a function on `fn_port`; does not wait.
pub fn spawn_massa(fn_port: u16, extra: &[&str]) -> Massa {
    spawn_massa_under(&[], fn_port, extra)
}

/// [`spawn_massa`] with the binary started by `wrapper` (a program and its
/// arguments, massa's path and flags appended), e.g. a tracer.
pub fn spawn_massa_under(wrapper: &[&str], fn_port: u16, extra: &[&str]) -> Massa {
    let (port, admin) = (free_port(), free_port());
    let bin = env!("CARGO_BIN_EXE_massa");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    let data = (!extra.contains(&"--data-dir")).then(|| TempDir::new("data"));
    if let Some(dir) = &data {
        cmd.args(["--data-dir", dir.path()]);
    }
    cmd.args(["--http-port", &port.to_string(), "--admin-port", &admin.to_string()])
        .args(["--user-function-port", &fn_port.to_string(), "--http-interface", "127.0.0.1"])
        .args(["--admin-interface", "127.0.0.1"])
        .args(extra);
    Massa { proc: Proc::spawn(cmd), port, admin, data }
}

/// Starts `massa` and waits until `/health/ready` says so.
pub fn start_massa(fn_port: u16, extra: &[&str]) -> Massa {
    let m = spawn_massa(fn_port, extra);
    m.must_be_ready();
    m
}

impl Massa {
    pub fn must_be_ready(&self) {
        let start = Instant::now();
        while http_get(self.admin, "/health/ready").map(|(s, _)| s) != Some(200) {
            assert!(start.elapsed() < PATIENCE, "massa never became ready; log:\n{}", self.proc.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.1 GET; `(status, body)`, `None` if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at("127.0.0.1", port, path)
}

/// [`http_get`] to another address (a test's network namespace).
pub fn http_get_at(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

thread_local! {
    /// Pools opened during the current [`run`]; closed before it returns.
    static LIVE_POOLS: RefCell<Vec<Rc<RefCell<Option<Rc<Pool>>>>>> = const { RefCell::new(Vec::new()) };
}

/// One series of the admin port's Prometheus text, e.g. `massa_active_entities`
/// or `name{label="v"}`.
pub fn metric(admin: u16, series: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics").expect("metrics answer");
    let prefix = format!("{series} ");
    let value = body.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {series} in\n{body}"));
    value.parse().unwrap()
}

/// Whether `port` serves `Echo/Say` again within a few seconds (after an
/// attack has been called off).
pub fn serves_again(port: u16) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        run(async { Client::new(port).say("back").await.is_ok() })
    })
}

/// An HTTP/1.1 POST of a JSON body, as the TCK's HTTP checks send it.
pub fn http_post_json(port: u16, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// Runs an async test body on a fresh executor. Client connections opened
/// inside are closed before the executor goes away: an h2 connection task
/// must not be dropped from outside its runtime (monoio would drop it
/// inline from the waker, inside h2's own lock).
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    let body = async {
        let out = f.await;
        for pool in LIVE_POOLS.with(|l| l.take()) {
            pool.borrow_mut().take();
        }
        out
    };
    massa::runtime::block_on(IoDriver::Epoll, body).expect("test runtime").0
}

/// A gRPC client to one address; connects lazily inside each [`run`].
pub struct Client {
    host: String,
    port: u16,
    pool: Rc<RefCell<Option<Rc<Pool>>>>,
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client::at("127.0.0.1", port)
    }

    /// A client to another address (a test's network namespace).
    pub fn at(host: &str, port: u16) -> Client {
        Client { host: host.to_owned(), port, pool: Rc::default() }
    }

    pub fn pool(&self) -> Rc<Pool> {
        let mut slot = self.pool.borrow_mut();
        if slot.is_none() {
            *slot = Some(Rc::new(Pool::new(Target::Tcp { host: self.host.clone(), port: self.port }, 1)));
            LIVE_POOLS.with(|l| l.borrow_mut().push(self.pool.clone()));
        }
        slot.clone().unwrap()
    }

    /// Sends framed messages, returns response headers and messages, or
    /// the status of a failed call (with the messages that came first).
    pub async fn call(
        &self,
        path: &str,
        headers: Option<&Headers>,
        framed: Vec<Bytes>,
    ) -> (Option<Headers>, Vec<Bytes>, Result<(), Status>) {
        let pool = self.pool();
        let (mut send, response) = match pool.open(&pool.endpoint(path), headers).await {
            Ok(call) => call,
            Err(s) => return (None, Vec::new(), Err(s)),
        };
        for chunk in framed {
            send.send_data(chunk, false).unwrap();
        }
        send.send_data(Bytes::new(), true).unwrap();
        let mut response = match CallResponse::open(response, 64 << 20).await {
            Ok(r) => r,
            Err(s) => return (None, Vec::new(), Err(s)),
        };
        let headers = response.headers().clone();
        let mut messages = Vec::new();
        loop {
            match response.message().await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return (Some(headers), messages, Ok(())),
                Err(s) => return (Some(headers), messages, Err(s)),
            }
        }
    }

    /// Calls an Echo method with `requests`, returns reply texts or status.
    pub async fn echo(&self, method: &str, requests: &[EchoRequest]) -> Result<Vec<String>, Status> {
        let framed = requests.iter().map(encode_prost).collect();
        let (_, messages, status) = self.call(&format!("/example.echo.Echo/{method}"), None, framed).await;
        status?;
        Ok(messages.into_iter().map(|m| EchoReply::decode(m).unwrap().text).collect())
    }

    /// `Echo/Say` with text.
    pub async fn say(&self, text: &str) -> Result<String, Status> {
        Ok(self.echo("Say", &[text_req(text)]).await?.remove(0))
    }
}

pub fn text_req(text: &str) -> EchoRequest {
    EchoRequest { text: text.to_owned(), ..Default::default() }
}

pub fn header(name: &'static str, value: &'static str) -> Headers {
    let mut h = Headers::new();
    h.push(name.as_bytes(), value.as_bytes());
    h
}

/// Polls `f` until it returns `Some`, within [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

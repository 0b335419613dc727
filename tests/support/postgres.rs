//! A throwaway PostgreSQL server for tests: a fresh cluster (initdb) in a
//! directory under /tmp, the server on a free port of 127.0.0.1 (and of one
//! more address for the cluster tests' namespaces, if asked), stopped and
//! removed on drop. It runs as the `postgres` user when the
//! tests run as root (the server refuses root), which is why the directory
//! is under /tmp and not in a private temp dir it could not enter.
//!
//! Needs only std and libc: the store's unit tests include this file too
//! (`#[path]` in src/store/tests.rs), so one launcher serves both.
#![allow(dead_code)]

use std::{
    ffi::CString,
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

/// Upper bound on a server start or stop; generous, never a threshold.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Postgres {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    /// `listen_addresses`: 127.0.0.1, and maybe one more.
    listen: String,
    /// `(uid, gid)` of the `postgres` user when running as root.
    user: Option<(u32, u32)>,
    server: Option<Child>,
}

impl Postgres {
    /// Creates a cluster and starts its server; panics with what to
    /// install if the PostgreSQL server binaries are missing.
    pub fn start() -> Postgres {
        Postgres::start_listening(None)
    }

    /// [`Postgres::start`], also listening on `addr` for clients of the
    /// subnet `clients` (CIDR), which it trusts as it trusts loopback.
    pub fn start_on(addr: std::net::Ipv4Addr, clients: &str) -> Postgres {
        Postgres::start_listening(Some((addr, clients)))
    }

    fn start_listening(extra: Option<(std::net::Ipv4Addr, &str)>) -> Postgres {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let bin = server_binaries();
        let root = PathBuf::from(format!("/tmp/massa-pg-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        // SAFETY: geteuid has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(postgres_user);
        if let Some((uid, gid)) = user {
            let path = CString::new(root.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: `path` is NUL-terminated.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, gid) }, 0, "chown {}", root.display());
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = match extra {
            Some((addr, _)) => format!("127.0.0.1,{addr}"),
            None => "127.0.0.1".to_owned(),
        };
        let mut pg = Postgres { bin, root, port, listen, user, server: None };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.data()).args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"]);
        let out = initdb.stdout(Stdio::null()).output().expect("running initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        if let Some((_, clients)) = extra {
            let hba = pg.data().join("pg_hba.conf");
            let mut rules = fs::read_to_string(&hba).unwrap();
            rules.push_str(&format!("host all all {clients} trust\n"));
            fs::write(&hba, rules).unwrap();
        }
        pg.start_server();
        pg
    }

    /// A connection string for the `postgres` database as its superuser.
    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    /// [`Postgres::url`] through another address it listens on.
    pub fn url_at(&self, host: impl std::fmt::Display) -> String {
        format!("host={host} port={} user=postgres dbname=postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port
    /// and data, and waits until it accepts connections.
    pub fn start_server(&mut self) {
        assert!(self.server.is_none(), "already running");
        let log = fs::File::create(self.root.join("server.log")).unwrap();
        let mut cmd = self.command("postgres");
        cmd.arg("-D").arg(self.data()).args(["-p", &self.port.to_string(), "-c", &format!("listen_addresses={}", self.listen)]);
        cmd.arg("-k").arg(&self.root).stdout(Stdio::null()).stderr(log);
        self.server = Some(cmd.spawn().expect("starting postgres"));
        let start = Instant::now();
        loop {
            let mut ready = self.command("pg_isready");
            ready.args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"]);
            if ready.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()) {
                return;
            }
            if let Some(exit) = self.server.as_mut().and_then(|s| s.try_wait().unwrap()) {
                panic!("postgres exited ({exit}); log:\n{}", self.log());
            }
            assert!(start.elapsed() < PATIENCE, "postgres never became ready; log:\n{}", self.log());
            sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, data is kept).
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else { return };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
        let start = Instant::now();
        while server.try_wait().unwrap().is_none() {
            if start.elapsed() > PATIENCE {
                let _ = server.kill();
                break;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = server.wait();
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// One of the server binaries, as the `postgres` user if need be.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid).env("HOME", &self.root);
        }
        cmd.current_dir(&self.root);
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The newest /usr/lib/postgresql/VERSION/bin with a server in it.
fn server_binaries() -> PathBuf {
    let versions = fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    let mut found: Vec<(u32, PathBuf)> = versions
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").exists())
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no PostgreSQL server in /usr/lib/postgresql: `apt-get install postgresql` (.ci/run installs it)"),
    }
}

/// The `postgres` user's ids (the Debian package creates it).
fn postgres_user() -> (u32, u32) {
    let name = CString::new("postgres").unwrap();
    // SAFETY: `name` is NUL-terminated; the result is read before any other
    // call could reuse libc's static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no `postgres` user: `apt-get install postgresql` creates it");
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

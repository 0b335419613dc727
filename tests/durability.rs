//! Durability as the kernel sees it: with `--durability sync` the RocksDB
//! WAL write that carries an event is fsynced before the first byte of the
//! command's reply is written to the client. A SIGKILL test cannot show
//! this (the page cache outlives the process), so the real `massa` binary
//! runs under strace and one checker reads the syscalls; `--durability
//! async` must fail that checker, which proves it can fail.
//!
//! `--io-driver epoll` keeps socket writes visible: under io_uring they are
//! not syscalls.

mod support;

use std::{collections::BTreeMap, fs, process::Command, thread::sleep, time::Duration};

use massa::grpc::encode_prost;
use massa::proto::com::example::shoppingcart::AddLineItem;
use support::*;

const ADD_ITEM: &str = "/com.example.shoppingcart.ShoppingCart/AddItem";

/// Every way bytes leave the process, and the two calls that make a file
/// durable (`sync_file_range` does not, so it is not traced).
const TRACED: &str = "trace=write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,fsync,fdatasync";

#[test]
fn sync_durability_fsyncs_the_event_before_the_reply_is_written() {
    let trace = traced_add_item("sync", "durable-pear");
    match trace.check("durable-pear") {
        Ok(o) => eprintln!(
            "WAL write ends {} µs before the sync ends; reply starts {} µs after it",
            (o.synced - o.written) / 1000,
            (o.replied - o.synced) / 1000
        ),
        Err(v) => panic!("acknowledged before durable: {v}"),
    }
}

#[test]
fn async_durability_fails_the_same_check() {
    let trace = traced_add_item("async", "volatile-plum");
    match trace.check("volatile-plum") {
        Err(v @ Violation::NotSyncedBeforeReply { .. }) => eprintln!("caught, as it must be: {v}"),
        other => panic!("the checker must catch an unsynced reply, got {other:?}"),
    }
}

/// The syscalls of one traced proxy that served one AddItem.
struct Trace {
    calls: Vec<Call>,
    data_dir: String,
    http_port: u16,
}

/// Runs massa under strace with `durability`, adds `product` to a cart
/// once, stops massa and reads the trace.
fn traced_add_item(durability: &str, product: &str) -> Trace {
    let strace_ok = Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(strace_ok, "this test needs strace on PATH: `apt-get install strace` (.ci/run installs it)");
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let (data, traces) = (TempDir::new("durability"), TempDir::new("strace"));
    let out = format!("{}/massa", traces.path());
    // -ff: one file per thread, so no call is split into unfinished/resumed
    // halves; nanosecond entry times and durations order calls across them.
    let strace = ["strace", "-f", "-ff", "-yy", "-xx", "-s", "1048576", "--timestamps=unix,ns", "--syscall-times=ns"];
    let wrapper: Vec<&str> = strace.into_iter().chain(["-e", TRACED, "-o", &out, "--"]).collect();
    let flags = ["--store", "rocksdb", "--data-dir", data.path(), "--io-driver", "epoll", "--durability", durability];
    let mut m = spawn_massa_under(&wrapper, fn_port, &flags);
    let massa = Tracee::of(&m.proc);
    m.must_be_ready();
    run(async {
        let req = AddLineItem { user_id: "dana".into(), product_id: product.into(), name: "Fruit".into(), quantity: 1 };
        let (_, _, status) = Client::new(m.port).call(ADD_ITEM, None, vec![encode_prost(&req)]).await;
        status.expect("AddItem through the traced proxy");
    });
    massa.stop(&mut m.proc);
    let mut calls = Vec::new();
    for file in fs::read_dir(traces.path()).unwrap() {
        let text = fs::read_to_string(file.unwrap().path()).unwrap();
        calls.extend(text.lines().filter_map(Call::parse));
    }
    calls.sort_by_key(|c| c.start);
    Trace { calls, data_dir: format!("{}/", data.path()), http_port: m.port }
}

/// Massa itself (strace's child), killed on drop should the test fail
/// before stopping it.
struct Tracee(i32);

impl Tracee {
    /// Finds massa among strace's children: strace forks short-lived probes
    /// of its own first, so the child must be running massa's binary.
    fn of(strace: &Proc) -> Tracee {
        let pid = strace.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let massa = fs::canonicalize(env!("CARGO_BIN_EXE_massa")).unwrap();
        let is_massa = |child: &i32| fs::read_link(format!("/proc/{child}/exe")).is_ok_and(|exe| exe == massa);
        for _ in 0..500 {
            let listed = fs::read_to_string(&children).unwrap_or_default();
            if let Some(child) = listed.split_whitespace().filter_map(|p| p.parse().ok()).find(is_massa) {
                return Tracee(child);
            }
            sleep(Duration::from_millis(10));
        }
        panic!("strace never started massa; log:\n{}", strace.log())
    }

    /// SIGTERM, then waits for strace: it exits with massa, every line
    /// written. The pid is not signalled again (it may be reused).
    fn stop(self, strace: &mut Proc) {
        unsafe { libc::kill(self.0, libc::SIGTERM) };
        strace.must_exit();
        std::mem::forget(self);
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// One successful syscall on a file descriptor.
#[derive(Debug)]
struct Call {
    name: String,
    /// strace's `-yy` view of the fd: a path, or `TCP:[local->peer]`.
    target: String,
    /// The bytes written (the first `ret` passed), as far as strace showed them.
    bytes: Vec<u8>,
    /// Whether strace's `-s` limit cut `bytes` short.
    cut: bool,
    /// Entry and exit, nanoseconds since the epoch.
    start: u128,
    end: u128,
}

impl Call {
    /// Parses `<ts> name(fd<target>, args…) = ret <duration>`; `None` for
    /// signals, exits and failed calls.
    fn parse(line: &str) -> Option<Call> {
        let (ts, rest) = line.split_once(' ')?;
        let (name, _) = rest.split_once('(')?;
        let eq = rest.rfind(") = ")?;
        let args = &rest[name.len() + 1..eq];
        let result = &rest[eq + 4..];
        let ret: usize = result.split(' ').next()?.parse().ok()?;
        let duration = result.rsplit_once('<')?.1.strip_suffix('>')?;
        let fd = args.split(", ").next()?;
        let target = String::from_utf8_lossy(&unescape(fd.split_once('<')?.1.strip_suffix('>')?)).into_owned();
        let shown = quoted(&args[fd.len()..]);
        let (start, took) = (nanos(ts)?, nanos(duration)?);
        let cut = shown.len() < ret;
        let bytes = shown[..ret.min(shown.len())].to_vec();
        Some(Call { name: name.to_owned(), target, bytes, cut, start, end: start + took })
    }

    fn is_write(&self) -> bool {
        !matches!(self.name.as_str(), "fsync" | "fdatasync")
    }
}

/// `secs.nanos` as nanoseconds.
fn nanos(text: &str) -> Option<u128> {
    let (secs, frac) = text.split_once('.')?;
    (frac.len() == 9).then_some(())?;
    Some(secs.parse::<u128>().ok()? * 1_000_000_000 + frac.parse::<u128>().ok()?)
}

/// Decodes strace's escapes (`-xx` prints every byte as `\xHH`).
fn unescape(text: &str) -> Vec<u8> {
    let (mut out, bytes, mut i) = (Vec::new(), text.as_bytes(), 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'x') => {
                out.push(u8::from_str_radix(&text[i + 2..i + 4], 16).unwrap());
                i += 4;
            }
            b'\\' => {
                out.push(bytes[i + 1]);
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The bytes of every quoted string in `args`, in order (one for `write`,
/// one per iovec for `writev` and `sendmsg`).
fn quoted(args: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = args;
    while let Some((_, tail)) = rest.split_once('"') {
        let end = tail.find('"').expect("unterminated string in strace output");
        out.extend(unescape(&tail[..end]));
        rest = &tail[end + 1..];
    }
    out
}

/// Why a trace does not show "durable before acknowledged"; times are
/// nanoseconds since the epoch.
#[derive(Debug)]
enum Violation {
    /// No write to a `*.log` file in the data dir carries the product.
    NoWalWrite,
    /// Nothing answering a call went to a client connection.
    NoReply,
    /// strace's `-s` limit cut a write the check needs.
    Cut(String),
    /// The reply started before the event's WAL write ended.
    ReplyBeforeWal { wal: String, written: u128, replied: u128 },
    /// No fsync/fdatasync of that WAL started after the write and ended
    /// before the reply.
    NotSyncedBeforeReply { wal: String, written: u128, replied: u128, syncs_after_write: Vec<u128> },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |t: u128, from: u128| (t as i128 - from as i128) / 1000;
        match self {
            Violation::NoWalWrite => write!(f, "no write to a WAL (*.log) in the data dir carries the event"),
            Violation::NoReply => write!(f, "no reply frame was written to a client connection"),
            Violation::Cut(target) => write!(f, "strace cut a write to {target} short; raise -s"),
            Violation::ReplyBeforeWal { wal, written, replied } => {
                write!(f, "the reply started {} µs before the event's write to {wal} ended", us(*written, *replied))
            }
            Violation::NotSyncedBeforeReply { wal, written, replied, syncs_after_write } => {
                let syncs: Vec<i128> = syncs_after_write.iter().map(|s| us(*s, *written)).collect();
                write!(
                    f,
                    "the reply started {} µs after the event's write to {wal} with no fsync/fdatasync of it in between \
                     (syncs of it started at {syncs:?} µs after the write)",
                    us(*replied, *written)
                )
            }
        }
    }
}

/// A trace that passed: when the event was written, synced, answered.
#[derive(Debug)]
struct Ordered {
    written: u128,
    synced: u128,
    replied: u128,
}

impl Trace {
    /// The one durability check: the WAL write carrying `product`, then a
    /// sync of that WAL, then the first reply bytes to a client. Comparing
    /// times across threads is sound: a tracee stays stopped at each traced
    /// syscall's exit until strace has stamped it, so a sync's exit time
    /// precedes any write it causally precedes.
    fn check(&self, product: &str) -> Result<Ordered, Violation> {
        let wal = self
            .calls
            .iter()
            .filter(|c| c.is_write() && c.target.starts_with(&self.data_dir) && c.target.ends_with(".log"))
            .find(|c| contains(&c.bytes, product.as_bytes()))
            .ok_or(Violation::NoWalWrite)?;
        let replied = self.first_reply()?;
        let (written, target) = (wal.end, wal.target.clone());
        if replied < written {
            return Err(Violation::ReplyBeforeWal { wal: target, written, replied });
        }
        let syncs: Vec<&Call> =
            self.calls.iter().filter(|c| !c.is_write() && c.target == wal.target && c.start >= written).collect();
        match syncs.iter().find(|s| s.end <= replied) {
            Some(s) => Ok(Ordered { written, synced: s.end, replied }),
            None => Err(Violation::NotSyncedBeforeReply {
                wal: target,
                written,
                replied,
                syncs_after_write: syncs.iter().map(|s| s.start).collect(),
            }),
        }
    }

    /// When the earliest write began that carries the start of a frame
    /// answering a call on a connection to massa's public port.
    fn first_reply(&self) -> Result<u128, Violation> {
        let local = format!("TCP:[127.0.0.1:{}->", self.http_port);
        let mut connections: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
        for c in self.calls.iter().filter(|c| c.is_write() && c.target.starts_with(&local)) {
            connections.entry(&c.target).or_default().push(c);
        }
        let mut first: Option<u128> = None;
        for writes in connections.values() {
            if let Some(cut) = writes.iter().find(|c| c.cut) {
                return Err(Violation::Cut(cut.target.clone()));
            }
            let stream: Vec<u8> = writes.iter().flat_map(|c| c.bytes.iter().copied()).collect();
            let Some(at) = first_answer_frame(&stream) else { continue };
            let (mut offset, mut writes) = (0, writes.iter());
            let carrier = writes.find(|c| {
                offset += c.bytes.len();
                offset > at
            });
            let start = carrier.unwrap().start;
            first = Some(first.map_or(start, |f| f.min(start)));
        }
        first.ok_or(Violation::NoReply)
    }
}

/// Offset in a server's HTTP/2 byte stream of the first frame that answers
/// a call: any frame on a stream but WINDOW_UPDATE.
fn first_answer_frame(stream: &[u8]) -> Option<usize> {
    const WINDOW_UPDATE: u8 = 0x8;
    let mut at = 0;
    while at + 9 <= stream.len() {
        let len = u32::from_be_bytes([0, stream[at], stream[at + 1], stream[at + 2]]) as usize;
        let id = u32::from_be_bytes(stream[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        if id != 0 && stream[at + 3] != WINDOW_UPDATE {
            return Some(at);
        }
        at += 9 + len;
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

//! Lazily connected HTTP/2 client connections to the user function: a base
//! number, grown on demand (up to a limit) while every connection is at the
//! stream limit the function advertises.

use std::{cell::{Cell, RefCell}, fmt, path::PathBuf, time::Duration};

use futures_channel::oneshot;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use tracing::{debug, info};

use crate::grpc::{Code, Status};
use crate::http2::{self, client::{Client, ResponseFuture}, Headers, SendStream};

/// Stream window towards the function: large enough that a 12 MiB message
/// never waits on WINDOW_UPDATE round trips for long.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Far above the sum of stream windows a core uses, so streams whose reader
/// is slow (their unread data counts against it) cannot stall the others.
const CONNECTION_WINDOW: u32 = 1 << 30;
/// Function replies are small heads and trailers; this bounds a broken one.
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// A function that does not accept a connection within this is "down".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the user function listens.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Target {
    /// The `:authority` the function sees on our requests.
    fn authority(&self) -> String {
        match self {
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(_) => "localhost".to_owned(),
        }
    }
}

enum Slot {
    Idle,
    /// A connect is under way; these wait for it to finish.
    Connecting(Vec<oneshot::Sender<()>>),
    Ready(Client),
}

/// A method of the function, its request head encoded once.
pub struct Endpoint {
    path: Box<str>,
    head: Box<[u8]>,
}

impl Endpoint {
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A per-core pool of connections to the user function (or, for
/// forwarding, to another proxy: see [`Pool::to_proxy`]).
pub struct Pool {
    target: Target,
    /// What the target is, in errors and logs.
    what: &'static str,
    authority: String,
    /// All `max` slots; the first `open` are in use.
    slots: Vec<RefCell<Slot>>,
    open: Cell<usize>,
    next: Cell<usize>,
}

impl Pool {
    /// A pool of `connections`, fixed.
    pub fn new(target: Target, connections: usize) -> Pool {
        Pool::growing(target, connections, connections)
    }

    /// A pool of `connections` that opens more, up to `max`, while all are
    /// at their stream limit.
    pub fn growing(target: Target, connections: usize, max: usize) -> Pool {
        let base = connections.max(1);
        Pool {
            authority: target.authority(),
            target,
            what: "user function",
            slots: (0..max.max(base)).map(|_| RefCell::new(Slot::Idle)).collect(),
            open: Cell::new(base),
            next: Cell::new(0),
        }
    }

    /// The same pool, named as connecting to another proxy of the cluster.
    pub fn to_proxy(self) -> Pool {
        Pool { what: "proxy", ..self }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// A method path (`/pkg.Service/Method`) with its request head.
    pub fn endpoint(&self, path: &str) -> Endpoint {
        Endpoint { path: path.into(), head: http2::client::grpc_request_head(path, &self.authority).into() }
    }

    /// Opens a gRPC call; the request body goes on the returned stream.
    pub async fn open(&self, endpoint: &Endpoint, metadata: Option<&Headers>) -> Result<(SendStream, ResponseFuture), Status> {
        let mut last = None;
        for _ in 0..2 {
            let idx = self.pick()?;
            let client = self.client(idx).await?;
            match client.send_request(&endpoint.head, metadata, false) {
                Ok(call) => return Ok(call),
                Err(e) => {
                    debug!(target = %self.target, error = %e, "{} connection unusable; reconnecting", self.what);
                    *self.slots[idx].borrow_mut() = Slot::Idle;
                    last = Some(e);
                }
            }
        }
        Err(Status::new(
            Code::Unavailable,
            format!("{} at {} failed the call: {}", self.what, self.target, last.map(|e| e.to_string()).unwrap_or_default()),
        ))
    }

    /// The next slot round robin that can take a stream (one not connected
    /// yet can); opens another slot when all are full.
    fn pick(&self) -> Result<usize, Status> {
        let open = self.open.get();
        let start = self.next.get();
        self.next.set((start + 1) % open);
        let has_room = |i: usize| match &*self.slots[i].borrow() {
            Slot::Ready(c) => !c.is_usable() || c.num_active_streams() < c.max_send_streams(),
            Slot::Idle | Slot::Connecting(_) => true,
        };
        if let Some(i) = (0..open).map(|k| (start + k) % open).find(|&i| has_room(i)) {
            return Ok(i);
        }
        if open < self.slots.len() {
            info!(target = %self.target, connections = open + 1, "every user-function connection is at its stream limit; opening another");
            self.open.set(open + 1);
            return Ok(open);
        }
        let max = match &*self.slots[0].borrow() {
            Slot::Ready(c) => c.max_send_streams(),
            _ => 0,
        };
        Err(Status::new(
            Code::ResourceExhausted,
            format!("the {}'s stream limit is reached: {open} connections with {max} streams each", self.what),
        ))
    }

    /// The connection in slot `idx`, connecting it first if needed (or
    /// again, once it went away).
    async fn client(&self, idx: usize) -> Result<Client, Status> {
        loop {
            let waiter = {
                let mut slot = self.slots[idx].borrow_mut();
                if matches!(&*slot, Slot::Ready(c) if !c.is_usable()) {
                    *slot = Slot::Idle;
                }
                match &mut *slot {
                    Slot::Ready(c) => return Ok(c.clone()),
                    Slot::Connecting(waiters) => {
                        let (tx, rx) = oneshot::channel();
                        waiters.push(tx);
                        Some(rx)
                    }
                    Slot::Idle => {
                        *slot = Slot::Connecting(Vec::new());
                        None
                    }
                }
            };
            if let Some(rx) = waiter {
                let _ = rx.await;
                continue;
            }
            // If this future is dropped mid-connect (the caller's deadline,
            // a reset), the guard frees the slot and wakes its waiters.
            let guard = Connecting(&self.slots[idx]);
            let result = self.connect().await;
            std::mem::forget(guard);
            let previous = std::mem::replace(
                &mut *self.slots[idx].borrow_mut(),
                match &result {
                    Ok(s) => Slot::Ready(s.clone()),
                    Err(_) => Slot::Idle,
                },
            );
            if let Slot::Connecting(waiters) = previous {
                // Waiters retry; on failure each makes its own attempt, which
                // keeps error reporting per call.
                waiters.into_iter().for_each(|w| {
                    let _ = w.send(());
                });
            }
            return result;
        }
    }

    async fn connect(&self) -> Result<Client, Status> {
        let unavailable = |e: &dyn fmt::Display| {
            Status::new(Code::Unavailable, format!("{} unreachable at {}: {e}", self.what, self.target))
        };
        let connect = async {
            match &self.target {
                Target::Tcp { host, port } => {
                    let stream = monoio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    Ok::<_, std::io::Error>(handshake(stream))
                }
                Target::Unix(path) => Ok(handshake(monoio::net::UnixStream::connect(path).await?)),
            }
        };
        match monoio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(sender)) => {
                info!(target = %self.target, "connected to {}", self.what);
                Ok(sender)
            }
            Ok(Err(e)) => Err(unavailable(&e)),
            Err(_) => Err(unavailable(&"connect timed out")),
        }
    }
}

/// Frees a slot whose connect was abandoned.
struct Connecting<'a>(&'a RefCell<Slot>);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if let Slot::Connecting(waiters) = std::mem::replace(&mut *self.0.borrow_mut(), Slot::Idle) {
            waiters.into_iter().for_each(|w| {
                let _ = w.send(());
            });
        }
    }
}

fn handshake<T>(socket: T) -> Client
where
    T: Split + AsyncReadRent + AsyncWriteRent + 'static,
{
    http2::client::connect(
        socket,
        http2::Config {
            max_concurrent_streams: 0,
            stream_window: STREAM_WINDOW,
            connection_window: CONNECTION_WINDOW,
            max_header_list_size: MAX_HEADER_LIST_SIZE,
        },
    )
}

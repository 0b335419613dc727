//! Lazily connected h2 client connections to the user function: a base
//! number, grown on demand (up to a limit) while every connection is at the
//! stream limit the function advertises.

use std::{cell::{Cell, RefCell}, fmt, path::PathBuf, time::Duration};

use bytes::Bytes;
use futures_channel::oneshot;
use h2::client::{ResponseFuture, SendRequest};
use h2::SendStream;
use http::{header, HeaderMap, HeaderValue, Method, Request, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::grpc::{Code, Status};

/// Stream window towards the function: large enough that a 12 MiB message
/// never waits on WINDOW_UPDATE round trips for long.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
/// Far above the sum of stream windows a core uses, so streams whose reader
/// is slow (their unread data counts against it) cannot stall the others.
const CONNECTION_WINDOW: u32 = 1 << 30;
/// Streams assumed before the function's SETTINGS arrive (RFC 9113 asks
/// peers to allow at least 100).
const INITIAL_MAX_STREAMS: usize = 100;
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
    Ready(SendRequest<Bytes>),
}

/// A per-core pool of connections to the user function.
pub struct Pool {
    target: Target,
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
            slots: (0..max.max(base)).map(|_| RefCell::new(Slot::Idle)).collect(),
            open: Cell::new(base),
            next: Cell::new(0),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The absolute URI for a method path (`/pkg.Service/Method`).
    pub fn uri(&self, path: &str) -> Uri {
        Uri::builder()
            .scheme("http")
            .authority(self.authority.as_str())
            .path_and_query(path)
            .build()
            .expect("method paths come from descriptors and are valid")
    }

    /// Opens a gRPC call. With `end_of_stream` the request has no body
    /// beyond what is sent on the returned stream.
    pub async fn open(
        &self,
        uri: &Uri,
        metadata: Option<&HeaderMap>,
    ) -> Result<(SendStream<Bytes>, ResponseFuture), Status> {
        let mut last = None;
        for _ in 0..2 {
            let idx = self.pick()?;
            let sender = self.sender(idx).await?;
            let result = match sender.ready().await {
                Ok(mut ready) => ready.send_request(request(uri, metadata), false).map(|(resp, send)| (send, resp)),
                Err(e) => Err(e),
            };
            match result {
                Ok(call) => return Ok(call),
                Err(e) => {
                    debug!(target = %self.target, error = %e, "user function connection unusable; reconnecting");
                    *self.slots[idx].borrow_mut() = Slot::Idle;
                    last = Some(e);
                }
            }
        }
        Err(Status::new(
            Code::Unavailable,
            format!("user function at {} failed the call: {}", self.target, last.map(|e| e.to_string()).unwrap_or_default()),
        ))
    }

    /// The next slot round robin that can take a stream (one not connected
    /// yet can); opens another slot when all are full.
    fn pick(&self) -> Result<usize, Status> {
        let open = self.open.get();
        let start = self.next.get();
        self.next.set((start + 1) % open);
        let has_room = |i: usize| match &*self.slots[i].borrow() {
            Slot::Ready(s) => s.num_active_streams() < s.current_max_send_streams(),
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
            Slot::Ready(s) => s.current_max_send_streams(),
            _ => 0,
        };
        Err(Status::new(
            Code::ResourceExhausted,
            format!("the user function's stream limit is reached: {open} connections with {max} streams each"),
        ))
    }

    /// The connection in slot `idx`, connecting it first if needed.
    async fn sender(&self, idx: usize) -> Result<SendRequest<Bytes>, Status> {
        loop {
            let waiter = {
                let mut slot = self.slots[idx].borrow_mut();
                match &mut *slot {
                    Slot::Ready(s) => return Ok(s.clone()),
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

    async fn connect(&self) -> Result<SendRequest<Bytes>, Status> {
        let unavailable = |e: &dyn fmt::Display| {
            Status::new(Code::Unavailable, format!("user function unreachable at {}: {e}", self.target))
        };
        let connect = async {
            match &self.target {
                Target::Tcp { host, port } => {
                    let stream = monoio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    stream.set_nodelay(true)?;
                    let io = stream.try_into_poll_io().map_err(|(e, _)| e)?;
                    handshake(io).await
                }
                Target::Unix(path) => {
                    let stream = monoio::net::UnixStream::connect(path).await?;
                    let io = stream.try_into_poll_io().map_err(|(e, _)| e)?;
                    handshake(io).await
                }
            }
        };
        match monoio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(sender)) => {
                info!(target = %self.target, "connected to user function");
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

async fn handshake<T>(io: T) -> std::io::Result<SendRequest<Bytes>>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_max_send_streams(INITIAL_MAX_STREAMS)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(std::io::Error::other)?;
    monoio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "user function connection closed");
        }
    });
    Ok(sender)
}

fn request(uri: &Uri, metadata: Option<&HeaderMap>) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = uri.clone();
    let headers = req.headers_mut();
    if let Some(m) = metadata {
        headers.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::grpc::CONTENT_TYPE));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    req
}

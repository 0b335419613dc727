//! Serving one HTTP/2 connection: each request on its own task, and a
//! graceful close (GOAWAY first) when the core shuts down or the connection
//! has been idle too long.

use std::{future::Future, pin::pin, rc::Rc, time::Duration};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split};
use tracing::debug;

use crate::grpc::budget::Budget;
use crate::http2::{self, server::{Connection, Incoming}};
use crate::runtime::Notify;

/// Bounds header memory per request (and CONTINUATION floods).
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// After an idle GOAWAY, how long the peer has to finish the close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often a going-away connection checks whether its streams are done.
const DRAIN_TICK: Duration = Duration::from_millis(20);
/// A timer that never fires in practice (and cannot overflow `Instant`).
const FOREVER: Duration = Duration::from_secs(1 << 30);

/// Limits of one HTTP/2 connection.
#[derive(Clone, Copy, Debug)]
pub struct H2Options {
    pub max_concurrent_streams: u32,
    /// Receive windows: what a client may send that no call has read yet.
    pub stream_window: u32,
    pub connection_window: u32,
    /// For the preface and SETTINGS exchange.
    pub handshake_timeout: Duration,
    /// Close (GOAWAY) after this long with no stream open.
    pub idle_timeout: Option<Duration>,
}

impl Default for H2Options {
    fn default() -> H2Options {
        // Large windows keep big messages and many streams from stalling on
        // WINDOW_UPDATE round trips over loopback.
        H2Options {
            max_concurrent_streams: 1024,
            stream_window: 1 << 20,
            connection_window: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
        }
    }
}

impl H2Options {
    /// For user functions (ours): every active entity holds one stream from
    /// the proxy for as long as it lives, so, like the SDKs' gRPC servers,
    /// no practical stream limit unless one is asked for.
    pub fn user_function(max_concurrent_streams: Option<u32>) -> H2Options {
        H2Options { max_concurrent_streams: max_concurrent_streams.unwrap_or(1 << 20), ..H2Options::default() }
    }

    fn config(&self) -> http2::Config {
        http2::Config {
            max_concurrent_streams: self.max_concurrent_streams,
            stream_window: self.stream_window,
            connection_window: self.connection_window,
            max_header_list_size: MAX_HEADER_LIST_SIZE,
        }
    }
}

/// Something that answers gRPC calls, one task per stream.
pub trait Service: 'static {
    /// `budget` is the connection's: what the call holds for its client.
    fn call(self: Rc<Self>, request: Incoming, budget: Rc<Budget>) -> impl Future<Output = ()> + 'static;
}

/// Drives an HTTP/2 connection until the peer closes it, or until
/// `shutdown` fires or it idles out and the streams in flight have finished
/// (GOAWAY first). `read` holds what was read while sniffing the protocol.
pub async fn serve_h2<T, S>(io: T, read: BytesMut, service: Rc<S>, shutdown: Notify, options: H2Options, budget: Rc<Budget>)
where
    T: Split + AsyncReadRent + AsyncWriteRent + 'static,
    S: Service,
{
    let conn = Connection::new(options.config());
    let mut run = pin!(conn.run(io, read, |request| {
        monoio::spawn(service.clone().call(request, budget.clone()));
    }));
    // One timer per connection: first the handshake's, then the idle
    // period's, then the drain's once going away.
    let idle_timeout = options.idle_timeout.unwrap_or(FOREVER);
    let mut timer = Box::pin(monoio::time::sleep(options.handshake_timeout));
    let mut accepted_at_check = 0;
    let mut handshaken = false;
    let mut going_away: Option<std::time::Instant> = None;
    loop {
        monoio::select! {
            _ = &mut run => return,
            _ = shutdown.wait(), if going_away.is_none() => {
                conn.go_away();
                going_away = Some(std::time::Instant::now());
                timer = Box::pin(monoio::time::sleep(DRAIN_TICK));
            }
            _ = &mut timer => {
                if let Some(since) = going_away {
                    if conn.active_streams() == 0 {
                        conn.finish();
                    }
                    // Shutdown waits for calls in flight; an idle close does
                    // not wait long for a peer that stopped reading.
                    if !shutdown.fired() && since.elapsed() > CLOSE_GRACE {
                        return debug!("peer did not finish closing; dropping the connection");
                    }
                    timer = Box::pin(monoio::time::sleep(DRAIN_TICK));
                    continue;
                }
                if !handshaken {
                    if !conn.handshaken() {
                        return debug!("HTTP/2 handshake timed out");
                    }
                    handshaken = true;
                } else if conn.active_streams() == 0 && conn.accepted() == accepted_at_check {
                    debug!(?idle_timeout, "closing idle connection");
                    conn.go_away();
                    going_away = Some(std::time::Instant::now());
                    timer = Box::pin(monoio::time::sleep(DRAIN_TICK));
                    continue;
                }
                accepted_at_check = conn.accepted();
                timer = Box::pin(monoio::time::sleep(idle_timeout));
            }
        }
    }
}

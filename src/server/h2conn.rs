//! Serving one HTTP/2 connection: accept streams, hand each to the service
//! on its own task, and go away gracefully when the core shuts down or the
//! connection has been idle too long.

use std::{cell::Cell, future::Future, rc::Rc, time::Duration};

use bytes::Bytes;
use h2::{server::SendResponse, RecvStream};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::grpc::budget::Budget;
use crate::runtime::Notify;

/// Bounds header memory per request (and CONTINUATION floods).
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Reply bytes h2 may queue per stream beyond what the socket took; with
/// capacity-aware senders this is the most a stream buffers.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// After an idle GOAWAY, how long the peer has to finish the close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// A timer that never fires in practice (and cannot overflow `Instant`).
const FOREVER: Duration = Duration::from_secs(1 << 30);

/// Limits of one h2 connection.
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
}

/// Something that answers gRPC calls, one task per stream.
pub trait Service: 'static {
    /// `budget` is the connection's: what the call holds for its client.
    fn call(
        self: Rc<Self>,
        request: Request<RecvStream>,
        respond: SendResponse<Bytes>,
        budget: Rc<Budget>,
    ) -> impl Future<Output = ()> + 'static;
}

/// Counts a connection's streams in flight.
struct Live(Rc<Cell<usize>>);

impl Live {
    fn enter(counter: &Rc<Cell<usize>>) -> Live {
        counter.set(counter.get() + 1);
        Live(counter.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Drives an h2 connection until the peer closes it, or until `shutdown`
/// fires or it idles out and the streams in flight have finished (GOAWAY
/// first).
pub async fn serve_h2<T, S>(io: T, service: Rc<S>, shutdown: Notify, options: H2Options, budget: Rc<Budget>)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(options.stream_window)
        .initial_connection_window_size(options.connection_window)
        .max_concurrent_streams(options.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .handshake::<_, Bytes>(io);
    let mut conn = match crate::runtime::timeout(options.handshake_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return debug!(error = %e, "h2 handshake failed"),
        Err(_) => return debug!("h2 handshake timed out"),
    };
    let live = Rc::new(Cell::new(0usize));
    // One timer per connection, not per stream: it closes the connection
    // when a whole period passed with no stream open and none accepted.
    let idle_timeout = options.idle_timeout.unwrap_or(FOREVER);
    let mut idle = Box::pin(monoio::time::sleep(idle_timeout));
    let (mut accepted, mut accepted_at_check) = (0u64, 0u64);
    let mut going_away = false;
    loop {
        let next = if going_away {
            // Shutdown waits for calls in flight; an idle close does not
            // wait long for a peer that stopped reading.
            match crate::runtime::timeout(if shutdown.fired() { FOREVER } else { CLOSE_GRACE }, conn.accept()).await {
                Ok(n) => n,
                Err(_) => return debug!("peer did not finish closing; dropping the connection"),
            }
        } else {
            monoio::select! {
                n = conn.accept() => n,
                _ = shutdown.wait() => {
                    conn.graceful_shutdown();
                    going_away = true;
                    continue;
                }
                _ = &mut idle => {
                    if live.get() == 0 && accepted == accepted_at_check {
                        debug!(?idle_timeout, "closing idle connection");
                        conn.graceful_shutdown();
                        going_away = true;
                    }
                    accepted_at_check = accepted;
                    idle = Box::pin(monoio::time::sleep(idle_timeout));
                    continue;
                }
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                accepted += 1;
                let (service, guard, budget) = (service.clone(), Live::enter(&live), budget.clone());
                monoio::spawn(async move {
                    service.call(request, respond, budget).await;
                    drop(guard);
                });
            }
            Some(Err(e)) => return debug!(error = %e, "h2 connection error"),
            None => return,
        }
    }
}

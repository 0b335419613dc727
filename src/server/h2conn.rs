//! Serving one HTTP/2 connection: accept streams, hand each to the service
//! on its own task, and go away gracefully when the core shuts down.

use std::{future::Future, rc::Rc};

use bytes::Bytes;
use h2::{server::SendResponse, RecvStream};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::runtime::Notify;

/// Large windows keep big messages and many streams from stalling on
/// WINDOW_UPDATE round trips over loopback.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Bounds header memory per request (and CONTINUATION floods).
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Something that answers gRPC calls, one task per stream.
pub trait Service: 'static {
    /// Streams a client may open at once on one connection.
    const MAX_CONCURRENT_STREAMS: u32 = 1024;

    fn call(self: Rc<Self>, request: Request<RecvStream>, respond: SendResponse<Bytes>) -> impl Future<Output = ()> + 'static;
}

/// Drives an h2 connection until the peer closes it, or until `shutdown`
/// fires and the streams in flight have finished (GOAWAY first).
pub async fn serve_h2<T, S>(io: T, service: Rc<S>, shutdown: Notify)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    S: Service,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(S::MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .handshake::<_, Bytes>(io);
    let mut conn = match handshake.await {
        Ok(conn) => conn,
        Err(e) => return debug!(error = %e, "h2 handshake failed"),
    };
    let mut going_away = false;
    loop {
        let next = if going_away {
            conn.accept().await
        } else {
            monoio::select! {
                n = conn.accept() => n,
                _ = shutdown.wait() => {
                    conn.graceful_shutdown();
                    going_away = true;
                    continue;
                }
            }
        };
        match next {
            Some(Ok((request, respond))) => {
                monoio::spawn(service.clone().call(request, respond));
            }
            Some(Err(e)) => return debug!(error = %e, "h2 connection error"),
            None => return,
        }
    }
}

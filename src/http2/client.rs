//! The client role, towards the user function: requests with pre-encoded
//! heads, responses as futures.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};

use super::conn::{handles, Role, Shared, State};
use super::{hpack, io, Config, Error, Headers, RecvStream, SendStream};

/// A gRPC request head for one method, encoded once: `:method POST`,
/// `:scheme http`, `:path`, `:authority`, `content-type`, `te: trailers`.
pub fn grpc_request_head(path: &str, authority: &str) -> Vec<u8> {
    hpack::encode_static_block(&[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.as_bytes()),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ])
}

/// One client connection; clones share it.
#[derive(Clone)]
pub struct Client {
    conn: Shared,
}

/// Starts a client connection on `socket` (preface and SETTINGS go out at
/// once); its reader and writer run on tasks of their own until it ends.
pub fn connect<T>(socket: T, config: Config) -> Client
where
    T: Split + AsyncReadRent + AsyncWriteRent + 'static,
{
    let mut state = State::new(Role::Client, config);
    state.start();
    let conn: Shared = Rc::new(RefCell::new(state));
    let (reader, writer) = socket.into_split();
    monoio::spawn(io::write_loop(conn.clone(), writer));
    let driver = conn.clone();
    monoio::spawn(async move {
        io::read_loop(&driver, reader, BytesMut::new(), |_| {}).await;
        if let Some(e) = &driver.borrow().closed {
            tracing::debug!(error = %e, "user function connection closed");
        }
    });
    Client { conn }
}

impl Client {
    /// Opens a stream with an encoded head (see [`grpc_request_head`]) and
    /// extra metadata.
    pub fn send_request(&self, head: &[u8], metadata: Option<&Headers>, end_stream: bool) -> Result<(SendStream, ResponseFuture), Error> {
        let id = self.conn.borrow_mut().open_stream(head, metadata, end_stream)?;
        let (send, recv) = handles(&self.conn, id);
        Ok((send, ResponseFuture(Some(recv))))
    }

    pub fn num_active_streams(&self) -> usize {
        self.conn.borrow().local_streams
    }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until it is known).
    pub fn max_send_streams(&self) -> usize {
        self.conn.borrow().max_send_streams()
    }

    /// Whether new streams can go on this connection (open, no GOAWAY).
    pub fn is_usable(&self) -> bool {
        let st = self.conn.borrow();
        st.is_open() && st.can_open_any()
    }
}

/// A response: its head, then its body (and trailers).
pub struct Response {
    pub head: Headers,
    pub body: RecvStream,
}

impl Response {
    /// The `:status` code (0 if missing or malformed).
    pub fn status(&self) -> u16 {
        self.head.get_str(":status".as_bytes()).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
}

/// Resolves to the response head.
pub struct ResponseFuture(Option<RecvStream>);

impl Future for ResponseFuture {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let recv = self.0.as_mut().expect("polled after completion");
        match recv.poll_head(cx) {
            Poll::Ready(Ok(head)) => Poll::Ready(Ok(Response { head, body: self.0.take().expect("present") })),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

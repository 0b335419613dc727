//! The server role: one [`Connection`] per accepted socket, requests handed
//! to a callback as they arrive.

use std::{cell::RefCell, rc::Rc, sync::LazyLock};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, Split, Splitable};

use super::conn::{ConnError, Role, Shared, State};
pub use super::conn::Incoming;
use super::{hpack, io, Config, Reason};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `:status 200` and `content-type: application/grpc`, encoded once.
pub static GRPC_HEAD: LazyLock<Vec<u8>> =
    LazyLock::new(|| hpack::encode_static_block(&[(b":status", b"200"), (b"content-type", b"application/grpc")]));

/// A server connection's state, shared with its streams.
#[derive(Clone)]
pub struct Connection {
    conn: Shared,
}

impl Connection {
    pub fn new(config: Config) -> Connection {
        let mut state = State::new(Role::Server, config);
        state.start();
        Connection { conn: Rc::new(RefCell::new(state)) }
    }

    /// Serves the connection until it ends. `read` holds the bytes already
    /// read from the socket (the start of the client preface, or nothing).
    pub async fn run<T>(&self, socket: T, mut read: BytesMut, incoming: impl FnMut(Incoming))
    where
        T: Split + AsyncReadRent + AsyncWriteRent + 'static,
    {
        let (mut reader, writer) = socket.into_split();
        monoio::spawn(io::write_loop(self.conn.clone(), writer));
        match io::read_at_least(&mut reader, &mut read, PREFACE.len()).await {
            Ok(()) if read.starts_with(PREFACE) => {
                let _ = read.split_to(PREFACE.len());
                io::read_loop(&self.conn, reader, read, incoming).await;
            }
            Ok(()) => self.conn.borrow_mut().go_away_error(ConnError(Reason::PROTOCOL_ERROR, "invalid connection preface")),
            Err(e) => self.conn.borrow_mut().fail(super::Error::Io(e.to_string())),
        }
    }

    /// Graceful shutdown: GOAWAY; streams in flight finish.
    pub fn go_away(&self) {
        self.conn.borrow_mut().go_away();
    }

    /// After [`go_away`](Self::go_away) and once no stream is left: closes
    /// the connection (the writer flushes, then shuts the socket down).
    pub fn finish(&self) {
        self.conn.borrow_mut().fail(super::Error::GoAway { reason: Reason::NO_ERROR, remote: false });
    }

    pub fn active_streams(&self) -> usize {
        self.conn.borrow().peer_streams
    }

    pub fn accepted(&self) -> u64 {
        self.conn.borrow().accepted
    }

    /// Whether the client's SETTINGS arrived.
    pub fn handshaken(&self) -> bool {
        self.conn.borrow().peer_settings_seen
    }

    pub fn is_open(&self) -> bool {
        self.conn.borrow().is_open()
    }
}

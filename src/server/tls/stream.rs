//! A TLS server stream over monoio's owned-buffer TCP: rustls does the
//! protocol in memory, this moves ciphertext between it and the socket.
//!
//! The HTTP/2 server splits its stream into a reader task and a writer task
//! that run interleaved. So the stream keeps the socket's two halves apart:
//! reads touch only [`Reader`], writes only [`Writer`], and the rustls state
//! they share sits in a `RefCell` borrowed only between awaits (an overlap
//! would panic, never corrupt).

use std::{
    cell::RefCell,
    io::{self, BufRead, Write},
    rc::Rc,
};

use monoio::{
    buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf},
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Split, Splitable},
    net::TcpStream,
    BufResult,
};
use rustls::ServerConnection;

/// Ciphertext read per `read` call: two full TLS records.
const READ_CHUNK: usize = 2 * (16 * 1024 + 256);
/// The first byte of a TLS handshake record (RFC 8446 §5.1).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the client does not speak TLS (plaintext on the TLS port)")]
    Plaintext,
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

type Session = Rc<RefCell<ServerConnection>>;

/// Why received ciphertext could not be taken in.
enum ProcessError {
    Io(io::Error),
    Tls(rustls::Error),
}

impl From<ProcessError> for HandshakeError {
    fn from(e: ProcessError) -> HandshakeError {
        match e {
            ProcessError::Io(e) => HandshakeError::Io(e),
            ProcessError::Tls(e) => HandshakeError::Tls(e),
        }
    }
}

impl From<ProcessError> for io::Error {
    fn from(e: ProcessError) -> io::Error {
        match e {
            ProcessError::Io(e) => e,
            ProcessError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

/// A server-side TLS connection whose handshake is done.
pub struct TlsStream {
    session: Session,
    reader: Reader,
    writer: Writer,
}

// SAFETY: `read`/`readv` use only `self.reader` and `write`/`writev`/
// `flush`/`shutdown` only `self.writer`, each over its own half of the
// socket; the shared rustls state is a `RefCell` never borrowed across an
// await, so a reader and a writer running interleaved do not overlap.
unsafe impl Split for TlsStream {}

impl TlsStream {
    /// Runs the server handshake on `tcp` with `session`'s configuration.
    pub async fn accept(tcp: TcpStream, session: ServerConnection) -> Result<TlsStream, HandshakeError> {
        let session = Rc::new(RefCell::new(session));
        let (read, write) = tcp.into_split();
        let mut stream = TlsStream {
            reader: Reader { io: read, session: session.clone(), ciphertext: Vec::with_capacity(READ_CHUNK), consumed: 0 },
            writer: Writer { io: write, session: session.clone(), ciphertext: Vec::new() },
            session,
        };
        stream.handshake().await?;
        Ok(stream)
    }

    async fn handshake(&mut self) -> Result<(), HandshakeError> {
        let mut first = true;
        loop {
            self.writer.send_pending().await?;
            if !self.session.borrow().is_handshaking() {
                return Ok(());
            }
            if !self.reader.has_ciphertext() && self.reader.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the TLS handshake").into());
            }
            if first && self.reader.ciphertext[0] != HANDSHAKE_RECORD {
                return Err(HandshakeError::Plaintext);
            }
            first = false;
            if let Err(e) = self.reader.process() {
                // Tell the client why (an alert) before closing.
                let _ = self.writer.send_pending().await;
                return Err(e.into());
            }
        }
    }

    /// Reads the session's state (ALPN, the client's certificates).
    pub fn with_session<R>(&self, f: impl FnOnce(&ServerConnection) -> R) -> R {
        f(&self.session.borrow())
    }
}

struct Reader {
    io: OwnedReadHalf<TcpStream>,
    session: Session,
    /// Read from the socket; `consumed` bytes of it are with rustls.
    ciphertext: Vec<u8>,
    consumed: usize,
}

impl Reader {
    fn has_ciphertext(&self) -> bool {
        self.consumed < self.ciphertext.len()
    }

    /// Reads ciphertext from the socket (0 at EOF, which rustls is told).
    async fn fill(&mut self) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.ciphertext);
        buf.clear();
        self.consumed = 0;
        let (result, buf) = self.io.read(buf).await;
        self.ciphertext = buf;
        let n = result?;
        if n == 0 {
            self.session.borrow_mut().read_tls(&mut &[][..])?;
        }
        Ok(n)
    }

    /// Hands rustls what it takes of the unread ciphertext and decrypts it.
    fn process(&mut self) -> Result<(), ProcessError> {
        let mut session = self.session.borrow_mut();
        let mut pending = &self.ciphertext[self.consumed..];
        let before = pending.len();
        session.read_tls(&mut pending).map_err(ProcessError::Io)?;
        if pending.len() == before {
            // Only after close_notify: what follows it is never read.
            return Err(ProcessError::Io(io::Error::new(io::ErrorKind::InvalidData, "data after TLS close_notify")));
        }
        self.consumed += before - pending.len();
        session.process_new_packets().map_err(ProcessError::Tls)?;
        Ok(())
    }

    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            {
                let mut session = self.session.borrow_mut();
                let mut plaintext = session.reader();
                match plaintext.fill_buf() {
                    Ok(chunk) => {
                        let n = chunk.len().min(buf.bytes_total());
                        // SAFETY: `buf` has room for `bytes_total` bytes at
                        // `write_ptr`; `n` of them are initialised here.
                        unsafe {
                            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.write_ptr(), n);
                            buf.set_init(n);
                        }
                        plaintext.consume(n);
                        return (Ok(n), buf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // A TCP close without close_notify: an end of stream
                    // like any other for HTTP/2, which frames its own ends.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return (Ok(0), buf),
                    Err(e) => return (Err(e), buf),
                }
            }
            if self.has_ciphertext() {
                if let Err(e) = self.process() {
                    return (Err(e.into()), buf);
                }
                continue;
            }
            if let Err(e) = self.fill().await {
                return (Err(e), buf);
            }
        }
    }
}

struct Writer {
    io: OwnedWriteHalf<TcpStream>,
    session: Session,
    /// Reused for each batch of records rustls produces.
    ciphertext: Vec<u8>,
}

impl Writer {
    /// Sends every record rustls has ready (handshake messages, alerts,
    /// encrypted data).
    async fn send_pending(&mut self) -> io::Result<()> {
        loop {
            {
                let mut session = self.session.borrow_mut();
                if !session.wants_write() {
                    return Ok(());
                }
                self.ciphertext.clear();
                session.write_tls(&mut self.ciphertext)?;
            }
            let (result, buf) = self.io.write_all(std::mem::take(&mut self.ciphertext)).await;
            self.ciphertext = buf;
            result?;
        }
    }

    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `bytes_init` bytes at `read_ptr` are initialised and stay
        // put while `buf` is owned here.
        let plaintext = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        // rustls takes up to its buffer limit; the caller writes the rest.
        let taken = self.session.borrow_mut().writer().write(plaintext);
        let result = match taken {
            Ok(n) => self.send_pending().await.map(|()| n),
            Err(e) => Err(e),
        };
        (result, buf)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.borrow_mut().send_close_notify();
        self.send_pending().await?;
        self.io.shutdown().await
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.reader.read(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views `buf`'s first slice, which outlives
        // the read.
        let Some(raw) = (unsafe { RawBuf::new_from_iovec_mut(&mut buf) }) else { return (Ok(0), buf) };
        let (result, _) = self.reader.read(raw).await;
        if let Ok(n) = result {
            // SAFETY: `n` bytes were written to the first slice.
            unsafe { buf.set_init(n) };
        }
        (result, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.writer.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer views `buf`'s first slice, which outlives
        // the write.
        let Some(raw) = (unsafe { RawBuf::new_from_iovec(&buf) }) else { return (Ok(0), buf) };
        let (result, _) = self.writer.write(raw).await;
        (result, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.send_pending().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.shutdown().await
    }
}

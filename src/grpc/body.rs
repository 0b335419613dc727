//! Message streams over HTTP/2 bodies: a reader that yields whole messages
//! and a responder that sends headers, messages and trailers in gRPC's order.

use std::{future::poll_fn, rc::Rc, time::Duration};

use bytes::Bytes;

use crate::http2::{self, server::GRPC_HEAD, Headers, Reason, RecvStream, SendStream};

use super::budget::{Budget, Charge};
use super::pipe::{Event, Gone, Pipe};
use crate::runtime::deadlines::Deadlines;
use super::{encode_message, Code, Decoder, FrameError, Status};

/// A client's request body: an HTTP/2 gRPC stream, read as it arrives, or
/// one a front already read whole (HTTP/JSON, gRPC-Web), gRPC-framed.
pub enum RequestBody {
    Stream(RecvStream),
    Complete(Bytes),
}

/// Why reading a message stream failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer sent bytes that are not valid gRPC framing.
    Frame(FrameError),
    /// The HTTP/2 stream failed (reset, connection lost).
    Stream(http2::Error),
    /// A started message (or a unary request) did not arrive in time.
    Incomplete(Duration),
    /// Assembling it would pass the connection's or core's buffer limit.
    OverBudget,
}

impl ReadError {
    /// The status a downstream client gets when its own request was bad.
    pub fn into_client_status(self) -> Status {
        match self {
            ReadError::Frame(e @ FrameError::TooLarge { .. }) => Status::new(Code::ResourceExhausted, e.to_string()),
            ReadError::Frame(e @ FrameError::Compressed) => Status::new(Code::Unimplemented, e.to_string()),
            ReadError::Frame(e) => Status::new(Code::Internal, format!("malformed request: {e}")),
            ReadError::Stream(e) => Status::new(Code::Cancelled, format!("request stream failed: {e}")),
            ReadError::Incomplete(t) => Status::new(Code::DeadlineExceeded, format!("request message not complete within {t:?}")),
            ReadError::OverBudget => Status::new(
                Code::ResourceExhausted,
                "request bytes in flight exceed this connection's buffer limit (--connection-buffer / --core-buffer)",
            ),
        }
    }
}

/// Yields whole gRPC messages from an HTTP/2 body. Data is pulled (and its
/// window released) only when the call asks for the next message, so
/// an unread stream holds at most its window. Bytes pulled to assemble a
/// message, and the last message handed out, are charged to the
/// connection's [`Budget`] until the next message is asked for (a unary
/// request's for the whole call, see [`MessageReader::single_held`]).
pub struct MessageReader {
    /// `None` for a complete body, already in the decoder.
    body: Option<RecvStream>,
    decoder: Decoder,
    eof: bool,
    buffered: Charge,
    /// Length of the last message handed out (still charged).
    handed: usize,
    /// For a started message, and a unary request as a whole.
    timeout: Option<(Rc<Deadlines>, Duration)>,
}

impl MessageReader {
    /// A reader with no limits beyond the message size (function replies,
    /// our own clients).
    pub fn new(body: RecvStream, max_message_size: usize) -> MessageReader {
        MessageReader::bounded(RequestBody::Stream(body), max_message_size, &Budget::unlimited(), None)
    }

    /// A client's request stream: buffered bytes charged to `budget`, and
    /// started messages that must complete within `timeout`.
    pub fn bounded(
        body: RequestBody,
        max_message_size: usize,
        budget: &Rc<Budget>,
        timeout: Option<(Rc<Deadlines>, Duration)>,
    ) -> MessageReader {
        let mut decoder = Decoder::new(max_message_size);
        let body = match body {
            RequestBody::Stream(stream) => Some(stream),
            RequestBody::Complete(bytes) => {
                decoder.push(bytes);
                None
            }
        };
        let eof = body.is_none();
        MessageReader { body, decoder, eof, buffered: Charge::new(budget), handed: 0, timeout }
    }

    /// The next message, or `None` once the peer half-closed cleanly.
    pub async fn message(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(m) = self.decoder.next_message().map_err(ReadError::Frame)? {
                self.handed = m.len();
                if !self.buffered.set(self.decoder.buffered() + self.handed) {
                    return Err(ReadError::OverBudget);
                }
                return Ok(Some(m));
            }
            if self.eof {
                self.decoder.finish().map_err(ReadError::Frame)?;
                return Ok(None);
            }
            let Some(body) = self.body.as_mut() else {
                self.eof = true;
                continue;
            };
            let data = match &self.timeout {
                Some((deadlines, t)) if self.decoder.buffered() > 0 => {
                    deadlines.within(*t, body.data()).await.map_err(|()| ReadError::Incomplete(*t))?
                }
                _ => body.data().await,
            };
            match data {
                Some(Ok(chunk)) => {
                    body.release_capacity(chunk.len());
                    self.decoder.push(chunk);
                    if !self.buffered.set(self.decoder.buffered() + self.handed) {
                        return Err(ReadError::OverBudget);
                    }
                }
                Some(Err(e)) => return Err(ReadError::Stream(e)),
                None => self.eof = true,
            }
        }
    }

    /// The one request message of a unary or server-streaming call, with
    /// the status a client gets when there is not exactly one; the whole
    /// request must arrive within the reader's timeout.
    pub async fn single(self) -> Result<Bytes, Status> {
        self.single_held().await.map(|(payload, _)| payload)
    }

    /// [`single`](Self::single), with the charge for the message: the call
    /// keeps it while it holds the request.
    pub async fn single_held(mut self) -> Result<(Bytes, Charge), Status> {
        // The whole request's deadline covers its partial messages too.
        match self.timeout.take() {
            Some((deadlines, t)) => deadlines
                .within(t, self.read_single())
                .await
                .unwrap_or_else(|()| Err(ReadError::Incomplete(t).into_client_status())),
            None => self.read_single().await,
        }
    }

    async fn read_single(mut self) -> Result<(Bytes, Charge), Status> {
        let first = self.message().await.map_err(ReadError::into_client_status)?;
        let Some(payload) = first else {
            return Err(Status::new(Code::InvalidArgument, "the call ended without a request message"));
        };
        match self.message().await.map_err(ReadError::into_client_status)? {
            None => Ok((payload, std::mem::replace(&mut self.buffered, Charge::new(&Budget::unlimited())))),
            Some(_) => Err(Status::new(Code::InvalidArgument, "more than one request message on a single-request call")),
        }
    }

    /// The trailers, after [`message`](Self::message) returned `None`.
    pub async fn trailers(&mut self) -> Result<Option<Headers>, http2::Error> {
        match self.body.as_mut() {
            Some(body) => body.trailers().await,
            None => Ok(None),
        }
    }
}

/// Largest reply [`Responder::send_only`] queues without waiting for the
/// client's window.
pub const SMALL_REPLY: usize = 16 * 1024;

/// Why a reply message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("client stream failed: {0}")]
    Stream(#[from] http2::Error),
    #[error("client opened no flow-control window for {0:?}")]
    Stalled(Duration),
    #[error("replies waiting for this client's window exceed the connection's buffer limit")]
    OverBudget,
}

/// The server side of one gRPC response: headers once, messages, then
/// trailers (or a trailers-only response when nothing was sent).
///
/// Messages go out only as the client's window allows; the part still
/// waiting for window is charged to the connection's [`Budget`], and a
/// client that opens no window for the stall timeout loses the call. A
/// call from a front that is not HTTP/2 gRPC goes into a [`Pipe`] instead,
/// paced the same way by the pipe's room.
pub struct Responder {
    sink: Sink,
    started: bool,
    budget: Rc<Budget>,
    stall: Option<(Rc<Deadlines>, Duration)>,
}

enum Sink {
    Stream(SendStream),
    Pipe(Pipe),
}

/// The client behind a pipe went away: to the call, like a reset stream.
fn gone(_: Gone) -> http2::Error {
    http2::Error::Reset { reason: Reason::CANCEL, remote: true }
}

impl Responder {
    /// No budget and no stall timeout (user functions, tests).
    pub fn new(send: SendStream) -> Responder {
        Responder::bounded(send, Budget::unlimited(), None)
    }

    pub fn bounded(send: SendStream, budget: Rc<Budget>, stall: Option<(Rc<Deadlines>, Duration)>) -> Responder {
        Responder { sink: Sink::Stream(send), started: false, budget, stall }
    }

    /// A responder writing into `pipe`, for the HTTP/JSON and gRPC-Web fronts.
    pub fn piped(pipe: Pipe, budget: Rc<Budget>, stall: Option<(Rc<Deadlines>, Duration)>) -> Responder {
        Responder { sink: Sink::Pipe(pipe), started: false, budget, stall }
    }

    /// The budget this call's buffers are charged to (its connection's).
    pub fn budget(&self) -> &Rc<Budget> {
        &self.budget
    }

    /// Whether response headers went out already.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Sends the response headers with extra metadata (no-op once started).
    pub fn send_headers(&mut self, metadata: Option<&Headers>) -> Result<(), http2::Error> {
        if !self.started {
            match &mut self.sink {
                Sink::Stream(send) => send.send_head(&GRPC_HEAD, metadata, false)?,
                Sink::Pipe(pipe) => pipe.push(Event::Head(metadata.cloned())).map_err(gone)?,
            }
            self.started = true;
        }
        Ok(())
    }

    /// Sends the only message of a reply. A small one is queued at once even
    /// past the client's window: one per stream, so at most [`SMALL_REPLY`]
    /// per stream waits for window, and the common unary reply costs no
    /// capacity negotiation.
    pub async fn send_only(&mut self, payload: Bytes) -> Result<(), SendError> {
        if payload.len() > SMALL_REPLY {
            return self.send(payload).await;
        }
        self.send_headers(None)?;
        match &mut self.sink {
            Sink::Stream(send) => {
                let (head, tail) = encode_message(payload);
                send.send_data(head, false)?;
                if let Some(tail) = tail {
                    send.send_data(tail, false)?;
                }
            }
            Sink::Pipe(pipe) => pipe.push(Event::Message(payload)).map_err(gone)?,
        }
        Ok(())
    }

    /// Sends one message as the client's window opens; resolves once all of
    /// it is queued. A slow reader thus applies backpressure to the caller
    /// (and through it to the function's stream) instead of growing buffers.
    pub async fn send(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send_headers(None)?;
        let Responder { sink, budget, stall, .. } = self;
        let send = match sink {
            Sink::Stream(send) => send,
            Sink::Pipe(pipe) => {
                match stall {
                    Some((deadlines, t)) => deadlines.within(*t, pipe.room()).await.map_err(|()| SendError::Stalled(*t))?,
                    None => pipe.room().await,
                }
                .map_err(gone)?;
                return Ok(pipe.push(Event::Message(payload)).map_err(gone)?);
            }
        };
        let mut waiting = Charge::new(budget);
        let (head, tail) = encode_message(payload);
        let left = head.len() + tail.as_ref().map_or(0, Bytes::len);
        if !waiting.grow(left) {
            return Err(SendError::OverBudget);
        }
        for mut piece in [Some(head), tail].into_iter().flatten() {
            while !piece.is_empty() {
                if send.capacity() == 0 {
                    let wait = wait_capacity(send);
                    match stall {
                        Some((deadlines, t)) => deadlines.within(*t, wait).await.map_err(|()| SendError::Stalled(*t))??,
                        None => wait.await?,
                    }
                }
                let n = send.capacity().min(piece.len()).max(1);
                send.send_data(piece.split_to(n), false)?;
                waiting.shrink(n);
            }
        }
        Ok(())
    }

    /// Ends the call with `status`: trailers after messages, or a
    /// trailers-only response.
    pub fn finish(mut self, status: &Status) {
        match &mut self.sink {
            Sink::Stream(send) => {
                let trailers = status.to_headers();
                let _ = if self.started { send.send_trailers(trailers) } else { send.send_head(&GRPC_HEAD, Some(&trailers), true) };
            }
            Sink::Pipe(pipe) => {
                let _ = pipe.push(Event::End(status.clone()));
            }
        }
    }

    /// Resets the stream (RST_STREAM) instead of answering.
    pub fn reset(mut self, reason: http2::Reason) {
        match &mut self.sink {
            Sink::Stream(send) => send.send_reset(reason),
            Sink::Pipe(pipe) => {
                let _ = pipe.push(Event::Reset(reason));
            }
        }
    }

    /// Resolves when the client resets the stream (or its front goes).
    pub async fn reset_by_client(&mut self) -> http2::Reason {
        match &mut self.sink {
            Sink::Stream(send) => poll_fn(|cx| send.poll_reset(cx)).await,
            Sink::Pipe(pipe) => {
                pipe.gone().await;
                Reason::CANCEL
            }
        }
    }
}

/// Waits until the peer's flow-control window has room, so a slow reader
/// applies backpressure instead of growing send buffers without bound.
pub async fn wait_capacity(stream: &mut SendStream) -> Result<(), http2::Error> {
    poll_fn(|cx| stream.poll_capacity(cx)).await.map(|_| ())
}

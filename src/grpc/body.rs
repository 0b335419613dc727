//! Message streams over h2 bodies: a reader that yields whole messages and a
//! responder that sends headers, messages and trailers in gRPC's order.

use bytes::Bytes;
use h2::{server::SendResponse, RecvStream, SendStream};
use http::{HeaderMap, HeaderValue, Response};

use super::{encode_message, Code, Decoder, FrameError, Status, CONTENT_TYPE};

/// Why reading a message stream failed.
#[derive(Debug)]
pub enum ReadError {
    /// The peer sent bytes that are not valid gRPC framing.
    Frame(FrameError),
    /// The h2 stream failed (reset, connection lost).
    Stream(h2::Error),
}

impl ReadError {
    /// The status a downstream client gets when its own request was bad.
    pub fn into_client_status(self) -> Status {
        match self {
            ReadError::Frame(e @ FrameError::TooLarge { .. }) => Status::new(Code::ResourceExhausted, e.to_string()),
            ReadError::Frame(e @ FrameError::Compressed) => Status::new(Code::Unimplemented, e.to_string()),
            ReadError::Frame(e) => Status::new(Code::Internal, format!("malformed request: {e}")),
            ReadError::Stream(e) => Status::new(Code::Cancelled, format!("request stream failed: {e}")),
        }
    }
}

/// Yields whole gRPC messages from an h2 body, releasing flow-control window
/// as chunks arrive so the peer is never stalled by our buffering.
pub struct MessageReader {
    body: RecvStream,
    decoder: Decoder,
    eof: bool,
}

impl MessageReader {
    pub fn new(body: RecvStream, max_message_size: usize) -> MessageReader {
        MessageReader { body, decoder: Decoder::new(max_message_size), eof: false }
    }

    /// The next message, or `None` once the peer half-closed cleanly.
    pub async fn message(&mut self) -> Result<Option<Bytes>, ReadError> {
        loop {
            if let Some(m) = self.decoder.next_message().map_err(ReadError::Frame)? {
                return Ok(Some(m));
            }
            if self.eof {
                self.decoder.finish().map_err(ReadError::Frame)?;
                return Ok(None);
            }
            match self.body.data().await {
                Some(Ok(chunk)) => {
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.decoder.push(chunk);
                }
                Some(Err(e)) => return Err(ReadError::Stream(e)),
                None => self.eof = true,
            }
        }
    }

    /// The one request message of a unary or server-streaming call, with
    /// the status a client gets when there is not exactly one.
    pub async fn single(mut self) -> Result<Bytes, Status> {
        let first = self.message().await.map_err(ReadError::into_client_status)?;
        let Some(payload) = first else {
            return Err(Status::new(Code::InvalidArgument, "the call ended without a request message"));
        };
        match self.message().await.map_err(ReadError::into_client_status)? {
            None => Ok(payload),
            Some(_) => Err(Status::new(Code::InvalidArgument, "more than one request message on a single-request call")),
        }
    }

    /// The trailers, after [`message`](Self::message) returned `None`.
    pub async fn trailers(&mut self) -> Result<Option<HeaderMap>, h2::Error> {
        self.body.trailers().await
    }
}

/// The server side of one gRPC response: headers once, messages, then
/// trailers (or a trailers-only response when nothing was sent).
pub struct Responder {
    respond: SendResponse<Bytes>,
    body: Option<SendStream<Bytes>>,
}

impl Responder {
    pub fn new(respond: SendResponse<Bytes>) -> Responder {
        Responder { respond, body: None }
    }

    /// Whether response headers went out already.
    pub fn started(&self) -> bool {
        self.body.is_some()
    }

    /// Sends the response headers with extra metadata (no-op once started).
    pub fn send_headers(&mut self, metadata: HeaderMap) -> Result<(), h2::Error> {
        if self.body.is_none() {
            let mut response = grpc_response();
            response.headers_mut().extend(metadata);
            self.body = Some(self.respond.send_response(response, false)?);
        }
        Ok(())
    }

    fn body(&mut self) -> Result<&mut SendStream<Bytes>, h2::Error> {
        self.send_headers(HeaderMap::new())?;
        Ok(self.body.as_mut().expect("headers sent"))
    }

    /// Queues one message without waiting for flow-control window; for
    /// unary replies, where exactly one message follows.
    pub fn send(&mut self, payload: Bytes) -> Result<(), h2::Error> {
        let body = self.body()?;
        let (head, tail) = encode_message(payload);
        body.send_data(head, false)?;
        if let Some(tail) = tail {
            body.send_data(tail, false)?;
        }
        Ok(())
    }

    /// Sends one message after waiting for the client's window, so a slow
    /// reader of a stream applies backpressure instead of growing our buffers.
    pub async fn send_flow(&mut self, payload: Bytes) -> Result<(), h2::Error> {
        wait_capacity(self.body()?, payload.len() + super::HEADER_LEN).await?;
        self.send(payload)
    }

    /// Ends the call with `status`: trailers after messages, or a
    /// trailers-only response.
    pub fn finish(mut self, status: &Status) {
        let mut trailers = HeaderMap::new();
        status.write_to(&mut trailers);
        match self.body.as_mut() {
            Some(body) => {
                let _ = body.send_trailers(trailers);
            }
            None => {
                let mut response = grpc_response();
                response.headers_mut().extend(trailers);
                let _ = self.respond.send_response(response, true);
            }
        }
    }

    /// Resets the stream (RST_STREAM) instead of answering.
    pub fn reset(mut self, reason: h2::Reason) {
        match self.body.as_mut() {
            Some(body) => body.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }

    /// Resolves when the client resets the stream. Once headers went out,
    /// only the body stream can observe the reset (h2 fails `poll_reset` on
    /// a used `SendResponse`).
    pub async fn reset_by_client(&mut self) -> h2::Reason {
        let polled = std::future::poll_fn(|cx| match self.body.as_mut() {
            Some(body) => body.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        });
        match polled.await {
            Ok(reason) => reason,
            Err(_) => h2::Reason::CANCEL,
        }
    }
}

fn grpc_response() -> Response<()> {
    let mut response = Response::new(());
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Waits until the peer's flow-control window has room, so a slow reader
/// applies backpressure instead of growing h2's send buffer without bound.
pub async fn wait_capacity(stream: &mut SendStream<Bytes>, len: usize) -> Result<(), h2::Error> {
    stream.reserve_capacity(len);
    while stream.capacity() == 0 {
        match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok(())
}

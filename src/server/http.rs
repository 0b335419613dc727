//! Plain HTTP requests and responses, the same whichever transport carried
//! them (HTTP/1.1 or an HTTP/2 stream that is not gRPC): what the HTTP/JSON
//! and gRPC-Web fronts, the probes and the admin endpoints see.

use std::{future::Future, rc::Rc};

use bytes::Bytes;

use crate::grpc::budget::Budget;
use crate::http2::Headers;

/// A request read whole. `head` holds `:method`, `:path` (with the query),
/// `:authority` and the regular fields with lower-case names, as on HTTP/2;
/// HTTP/1.1's connection-specific fields are gone.
pub struct HttpRequest {
    pub head: Headers,
    pub body: Bytes,
}

impl HttpRequest {
    pub fn method(&self) -> &str {
        self.head.get_str(b":method").unwrap_or("")
    }

    /// The request target: path and query.
    pub fn target(&self) -> &str {
        self.head.get_str(b":path").unwrap_or("")
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    pub fn header(&self, name: &[u8]) -> Option<&str> {
        self.head.get_str(name)
    }
}

/// The client went away (or stopped reading for too long) mid-response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// Where a response goes. `head` once, then `data` any number of times,
/// then `end`; a response with a known `length` is sent as is, one without
/// is streamed (chunked on HTTP/1.1).
pub trait ResponseWriter {
    fn head(&mut self, status: u16, headers: &Headers, length: Option<usize>) -> Result<(), Closed>;
    /// Sends a piece of the body; resolves when the transport took it, so a
    /// slow client slows the sender.
    fn data(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), Closed>>;
    fn end(&mut self) -> impl Future<Output = Result<(), Closed>>;
}

/// Something that answers plain HTTP requests.
pub trait HttpService: 'static {
    /// `budget` is the connection's, as for gRPC calls.
    fn serve_http<'a, W: ResponseWriter + 'a>(
        self: &'a Rc<Self>,
        request: HttpRequest,
        writer: &'a mut W,
        budget: &'a Rc<Budget>,
    ) -> impl Future<Output = ()> + 'a;
}

/// Sends a whole response.
pub async fn respond<W: ResponseWriter>(writer: &mut W, status: u16, headers: &Headers, body: Bytes) -> Result<(), Closed> {
    writer.head(status, headers, Some(body.len()))?;
    if !body.is_empty() {
        writer.data(body).await?;
    }
    writer.end().await
}

/// A whole plain-text response.
pub async fn respond_text<W: ResponseWriter>(writer: &mut W, status: u16, text: impl Into<Bytes>) -> Result<(), Closed> {
    let mut headers = Headers::with_capacity(32, 1);
    headers.push(b"content-type", b"text/plain; charset=utf-8");
    respond(writer, status, &headers, text.into()).await
}

/// The reason phrase HTTP/1.1 puts after a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        499 => "Client Closed Request",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

//! HTTP/1.1 connections: keep-alive, pipelined requests, `Content-Length`
//! and chunked bodies, `Expect: 100-continue`; heads parsed by `httparse`.
//!
//! Every byte a client can make us hold is bounded: the head by
//! [`Http1Limits::max_head`], the body by [`Http1Limits::max_body`] (413
//! before it is read), and the time to send either. A request whose framing
//! two parsers could read differently (both `Content-Length` and
//! `Transfer-Encoding`, repeated `Content-Length`, a coding other than
//! chunked) is refused with 400 and the connection closed, so nothing
//! behind it is ever taken for a request.

use std::{rc::Rc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use monoio::{
    buf::SliceMut,
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt},
};
use tracing::debug;

use super::http::{reason_phrase, Closed, HttpRequest, HttpService, ResponseWriter};
use crate::grpc::budget::Budget;
use crate::http2::Headers;
use crate::runtime::Notify;

/// Header fields per request.
const MAX_HEADERS: usize = 100;
/// Bytes read per system call.
const READ_CHUNK: usize = 16 * 1024;
/// After refusing a request: how long, and how much, of what the client
/// still sends is read and dropped before the socket closes.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Limits of one HTTP/1.1 connection.
#[derive(Clone, Copy, Debug)]
pub struct Http1Limits {
    /// Request line and header fields together (and a chunked body's trailer).
    pub max_head: usize,
    pub max_body: usize,
    /// For the first request's head.
    pub head_timeout: Duration,
    /// Between requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// For a body once its head arrived.
    pub body_timeout: Duration,
    /// For the client to take a piece of the response.
    pub write_timeout: Duration,
}

/// Why a request could not be read; each becomes a response and a close.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("transfer coding not supported: only chunked")]
    UnsupportedCoding,
}

impl RequestError {
    fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::HeadTooLarge(_) => 431,
            RequestError::BodyTooLarge(_) => 413,
            RequestError::UnsupportedCoding => 501,
        }
    }
}

/// How a request's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
}

/// A parsed head: the request as the fronts see it (body still to read),
/// and what the connection needs to know about it.
#[derive(Debug)]
pub struct Parsed {
    pub head: Headers,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Bytes of the buffer the head took.
    pub len: usize,
}

/// Fields that describe this connection or this hop, not the request.
fn connection_specific(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "content-length", "expect", "host"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// Parses a head from the start of `buf`; `Ok(None)` when incomplete.
pub fn parse_head(buf: &[u8], limits: &Http1Limits) -> Result<Option<Parsed>, RequestError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head => return Err(RequestError::HeadTooLarge(limits.max_head)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge(limits.max_head)),
        Err(_) => return Err(RequestError::Malformed("request line or header field")),
    };
    if len > limits.max_head {
        return Err(RequestError::HeadTooLarge(limits.max_head));
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("request line"));
    };
    if !target.starts_with('/') {
        return Err(RequestError::Malformed("request target must be a path"));
    }
    let mut head = Headers::with_capacity(len + 32, req.headers.len() + 3);
    head.push(b":method", method.as_bytes());
    head.push(b":scheme", b"http");
    head.push(b":path", target.as_bytes());
    let (mut length, mut chunked, mut coding, mut host) = (None, false, false, None);
    let mut keep_alive = version == 1;
    let mut expect_continue = false;
    for field in req.headers.iter() {
        let name = field.name;
        let value = trim(field.value);
        if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(RequestError::Malformed("more than one Content-Length"));
            }
            let digits = std::str::from_utf8(value).ok().filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
            length = Some(digits.and_then(|v| v.parse::<usize>().ok()).ok_or(RequestError::Malformed("Content-Length is not a number"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Codings are applied in order; chunked must be the last, once.
            for c in value.split(|&b| b == b',').map(trim).filter(|c| !c.is_empty()) {
                if chunked {
                    return Err(RequestError::Malformed("chunked must be the final transfer coding"));
                }
                if c.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == 0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(RequestError::Malformed("unsupported Expect"));
            }
            expect_continue = version == 1;
        } else if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Err(RequestError::Malformed("more than one Host"));
            }
            host = Some(value);
        }
        if !connection_specific(name) {
            head.push(name.to_ascii_lowercase().as_bytes(), value);
        }
    }
    if version == 1 && host.is_none() {
        return Err(RequestError::Malformed("HTTP/1.1 request without Host"));
    }
    if let Some(host) = host {
        head.push(b":authority", host);
    }
    let framing = match (length, chunked || coding) {
        (Some(_), true) => return Err(RequestError::Malformed("both Content-Length and Transfer-Encoding")),
        (_, true) if version == 0 => return Err(RequestError::Malformed("Transfer-Encoding on HTTP/1.0")),
        (_, true) if coding || !chunked => return Err(RequestError::UnsupportedCoding),
        (_, true) => Framing::Chunked,
        (Some(n), false) if n > limits.max_body => return Err(RequestError::BodyTooLarge(limits.max_body)),
        (n, false) => Framing::Length(n.unwrap_or(0)),
    };
    Ok(Some(Parsed { head, framing, keep_alive, expect_continue, len }))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

/// Decodes a chunked body from the start of `buf`: `Ok(Some((body, used)))`
/// once the last chunk and trailer section are in, `Ok(None)` for more.
pub fn parse_chunked(buf: &[u8], limits: &Http1Limits) -> Result<Option<(BytesMut, usize)>, RequestError> {
    let mut body = BytesMut::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find_crlf(&buf[at..]) else {
            return if buf.len() - at > 1024 { Err(RequestError::Malformed("chunk size line too long")) } else { Ok(None) };
        };
        let line = &buf[at..at + line_end];
        let size_text = line.split(|&b| b == b';').next().map(trim).unwrap_or_default();
        if size_text.is_empty() || size_text.len() > 8 || !size_text.iter().all(u8::is_ascii_hexdigit) {
            return Err(RequestError::Malformed("chunk size"));
        }
        let size = usize::from_str_radix(std::str::from_utf8(size_text).unwrap_or("x"), 16)
            .map_err(|_| RequestError::Malformed("chunk size"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailer fields (ignored), then the blank line.
            loop {
                let Some(end) = find_crlf(&buf[at..]) else {
                    return if buf.len() - at > limits.max_head { Err(RequestError::HeadTooLarge(limits.max_head)) } else { Ok(None) };
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > limits.max_body {
            return Err(RequestError::BodyTooLarge(limits.max_body));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(RequestError::Malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// Reads more into `buf`; `Ok(false)` at end of stream.
async fn fill<T: AsyncReadRent>(io: &mut T, buf: &mut BytesMut) -> std::io::Result<bool> {
    buf.reserve(READ_CHUNK);
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let (result, slice) = io.read(SliceMut::new(owned, len, cap)).await;
    *buf = slice.into_inner();
    Ok(result? > 0)
}

/// Why the connection loop stopped reading a request.
enum Stop {
    /// Clean end: the peer closed, shutdown, or an idle timeout.
    Quiet(&'static str),
    /// Tell the client, then close.
    Refuse(RequestError),
    /// A body did not arrive in time.
    Timeout,
}

/// Serves HTTP/1.1 requests on `io` until the client closes, a request
/// asks for the close, or `shutdown` fires between requests. `read` holds
/// bytes already read (while sniffing the protocol).
pub async fn serve_http1<T, S>(mut io: T, mut read: BytesMut, service: Rc<S>, shutdown: Notify, limits: Http1Limits, budget: Rc<Budget>)
where
    T: AsyncReadRent + AsyncWriteRent,
    S: HttpService,
{
    let mut first = true;
    loop {
        let request = monoio::select! {
            r = read_request(&mut io, &mut read, &limits, first) => r,
            _ = shutdown.wait(), if read.is_empty() => Err(Stop::Quiet("shutting down")),
        };
        first = false;
        let (request, keep_alive) = match request {
            Ok(r) => r,
            Err(Stop::Quiet(why)) => return debug!(why, "HTTP/1.1 connection done"),
            Err(Stop::Timeout) => return write_error(&mut io, 408, "request body not complete in time", &limits).await,
            Err(Stop::Refuse(e)) => {
                debug!(error = %e, "refusing HTTP/1.1 request");
                return write_error(&mut io, e.status(), &e.to_string(), &limits).await;
            }
        };
        let keep_alive = keep_alive && !shutdown.fired();
        let mut writer = Writer { io: &mut io, out: Vec::new(), chunked: false, keep_alive, failed: false, timeout: limits.write_timeout };
        service.serve_http(request, &mut writer, &budget).await;
        if writer.failed || !writer.keep_alive {
            return;
        }
    }
}

/// Reads the next request whole, answering `100 Continue` when asked.
async fn read_request<T: AsyncReadRent + AsyncWriteRent>(
    io: &mut T,
    buf: &mut BytesMut,
    limits: &Http1Limits,
    first: bool,
) -> Result<(HttpRequest, bool), Stop> {
    let wait = if first { limits.head_timeout } else { limits.idle_timeout };
    let parsed = crate::runtime::timeout(wait, async {
        loop {
            if !buf.is_empty() {
                if let Some(p) = parse_head(buf, limits).map_err(Stop::Refuse)? {
                    return Ok(p);
                }
            }
            match fill(io, buf).await {
                Ok(true) => {}
                Ok(false) if buf.is_empty() => return Err(Stop::Quiet("client closed")),
                Ok(false) => return Err(Stop::Refuse(RequestError::Malformed("connection closed inside a request head"))),
                Err(_) => return Err(Stop::Quiet("read failed")),
            }
        }
    })
    .await
    .unwrap_or(Err(Stop::Quiet("no request in time")))?;
    buf.advance(parsed.len);
    if parsed.expect_continue && !(parsed.framing == Framing::Length(0) || buf.len() > 0) {
        let (result, _) = io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n".as_slice()).await;
        result.map_err(|_| Stop::Quiet("write failed"))?;
    }
    let body = crate::runtime::timeout(limits.body_timeout, async {
        loop {
            match parsed.framing {
                Framing::Length(n) if buf.len() >= n => return Ok(buf.split_to(n).freeze()),
                Framing::Chunked => {
                    if let Some((body, used)) = parse_chunked(buf, limits).map_err(Stop::Refuse)? {
                        buf.advance(used);
                        return Ok(body.freeze());
                    }
                }
                Framing::Length(_) => {}
            }
            match fill(io, buf).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return Err(Stop::Quiet("client closed inside a request body")),
            }
        }
    })
    .await
    .unwrap_or(Err(Stop::Timeout))?;
    Ok((HttpRequest { head: parsed.head, body }, parsed.keep_alive))
}

/// An error response that closes the connection. What the client still
/// sends is read and dropped for a moment (bounded), so closing with
/// unread bytes does not reset the connection before it read the answer.
async fn write_error<T: AsyncReadRent + AsyncWriteRent>(io: &mut T, status: u16, text: &str, limits: &Http1Limits) {
    let out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}\n",
        reason_phrase(status),
        text.len() + 1
    );
    if write_out(io, out.into_bytes(), limits.write_timeout).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let _ = monoio::time::timeout(LINGER, async {
        let mut drained = 0;
        let mut buf = BytesMut::new();
        while drained < LINGER_BYTES && matches!(fill(io, &mut buf).await, Ok(true)) {
            drained += buf.len();
            buf.clear();
        }
    })
    .await;
}

async fn write_out<T: AsyncWriteRent>(io: &mut T, out: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, Closed> {
    match monoio::time::timeout(timeout, io.write_all(out)).await {
        Ok((Ok(_), mut buf)) => {
            buf.clear();
            Ok(buf)
        }
        _ => Err(Closed),
    }
}

/// One response on an HTTP/1.1 connection. The head is held until the
/// first piece of body (or the end), so a short response is one write.
struct Writer<'a, T> {
    io: &'a mut T,
    out: Vec<u8>,
    chunked: bool,
    keep_alive: bool,
    failed: bool,
    timeout: Duration,
}

impl<T: AsyncWriteRent> Writer<'_, T> {
    async fn flush(&mut self) -> Result<(), Closed> {
        if self.failed {
            return Err(Closed);
        }
        let out = std::mem::take(&mut self.out);
        match write_out(self.io, out, self.timeout).await {
            Ok(buf) => {
                self.out = buf;
                Ok(())
            }
            Err(Closed) => {
                self.failed = true;
                Err(Closed)
            }
        }
    }
}

impl<T: AsyncWriteRent> ResponseWriter for Writer<'_, T> {
    fn head(&mut self, status: u16, headers: &Headers, length: Option<usize>) -> Result<(), Closed> {
        use std::io::Write;
        let out = &mut self.out;
        let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in headers.regular() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match length {
            // 204 and 304 carry no body and no length (RFC 9110 §8.6).
            Some(_) if status == 204 || status == 304 => {}
            Some(n) => {
                let _ = write!(out, "content-length: {n}\r\n");
            }
            None => {
                self.chunked = true;
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
        }
        if !self.keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    async fn data(&mut self, chunk: Bytes) -> Result<(), Closed> {
        if self.chunked {
            use std::io::Write;
            let _ = write!(self.out, "{:x}\r\n", chunk.len());
            self.out.extend_from_slice(&chunk);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.out.extend_from_slice(&chunk);
        }
        self.flush().await
    }

    async fn end(&mut self) -> Result<(), Closed> {
        if self.chunked {
            self.out.extend_from_slice(b"0\r\n\r\n");
        }
        if self.out.is_empty() {
            return if self.failed { Err(Closed) } else { Ok(()) };
        }
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Http1Limits = Http1Limits {
        max_head: 1024,
        max_body: 64,
        head_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
    };

    fn parse(text: &str) -> Result<Option<Parsed>, RequestError> {
        parse_head(text.as_bytes(), &LIMITS)
    }

    #[test]
    fn parses_a_head_into_http2_style_fields() {
        let p = parse("POST /carts/a?x=1 HTTP/1.1\r\nHost: h:9\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(p.head.get_str(b":method"), Some("POST"));
        assert_eq!(p.head.get_str(b":path"), Some("/carts/a?x=1"));
        assert_eq!(p.head.get_str(b":authority"), Some("h:9"));
        assert_eq!(p.head.get_str(b"content-type"), Some("application/json"));
        assert_eq!(p.head.get(b"content-length"), None, "framing is the connection's business");
        assert_eq!((p.framing, p.keep_alive), (Framing::Length(2), true));
        assert_eq!(p.len, p.head.get_str(b":path").map(|_| "POST /carts/a?x=1 HTTP/1.1\r\nHost: h:9\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n".len()).unwrap());
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none(), "incomplete");
        let p = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!p.keep_alive, "HTTP/1.0 closes unless asked");
        let p = parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!p.keep_alive);
    }

    #[test]
    fn refuses_ambiguous_framing() {
        for (text, why) in [
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "CL + TE"),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "CL twice"),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", "CL list"),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", "CL sign"),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "chunked not last"),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked twice"),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "TE on 1.0"),
            ("GET / HTTP/1.1\r\n\r\n", "no Host"),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host twice"),
            ("GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", "absolute form"),
            ("GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n", "field without colon"),
        ] {
            assert!(matches!(parse(text), Err(RequestError::Malformed(_))), "{why}: {:?}", parse(text));
        }
        assert_eq!(parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap_err(), RequestError::UnsupportedCoding);
        assert_eq!(parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n").unwrap_err(), RequestError::BodyTooLarge(64));
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(parse(&big).unwrap_err(), RequestError::HeadTooLarge(1024));
        assert_eq!(parse(&big[..1500]).unwrap_err(), RequestError::HeadTooLarge(1024), "partial but already too large");
    }

    #[test]
    fn decodes_chunked_bodies() {
        let (body, used) = parse_chunked(b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT", &LIMITS).unwrap().unwrap();
        assert_eq!((&body[..], used), (&b"abcde"[..], 38));
        assert!(parse_chunked(b"3\r\nab", &LIMITS).unwrap().is_none());
        assert!(parse_chunked(b"3\r\nabc\r\n0\r\n", &LIMITS).unwrap().is_none(), "trailer section not ended");
        assert!(matches!(parse_chunked(b"zz\r\n", &LIMITS), Err(RequestError::Malformed(_))));
        assert!(matches!(parse_chunked(b"3\r\nabcX\r\n", &LIMITS), Err(RequestError::Malformed(_))));
        assert_eq!(parse_chunked(b"41\r\n", &LIMITS).unwrap_err(), RequestError::BodyTooLarge(64), "refused before it arrives");
        assert!(matches!(parse_chunked(b"fffffffff\r\n", &LIMITS), Err(RequestError::Malformed(_))), "size overflow");
    }
}

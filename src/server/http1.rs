//! Minimal HTTP/1.1: enough to answer probes on the public port (the TCK and
//! Knative poke it with plain HTTP/1.1) and to serve the admin endpoints
//! (the admin port over poll IO, the public port over owned buffers).
//! One request per connection; the answer always closes.

use std::{future::poll_fn, io, pin::Pin};

use bytes::BytesMut;
use monoio::buf::SliceMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Request heads larger than this are refused (431).
const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request head could not be read.
#[derive(Debug)]
pub enum HeadError {
    TooLarge,
    Malformed,
    Io(io::Error),
}

/// Parses a complete head (through the blank line).
pub fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| HeadError::Malformed)?;
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().ok_or(HeadError::Malformed)?.split(' ');
    let (Some(method), Some(path), Some(version)) = (request_line.next(), request_line.next(), request_line.next()) else {
        return Err(HeadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || request_line.next().is_some() {
        return Err(HeadError::Malformed);
    }
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':').ok_or(HeadError::Malformed)?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Head { method: method.to_owned(), path: path.to_owned(), headers })
}

/// Reads one request head.
pub async fn read_head<T: AsyncRead + Unpin>(io: &mut T) -> Result<Head, HeadError> {
    let mut buf = Vec::with_capacity(512);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(&buf[..end + 4]);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 1024];
        let n = poll_fn(|cx| {
            let mut rb = ReadBuf::new(&mut chunk);
            Pin::new(&mut *io).poll_read(cx, &mut rb).map_ok(|()| rb.filled().len())
        })
        .await
        .map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes a complete response and closes.
pub async fn respond<T: AsyncWrite + Unpin>(io: &mut T, status: &str, content_type: &str, body: &[u8]) -> io::Result<()> {
    write_all(io, &response(status, content_type, body)).await?;
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await?;
    poll_fn(|cx| Pin::new(&mut *io).poll_shutdown(cx)).await
}

/// A whole response that closes the connection.
pub fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

pub async fn write_all<T: AsyncWrite + Unpin>(io: &mut T, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Answers an HTTP/1.1 request on the public port (plaintext or TLS). gRPC
/// needs HTTP/2; the Knative queue probe gets its expected answer;
/// everything else a 404. `read` holds the bytes read while sniffing; the
/// head must be complete within `head_timeout`.
pub async fn answer_public<T: AsyncReadRent + AsyncWriteRent>(mut io: T, read: BytesMut, head_timeout: std::time::Duration) {
    let head = match monoio::time::timeout(head_timeout, read_owned_head(&mut io, read)).await {
        Ok(head) => head,
        Err(_) => return tracing::debug!("HTTP/1.1 request head not complete in time; closing"),
    };
    let answer = match head {
        Ok(head) => match head.header("k-network-probe") {
            Some("queue") => response("200 OK", "text/plain", b"queue"),
            Some(_) => response("400 Bad Request", "text/plain", b"unexpected K-Network-Probe value\n"),
            None => {
                let body = format!(
                    "Massa serves gRPC over HTTP/2 on this port; no HTTP/1.1 route for {} {}\n",
                    head.method, head.path
                );
                response("404 Not Found", "text/plain", body.as_bytes())
            }
        },
        Err(HeadError::TooLarge) => response("431 Request Header Fields Too Large", "text/plain", b""),
        Err(HeadError::Malformed) => response("400 Bad Request", "text/plain", b"malformed request\n"),
        Err(HeadError::Io(e)) => return tracing::debug!(error = %e, "HTTP/1.1 request head not read"),
    };
    let (result, _) = io.write_all(answer).await;
    if let Err(e) = result.and(io.shutdown().await) {
        tracing::debug!(error = %e, "HTTP/1.1 answer failed");
    }
}

/// [`read_head`] over owned-buffer IO, continuing from `buf`.
async fn read_owned_head<T: AsyncReadRent>(io: &mut T, mut buf: BytesMut) -> Result<Head, HeadError> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return parse_head(&buf[..end + 4]);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        buf.reserve(1024);
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = io.read(SliceMut::new(buf, len, cap)).await;
        buf = slice.into_inner();
        if result.map_err(HeadError::Io)? == 0 {
            return Err(HeadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let h = parse_head(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nK-Network-Probe: queue\r\n\r\n").unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/health/ready"));
        assert_eq!(h.header("k-network-probe"), Some("queue"));
        assert!(matches!(parse_head(b"GET /\r\n\r\n"), Err(HeadError::Malformed)));
        assert!(matches!(parse_head(b"GET / HTTP/1.1\r\nbroken\r\n\r\n"), Err(HeadError::Malformed)));
    }
}

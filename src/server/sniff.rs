//! Protocol detection on a fresh connection.

use std::io;

use bytes::BytesMut;
use monoio::{buf::SliceMut, io::AsyncReadRent};

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    H2,
    Http1,
    Unknown,
}

/// Classifies the first bytes. `None` means "need more".
pub fn classify(buf: &[u8]) -> Option<Protocol> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::H2);
    }
    // An HTTP/1.x request line: an upper-case token, a space.
    let token = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match buf.get(token) {
        Some(b' ') if (3..=7).contains(&token) => Some(Protocol::Http1),
        None if token == buf.len() && token < 8 => None,
        _ => Some(Protocol::Unknown),
    }
}

/// Reads until the protocol is known; returns it with the bytes read so
/// far (the HTTP/2 server goes on reading into the same buffer).
pub async fn sniff<T: AsyncReadRent>(io: &mut T) -> io::Result<(Protocol, BytesMut)> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if !buf.is_empty() {
            if let Some(p) = classify(&buf) {
                return Ok((p, buf));
            }
        }
        let (len, cap) = (buf.len(), buf.capacity());
        let (result, slice) = io.read(SliceMut::new(buf, len, cap)).await;
        buf = slice.into_inner();
        if result? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_prefaces_and_request_lines() {
        assert_eq!(classify(H2_PREFACE), Some(Protocol::H2));
        assert_eq!(classify(&H2_PREFACE[..10]), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POST /x HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"\x16\x03\x01\x02"), Some(Protocol::Unknown), "TLS hello");
        assert_eq!(classify(b"hello world"), Some(Protocol::Unknown));
        assert_eq!(classify(b"PRX"), None, "could still be a long method name");
        assert_eq!(classify(b"LONGMETHOD x"), Some(Protocol::Unknown));
    }
}

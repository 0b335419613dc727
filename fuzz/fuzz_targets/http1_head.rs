//! The HTTP/1.1 request parser on any bytes: never panics; an accepted head
//! is a fixed point (printed back as a canonical head and parsed again, it
//! yields the same fields and the same body framing), and a chunked body
//! never decodes past the body limit or the bytes it was given.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use massa::server::http1::{parse_chunked, parse_head, Framing, Http1Limits};

const LIMITS: Http1Limits = Http1Limits {
    max_head: 4096,
    max_body: 1024,
    head_timeout: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(1),
    body_timeout: Duration::from_secs(1),
    write_timeout: Duration::from_secs(1),
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(parsed)) = parse_head(data, &LIMITS) {
        assert!(parsed.len <= data.len());
        let head = &parsed.head;
        let (method, path) = (head.get(b":method").unwrap(), head.get(b":path").unwrap());
        let authority = head.get(b":authority");
        let mut printed = Vec::new();
        printed.extend_from_slice(method);
        printed.push(b' ');
        printed.extend_from_slice(path);
        // Only HTTP/1.0 may come without a Host.
        printed.extend_from_slice(if authority.is_some() { b" HTTP/1.1\r\n" } else { b" HTTP/1.0\r\n" });
        if let Some(host) = authority {
            printed.extend_from_slice(b"host: ");
            printed.extend_from_slice(host);
            printed.extend_from_slice(b"\r\n");
        }
        for (name, value) in head.regular() {
            assert!(!name.contains(&b':') && !value.contains(&b'\n'), "{name:?}: {value:?}");
            printed.extend_from_slice(name);
            printed.extend_from_slice(b": ");
            printed.extend_from_slice(value);
            printed.extend_from_slice(b"\r\n");
        }
        match parsed.framing {
            // No length is a length of 0 (and one field fewer: the field
            // count is bounded too).
            Framing::Length(0) => {}
            Framing::Length(n) => printed.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
            Framing::Chunked => printed.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        printed.extend_from_slice(b"\r\n");
        // The canonical form may be longer (CRLF for LF, a space after
        // each colon), so it is read with room for that.
        let roomy = Http1Limits { max_head: 4 * LIMITS.max_head + 64, ..LIMITS };
        let again = match parse_head(&printed, &roomy) {
            Ok(Some(again)) => again,
            other => panic!("reprinted head {:?} not accepted: {other:?}", String::from_utf8_lossy(&printed)),
        };
        assert_eq!((&again.head, again.framing), (head, parsed.framing));
    }
    if let Ok(Some((body, used))) = parse_chunked(data, &LIMITS) {
        assert!(used <= data.len() && body.len() <= LIMITS.max_body);
    }
});

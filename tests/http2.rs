//! RFC 9113 at frame level against the real binary: a blocking raw-socket
//! client writes frames byte by byte (HPACK from our encoder, which the
//! unit tests check against RFC 7541's examples), and reads what Massa
//! answers. Conformance for what gRPC uses, and the defences that must hold.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use massa::grpc::encode_prost;
use massa::http2::hpack::{encode_static_block, Decoder};
use support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

const PROTOCOL_ERROR: u32 = 1;
const FLOW_CONTROL_ERROR: u32 = 3;
const FRAME_SIZE_ERROR: u32 = 6;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[derive(Debug, Clone)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A raw HTTP/2 client connection.
struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl Raw {
    /// Connects and sends the preface and an empty SETTINGS.
    fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut raw = Raw { s, buf: Vec::new(), closed: false };
        raw.write(PREFACE);
        raw.send(SETTINGS, 0, 0, &[]);
        raw
    }

    fn write(&mut self, bytes: &[u8]) {
        // A peer that closed on us is what some tests wait for.
        let _ = self.s.write_all(bytes);
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.write(&Raw::frame(kind, flags, stream, payload));
    }

    /// The next frame within `patience`; `None` when closed or silent.
    fn next(&mut self, patience: Duration) -> Option<Frame> {
        let deadline = Instant::now() + patience;
        loop {
            if self.buf.len() >= 9 {
                let len = (self.buf[0] as usize) << 16 | (self.buf[1] as usize) << 8 | self.buf[2] as usize;
                if self.buf.len() >= 9 + len {
                    let f = Frame {
                        kind: self.buf[3],
                        flags: self.buf[4],
                        stream: u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff,
                        payload: self.buf[9..9 + len].to_vec(),
                    };
                    self.buf.drain(..9 + len);
                    return Some(f);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) if self.closed_now() => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    fn closed_now(&mut self) -> bool {
        let mut probe = [0u8; 1];
        self.s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        match self.s.peek(&mut probe) {
            Ok(0) => self.closed = true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => self.closed = true,
            _ => {}
        }
        self.closed
    }

    /// Frames until one of `kind` arrives (returned) or the patience ends.
    fn until(&mut self, kind: u8, patience: Duration) -> Option<Frame> {
        let deadline = Instant::now() + patience;
        while let Some(f) = self.next(deadline.saturating_duration_since(Instant::now())) {
            if f.kind == kind {
                return Some(f);
            }
        }
        None
    }

    /// The GOAWAY's (last stream id, error code), then checks the close.
    fn goaway(&mut self) -> (u32, u32) {
        let f = self.until(GOAWAY, PATIENCE).expect("a GOAWAY");
        let last = u32::from_be_bytes(f.payload[0..4].try_into().unwrap());
        let code = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
        (last, code)
    }

    /// Whether the peer closed the connection within `patience`.
    fn closes_within(&mut self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if self.next(Duration::from_millis(50)).is_none() && self.closed {
                return true;
            }
        }
        false
    }
}

/// An Echo/Say request head block.
fn say_head() -> Vec<u8> {
    encode_static_block(&[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/example.echo.Echo/Say"),
        (b":authority", b"localhost"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ])
}

fn say_body(text: &str) -> Vec<u8> {
    encode_prost(&text_req(text)).to_vec()
}

type Fields = Vec<(String, String)>;

/// Reads one stream's response: (head fields, body bytes, trailer fields).
fn response(raw: &mut Raw, stream: u32) -> (Fields, Vec<u8>, Fields) {
    let mut decoder = Decoder::new(4096);
    let mut blocks = Vec::new();
    let mut body = Vec::new();
    loop {
        let f = raw.next(PATIENCE).expect("the response");
        if f.stream != stream {
            continue;
        }
        match f.kind {
            HEADERS => {
                let mut fields = Vec::new();
                decoder
                    .decode(&f.payload, 1 << 20, |n, v| {
                        fields.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
                    })
                    .unwrap();
                blocks.push(fields);
                if f.flags & END_STREAM != 0 {
                    break;
                }
            }
            DATA => {
                body.extend_from_slice(&f.payload);
                if f.flags & END_STREAM != 0 {
                    break;
                }
            }
            RST_STREAM => panic!("stream {stream} reset: {:?}", f.payload),
            _ => {}
        }
    }
    let head = blocks.remove(0);
    (head, body, blocks.pop().unwrap_or_default())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Reads stream `stream`'s response and checks it is a gRPC OK echoing
/// `text`.
fn expect_echo(raw: &mut Raw, stream: u32, text: &str) {
    let (head, body, trailers) = response(raw, stream);
    assert_eq!(field(&head, ":status"), Some("200"));
    assert_eq!(field(&head, "content-type"), Some("application/grpc"));
    assert!(body.len() > 5 && String::from_utf8_lossy(&body).contains(text), "{body:?}");
    assert_eq!(field(&trailers, "grpc-status"), Some("0"));
}

fn setup(extra: &[&str]) -> (Proc, Massa) {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, extra);
    (f, m)
}

#[test]
fn settings_ping_priority_continuation_and_a_call() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    let first = raw.next(PATIENCE).expect("server SETTINGS");
    assert_eq!((first.kind, first.flags), (SETTINGS, 0), "the server's first frame is its SETTINGS");
    assert_eq!(first.payload.len() % 6, 0);
    raw.send(SETTINGS, 1, 0, &[]);
    let ack = raw.until(SETTINGS, PATIENCE).expect("our SETTINGS acknowledged");
    assert_eq!(ack.flags, 1);
    raw.send(PING, 0, 0, b"12345678");
    let pong = raw.until(PING, PATIENCE).expect("PING answered");
    assert_eq!((pong.flags, pong.payload.as_slice()), (1, &b"12345678"[..]));
    // PRIORITY (also on an idle stream) is ignored; a head split across
    // HEADERS and two CONTINUATIONs is joined.
    raw.send(PRIORITY, 0, 1, &[0, 0, 0, 0, 16]);
    let head = say_head();
    let (a, rest) = head.split_at(5);
    let (b, c) = rest.split_at(7);
    raw.send(HEADERS, 0, 1, a);
    raw.send(CONTINUATION, 0, 1, b);
    raw.send(CONTINUATION, END_HEADERS, 1, c);
    raw.send(DATA, END_STREAM, 1, &say_body("joined"));
    expect_echo(&mut raw, 1, "joined");
    // Padded DATA and a second stream on the same connection.
    raw.send(HEADERS, END_HEADERS, 3, &say_head());
    let mut padded = vec![4u8];
    padded.extend_from_slice(&say_body("padded"));
    padded.extend_from_slice(&[0; 4]);
    raw.send(DATA, END_STREAM | 0x8, 3, &padded);
    expect_echo(&mut raw, 3, "padded");
}

#[test]
fn stream_id_and_frame_rules_are_connection_errors() {
    let (_f, m) = setup(&[]);
    let cases: Vec<(&str, Vec<Vec<u8>>, u32)> = vec![
        ("even stream id", vec![Raw::frame(HEADERS, END_HEADERS, 2, &say_head())], PROTOCOL_ERROR),
        (
            "stream ids going down",
            vec![Raw::frame(HEADERS, END_HEADERS, 5, &say_head()), Raw::frame(HEADERS, END_HEADERS, 3, &say_head())],
            PROTOCOL_ERROR,
        ),
        ("DATA on an idle stream", vec![Raw::frame(DATA, 0, 7, b"x")], PROTOCOL_ERROR),
        ("DATA above the frame size", vec![Raw::frame(HEADERS, END_HEADERS, 1, &say_head()), Raw::frame(DATA, 0, 1, &[0; 16385])], FRAME_SIZE_ERROR),
        ("connection WINDOW_UPDATE of 0", vec![Raw::frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])], PROTOCOL_ERROR),
        ("SETTINGS of 5 bytes", vec![Raw::frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0])], FRAME_SIZE_ERROR),
        ("window above 2^31-1", vec![Raw::frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0])], FLOW_CONTROL_ERROR),
        ("PING on a stream", vec![Raw::frame(PING, 0, 1, b"12345678")], PROTOCOL_ERROR),
        ("HEADERS interrupted", vec![Raw::frame(HEADERS, 0, 1, &say_head()[..3]), Raw::frame(PING, 0, 0, b"12345678")], PROTOCOL_ERROR),
        ("CONTINUATION alone", vec![Raw::frame(CONTINUATION, END_HEADERS, 1, b"")], PROTOCOL_ERROR),
        ("undecodable header block", vec![Raw::frame(HEADERS, END_HEADERS, 1, &[0x80])], 0x9),
    ];
    for (what, frames, code) in cases {
        let mut raw = Raw::connect(m.port);
        for f in frames {
            raw.write(&f);
        }
        assert_eq!(raw.goaway().1, code, "{what}");
        assert!(raw.closes_within(PATIENCE), "{what}: connection not closed");
    }
    assert!(serves_again(m.port));
}

#[test]
fn malformed_request_heads_reset_only_their_stream() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    let bad_heads: Vec<Vec<u8>> = vec![
        encode_static_block(&[(b":method", b"POST"), (b":path", b"/example.echo.Echo/Say")]),
        encode_static_block(&[(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b"Upper", b"1")]),
        encode_static_block(&[(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x"), (b"connection", b"close")]),
        encode_static_block(&[(b"x", b"1"), (b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/x")]),
    ];
    for (i, head) in bad_heads.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        raw.send(HEADERS, END_HEADERS | END_STREAM, id, head);
        let rst = raw.until(RST_STREAM, PATIENCE).expect("RST_STREAM");
        assert_eq!((rst.stream, u32::from_be_bytes(rst.payload[..4].try_into().unwrap())), (id, PROTOCOL_ERROR));
    }
    raw.send(HEADERS, END_HEADERS, 11, &say_head());
    raw.send(DATA, END_STREAM, 11, &say_body("still here"));
    expect_echo(&mut raw, 11, "still here");
}

#[test]
fn hpack_bombs_and_oversized_header_lists_are_refused_per_stream() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    // One 4000-byte value inserted into the dynamic table (4 KiB), then
    // referenced 100 times by one byte each: 400 KB decoded from 4 KB sent.
    let mut block = say_head();
    block.push(0x40); // literal with incremental indexing, new name
    block.push(5);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // length 4000 (127 + 3873)
    block.extend_from_slice(&[b'v'; 4000]);
    block.extend(std::iter::repeat_n(0xbe, 100)); // index 62, the entry just added
    raw.send(HEADERS, END_HEADERS | END_STREAM, 1, &block);
    let (head, _, _) = response(&mut raw, 1);
    assert_eq!(field(&head, ":status"), Some("431"));
    // The table stays in sync: the next block refers to it legitimately.
    let mut next = say_head();
    next.push(0xbe);
    raw.send(HEADERS, END_HEADERS, 3, &next);
    raw.send(DATA, END_STREAM, 3, &say_body("after the bomb"));
    expect_echo(&mut raw, 3, "after the bomb");
}

#[test]
fn continuation_floods_and_rapid_resets_get_enhance_your_calm() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    raw.send(HEADERS, 0, 1, &say_head()[..4]);
    let mut flood = Vec::new();
    for _ in 0..10_000 {
        flood.extend_from_slice(&Raw::frame(CONTINUATION, 0, 1, &[0x40, 1, b'a', 1, b'b']));
    }
    raw.write(&flood);
    assert_eq!(raw.goaway().1, ENHANCE_YOUR_CALM, "CONTINUATION flood");

    // CVE-2023-44487: open and cancel streams as fast as possible.
    let mut raw = Raw::connect(m.port);
    let mut burst = Vec::new();
    for i in 0..5_000u32 {
        let id = 1 + 2 * i;
        burst.extend_from_slice(&Raw::frame(HEADERS, END_HEADERS, id, &say_head()));
        burst.extend_from_slice(&Raw::frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    raw.write(&burst);
    assert_eq!(raw.goaway().1, ENHANCE_YOUR_CALM, "rapid reset");
    assert!(serves_again(m.port));
}

#[test]
fn a_peer_that_floods_pings_without_reading_is_dropped() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    raw.s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let ping = Raw::frame(PING, 0, 0, b"abcdefgh");
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 10_000).collect();
    // Never reading: the answers pile up in Massa until it gives up on us
    // (or our writes block once it stops reading).
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) && raw.s.write_all(&burst).is_ok() {}
    // Dropped means the socket is gone, not merely unread: writes fail
    // with a reset instead of blocking.
    let deadline = Instant::now() + PATIENCE;
    let reset = loop {
        std::thread::sleep(Duration::from_millis(200));
        match raw.s.write(&ping) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => break true,
            _ if Instant::now() > deadline => break false,
            _ => {}
        }
    };
    assert!(reset, "a peer that never reads its PING answers kept its connection; log:\n{}", m.proc.log());
    assert!(serves_again(m.port));
}

#[test]
fn sigterm_sends_goaway_with_the_last_stream_and_finishes_it() {
    let (_f, m) = setup(&[]);
    let mut raw = Raw::connect(m.port);
    raw.send(HEADERS, END_HEADERS, 1, &say_head());
    raw.send(DATA, END_STREAM, 1, &say_body("slow:goodbye"));
    std::thread::sleep(Duration::from_millis(100));
    m.proc.signal(libc::SIGTERM);
    let (last, code) = raw.goaway();
    assert_eq!((last, code), (1, 0), "graceful GOAWAY names stream 1");
    expect_echo(&mut raw, 1, "goodbye");
    assert!(raw.closes_within(PATIENCE));
}

#[test]
fn invalid_prefaces_are_closed() {
    let (_f, m) = setup(&[]);
    for garbage in [&b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x01\x00\x00\x00\x00\x00"] {
        let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
        s.write_all(garbage).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        // Whatever was said first (SETTINGS, GOAWAY), the socket is closed.
        assert!(all.len() < 1024, "{all:?}");
    }
    assert!(serves_again(m.port));
}

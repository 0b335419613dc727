//! The plain-HTTP side of the public port, at the level the attacks happen:
//! raw HTTP/1.1 bytes over a socket (keep-alive, pipelining, chunked
//! bodies, `Expect`, smuggling attempts, oversized bodies), gRPC-Web in
//! both formats over HTTP/1.1 and HTTP/2 (curl), CORS, the Knative probe.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use base64::Engine;
use massa::proto::example::echo::{EchoReply, EchoRequest};
use prost::Message;
use support::*;

fn setup(extra: &[&str]) -> (Proc, Massa) {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, extra);
    (f, m)
}

/// Sends `request` and reads until the server closes or `quiet` passes
/// with nothing more; returns what came and whether the server closed.
fn exchange(port: u16, request: &[u8], quiet: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(request).unwrap();
    read_all(&mut s, quiet)
}

fn read_all(s: &mut TcpStream, quiet: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(quiet)).unwrap();
    let (mut out, mut buf) = (Vec::new(), [0u8; 65536]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
    (out, false)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Status codes of the responses in `bytes`, in order.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    text(bytes).match_indices("HTTP/1.1 ").map(|(i, _)| text(bytes)[i + 9..i + 12].parse().unwrap()).collect()
}

fn grpc_web_frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

fn say(text: &str) -> EchoRequest {
    EchoRequest { text: text.into(), ..Default::default() }
}

/// Splits a gRPC-Web body into its messages and its trailer text.
fn parse_grpc_web(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut messages, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body[5..5 + len].to_vec();
        if body[0] & 0x80 != 0 {
            trailers = text(&payload);
        } else {
            messages.push(payload);
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

fn body_of(response: &[u8]) -> &[u8] {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head") + 4;
    &response[at..]
}

fn post(path: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: t\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n", body.len())
        .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The texts the example function's `Record` has kept.
fn recorded(port: u16) -> String {
    let (out, _) = exchange(port, &post("/example.echo.Echo/Recorded", "application/grpc-web", "", &grpc_web_frame(&say(""))), Duration::from_secs(5));
    let (messages, trailers) = parse_grpc_web(body_of(&out));
    assert!(trailers.contains("grpc-status:0"), "{}", text(&out));
    EchoReply::decode(&messages[0][..]).unwrap().text
}

#[test]
fn keep_alive_pipelining_probe_and_root() {
    let (_f, m) = setup(&[]);
    let (out, closed) = exchange(
        m.port,
        b"GET / HTTP/1.1\r\nHost: t\r\nK-Network-Probe: queue\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nK-Network-Probe: other\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(statuses(&out), [200, 400, 404, 404], "{}", text(&out));
    assert!(text(&out).contains("\r\n\r\nqueue"), "{}", text(&out));
    assert!(closed, "Connection: close ends the connection");
    // Without a close the connection stays for the next request.
    let (out, closed) = exchange(m.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", Duration::from_millis(500));
    assert_eq!((statuses(&out), closed), (vec![404], false));
    // HTTP/1.0 closes unless asked not to.
    let (out, closed) = exchange(m.port, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5));
    assert_eq!((statuses(&out), closed), (vec![404], true));
}

#[test]
fn grpc_web_binary_and_text_over_http1_with_chunked_and_expect() {
    let (_f, m) = setup(&[]);
    // Binary, unary.
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Say", "application/grpc-web+proto", "", &grpc_web_frame(&say("hi"))), Duration::from_secs(5));
    assert!(text(&out).starts_with("HTTP/1.1 200"), "{}", text(&out));
    assert!(text(&out).contains("content-type: application/grpc-web+proto"));
    assert!(text(&out).contains("x-echo-method: Say"), "reply metadata becomes response headers");
    let (messages, trailers) = parse_grpc_web(body_of(&out));
    assert_eq!(EchoReply::decode(&messages[0][..]).unwrap().text, "hi");
    assert!(trailers.contains("grpc-status:0\r\n"), "{trailers}");

    // Text, server streaming, the request in two chunks and two padded
    // base64 pieces, after a 100 Continue.
    let b64 = base64::engine::general_purpose::STANDARD;
    let frame = grpc_web_frame(&say("a b c"));
    let (p1, p2) = (b64.encode(&frame[..3]), b64.encode(&frame[3..]));
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.write_all(b"POST /example.echo.Echo/Split HTTP/1.1\r\nHost: t\r\ncontent-type: application/grpc-web-text\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(format!("{:x}\r\n{p1}\r\n{:x}\r\n{p2}\r\n0\r\n\r\n", p1.len(), p2.len()).as_bytes()).unwrap();
    let (out, closed) = read_all(&mut s, Duration::from_secs(5));
    assert!(closed);
    assert!(text(&out).contains("content-type: application/grpc-web-text+proto"), "{}", text(&out));
    let body = if text(&out).contains("transfer-encoding: chunked") { dechunk(body_of(&out)) } else { body_of(&out).to_vec() };
    let decoded = massa_decode_text(&body);
    let (messages, trailers) = parse_grpc_web(&decoded);
    let words: Vec<String> = messages.iter().map(|m| EchoReply::decode(&m[..]).unwrap().text).collect();
    assert_eq!(words, ["a", "b", "c"]);
    assert!(trailers.contains("grpc-status:0"));

    // A failure and an unknown method end with their status in the trailer frame.
    let failing = EchoRequest { fail: "boom".into(), ..Default::default() };
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Say", "application/grpc-web", "", &grpc_web_frame(&failing)), Duration::from_secs(5));
    let (messages, trailers) = parse_grpc_web(body_of(&out));
    assert!(messages.is_empty() && trailers.contains("grpc-status:2\r\n") && trailers.contains("grpc-message:boom"), "{trailers}");
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Nope", "application/grpc-web", "", &grpc_web_frame(&say(""))), Duration::from_secs(5));
    assert!(parse_grpc_web(body_of(&out)).1.contains("grpc-status:12\r\n"));
    // Not protobuf, not base64.
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Say", "application/grpc-web+json", "", b"{}"), Duration::from_secs(5));
    assert_eq!(statuses(&out), [415]);
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Say", "application/grpc-web-text", "", b"**notbase64**"), Duration::from_secs(5));
    assert_eq!(statuses(&out), [400]);

    let metrics = http_get(m.admin, "/metrics").unwrap().1;
    assert!(metrics.contains("massa_requests_total{method=\"/example.echo.Echo/Say\",code=\"OK\",protocol=\"grpc-web\"} 1"), "{metrics}");
    assert!(metrics.contains("massa_requests_total{method=\"/example.echo.Echo/Split\",code=\"OK\",protocol=\"grpc-web\"} 1"), "{metrics}");
}

/// The body of a chunked response.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(&text(&body[..line]), 16).unwrap();
        body = &body[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Decodes a text body that may be several padded base64 pieces.
fn massa_decode_text(body: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut out, mut rest) = (Vec::new(), body);
    while !rest.is_empty() {
        let end = match rest.iter().position(|&b| b == b'=') {
            Some(i) => i + rest[i..].iter().take_while(|&&b| b == b'=').count(),
            None => rest.len(),
        };
        out.extend(b64.decode(&rest[..end]).unwrap());
        rest = &rest[end..];
    }
    out
}

#[test]
fn grpc_web_over_http2_with_curl() {
    let (_f, m) = setup(&[]);
    let dir = TempDir::new("grpcweb-curl");
    let file = format!("{}/req.bin", dir.path());
    std::fs::write(&file, grpc_web_frame(&say("over h2"))).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "--max-time", "10", "-H", "content-type: application/grpc-web+proto", "--data-binary"])
        .arg(format!("@{file}"))
        .arg(format!("http://127.0.0.1:{}/example.echo.Echo/Say", m.port))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (messages, trailers) = parse_grpc_web(&out.stdout);
    assert_eq!(EchoReply::decode(&messages[0][..]).unwrap().text, "over h2");
    assert!(trailers.contains("grpc-status:0"));
}

#[test]
fn cors_preflight_and_origins() {
    let (_f, m) = setup(&["--cors-allowed-origins", "http://app.test,http://other.test"]);
    let preflight = |origin: &str| {
        exchange(
            m.port,
            format!("OPTIONS /example.echo.Echo/Say HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type,x-grpc-web,x-custom\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        )
        .0
    };
    let ok = text(&preflight("http://app.test"));
    assert!(ok.starts_with("HTTP/1.1 204"), "{ok}");
    assert!(ok.contains("access-control-allow-origin: http://app.test\r\n"));
    assert!(ok.contains("access-control-allow-headers: content-type,x-grpc-web,x-custom\r\n"));
    assert!(!ok.to_ascii_lowercase().contains("content-length"), "204 carries no length: {ok}");
    assert!(text(&preflight("http://evil.test")).starts_with("HTTP/1.1 403"));
    // The call itself: allowed origins see the status fields, others are refused.
    let call = |origin: &str| {
        exchange(m.port, &post("/example.echo.Echo/Say", "application/grpc-web", &format!("Origin: {origin}\r\n"), &grpc_web_frame(&say("x"))), Duration::from_secs(5)).0
    };
    let ok = text(&call("http://other.test"));
    assert!(ok.contains("access-control-allow-origin: http://other.test\r\n") && ok.contains("access-control-expose-headers: grpc-status, grpc-message\r\n"), "{ok}");
    assert!(text(&call("http://evil.test")).starts_with("HTTP/1.1 403"));

    // Default: no origin allowed.
    let (_f2, m2) = setup(&[]);
    let (out, _) = exchange(m2.port, b"OPTIONS /x HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n", Duration::from_secs(5));
    assert_eq!(statuses(&out), [403]);
}

#[test]
fn smuggling_attempts_are_refused_and_never_executed() {
    let (_f, m) = setup(&[]);
    // What a smuggler hopes a second parser takes for a request of its own.
    let hidden = post("/example.echo.Echo/Record", "application/grpc-web", "", &grpc_web_frame(&say("smuggled")));
    let chunked_hidden = {
        let mut b = b"0\r\n\r\n".to_vec();
        b.extend_from_slice(&hidden);
        b
    };
    let attempts: Vec<(Vec<u8>, u16)> = vec![
        ([format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n", chunked_hidden.len()).as_bytes(), &chunked_hidden].concat(), 400),
        ([format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n", chunked_hidden.len()).as_bytes(), &chunked_hidden].concat(), 400),
        ([b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n".as_slice(), &hidden].concat(), 400),
        ([b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0, 5\r\n\r\n".as_slice(), &hidden].concat(), 400),
        ([b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n".as_slice(), &hidden].concat(), 501),
        ([b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n".as_slice(), &chunked_hidden].concat(), 400),
        ([b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n".as_slice(), &chunked_hidden].concat(), 400),
    ];
    for (i, (attempt, status)) in attempts.iter().enumerate() {
        let (out, closed) = exchange(m.port, attempt, Duration::from_secs(2));
        let got = statuses(&out);
        assert_eq!(got.first(), Some(status), "attempt {i}: {}", text(&out));
        assert!(closed && got.len() == 1, "attempt {i}: refused once, then closed: {}", text(&out));
    }
    // The same request sent openly does run, so the check above can fail.
    let (out, _) = exchange(m.port, &post("/example.echo.Echo/Record", "application/grpc-web", "", &grpc_web_frame(&say("open"))), Duration::from_secs(5));
    assert!(parse_grpc_web(body_of(&out)).1.contains("grpc-status:0"), "{}", text(&out));
    let kept = recorded(m.port);
    assert!(kept.contains("open") && !kept.contains("smuggled"), "no hidden request ran: {kept}");
}

#[test]
fn oversized_bodies_get_413_before_they_are_read() {
    let (_f, m) = setup(&["--max-http-body", "64KiB"]);
    // Announced too large: refused at once, without reading (or waiting for) the body.
    let (out, closed) = exchange(m.port, b"POST /example.echo.Echo/Say HTTP/1.1\r\nHost: t\r\ncontent-type: application/grpc-web\r\nContent-Length: 1073741824\r\n\r\n", Duration::from_secs(5));
    assert_eq!((statuses(&out), closed), (vec![413], true));
    // Chunked, growing past the limit: refused once it passes it.
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.write_all(b"POST /example.echo.Echo/Say HTTP/1.1\r\nHost: t\r\ncontent-type: application/grpc-web\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "a".repeat(16 * 1024));
    let mut sent = 0;
    while sent < 8 && s.write_all(chunk.as_bytes()).is_ok() {
        sent += 1;
    }
    let (out, closed) = read_all(&mut s, Duration::from_secs(5));
    assert_eq!((statuses(&out), closed), (vec![413], true), "{}", text(&out));
    // Oversized heads: 431.
    let (out, closed) = exchange(m.port, format!("GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024)).as_bytes(), Duration::from_secs(5));
    assert_eq!((statuses(&out), closed), (vec![431], true));
    // The port still serves.
    assert_eq!(statuses(&exchange(m.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).0), [404]);
}

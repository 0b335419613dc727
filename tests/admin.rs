//! Introspection end to end: reflection (both versions), gRPC health, the
//! admin port, and what the public port does with non-gRPC traffic.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use massa::grpc::{encode_prost, Code};
use massa::proto::grpc::health::v1::{health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse};
use massa::proto::grpc::reflection::v1alpha::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse, ServerReflectionRequest,
    ServerReflectionResponse,
};
use prost::Message;
use support::*;

const CART: &str = "com.example.shoppingcart.ShoppingCart";
const VALUE_CART: &str = "com.example.valueentity.shoppingcart.ShoppingCart";

fn setup() -> (Proc, Massa, Client) {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &[]);
    let c = Client::new(m.port);
    (f, m, c)
}

async fn reflect(c: &Client, version: &str, requests: Vec<MessageRequest>) -> Vec<ServerReflectionResponse> {
    let framed = requests
        .into_iter()
        .map(|r| encode_prost(&ServerReflectionRequest { host: "localhost".into(), message_request: Some(r) }))
        .collect();
    let path = format!("/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo");
    let (_, msgs, status) = c.call(&path, None, framed).await;
    status.unwrap();
    msgs.into_iter().map(|m| ServerReflectionResponse::decode(m).unwrap()).collect()
}

fn names(r: &ServerReflectionResponse) -> Vec<String> {
    match &r.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => l.service.iter().map(|s| s.name.clone()).collect(),
        other => panic!("not a list: {other:?}"),
    }
}

#[test]
fn reflection_v1alpha_matches_the_tck() {
    let (_f, _m, c) = setup();
    run(async {
        let r = reflect(
            &c,
            "v1alpha",
            vec![
                MessageRequest::ListServices(String::new()),
                MessageRequest::ListServices("nonsense.blabla.".into()),
                MessageRequest::FileContainingSymbol("nonsense.blabla.Void".into()),
                MessageRequest::FileContainingSymbol("example.echo.Echo".into()),
            ],
        )
        .await;
        assert_eq!(r.len(), 4);
        for list in &r[..2] {
            assert_eq!(names(list), ["grpc.reflection.v1alpha.ServerReflection", CART, VALUE_CART, "example.echo.Echo"]);
            assert_eq!(list.valid_host, "localhost");
            assert!(list.original_request.is_some());
        }
        match &r[2].message_response {
            Some(MessageResponse::FileDescriptorResponse(f)) => assert!(f.file_descriptor_proto.is_empty()),
            other => panic!("unknown symbol must be an empty response, got {other:?}"),
        }
        match &r[3].message_response {
            Some(MessageResponse::FileDescriptorResponse(f)) => assert!(!f.file_descriptor_proto.is_empty()),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn reflection_v1_lists_and_describes_own_services() {
    let (_f, _m, c) = setup();
    run(async {
        let r = reflect(
            &c,
            "v1",
            vec![
                MessageRequest::ListServices(String::new()),
                MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
                MessageRequest::FileContainingSymbol("nonsense.Void".into()),
            ],
        )
        .await;
        assert_eq!(
            names(&r[0]),
            ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", CART, VALUE_CART, "example.echo.Echo"]
        );
        assert!(matches!(r[1].message_response, Some(MessageResponse::FileDescriptorResponse(_))));
        match &r[2].message_response {
            Some(MessageResponse::ErrorResponse(e)) => assert_eq!(e.error_code, Code::NotFound as i32),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn health_check_and_admin_endpoints() {
    let (_f, m, c) = setup();
    run(async {
        for service in ["", "example.echo.Echo"] {
            let req = HealthCheckRequest { service: service.into() };
            let (_, msgs, status) = c.call("/grpc.health.v1.Health/Check", None, vec![encode_prost(&req)]).await;
            status.unwrap();
            assert_eq!(HealthCheckResponse::decode(msgs[0].clone()).unwrap().status(), ServingStatus::Serving);
        }
        let req = HealthCheckRequest { service: "no.Such".into() };
        let (_, _, status) = c.call("/grpc.health.v1.Health/Check", None, vec![encode_prost(&req)]).await;
        assert_eq!(status.unwrap_err().code, Code::NotFound);
        c.say("count me").await.unwrap();
    });
    assert_eq!(http_get(m.admin, "/health/live").unwrap().0, 200);
    assert_eq!(http_get(m.admin, "/health/ready").unwrap().0, 200);
    assert_eq!(http_get(m.admin, "/nope").unwrap().0, 404);
    let (status, metrics) = http_get(m.admin, "/metrics").unwrap();
    assert_eq!(status, 200);
    for needle in [
        "massa_ready 1",
        "massa_requests_total{method=\"/example.echo.Echo/Say\",code=\"OK\",protocol=\"grpc\"} 1",
        "massa_request_duration_seconds_count{method=\"/example.echo.Echo/Say\"} 1",
        "massa_requests_total{method=\"other\",code=\"NOT_FOUND\",protocol=\"grpc\"} 1",
        "massa_requests_in_flight{method=\"/example.echo.Echo/Say\"} 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

#[test]
fn http1_and_garbage_on_the_grpc_port_are_handled() {
    let (_f, mut m, c) = setup();
    let (status, body) = http_get(m.port, "/").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("gRPC"), "{body}");
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nK-Network-Probe: queue\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("queue"), "{out}");
    for garbage in [&b"\x16\x03\x01\x00\xff\x01\x00"[..], b"hello there\r\n", &[0u8; 64]] {
        let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(garbage).unwrap();
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "garbage gets a clean close");
    }
    // A valid preface followed by garbage frames: the connection errors, the proxy does not.
    let mut s = TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff").unwrap();
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut buf);
    run(async { assert_eq!(c.say("still serving").await.unwrap(), "still serving") });
    assert!(m.proc.child.try_wait_alive());
}

trait Alive {
    fn try_wait_alive(&mut self) -> bool;
}

impl Alive for std::process::Child {
    fn try_wait_alive(&mut self) -> bool {
        self.try_wait().unwrap().is_none()
    }
}

/// grpcurl: a client that is not ours lists, describes and calls through
/// reflection. `tests/run` installs it and sets `MASSA_GRPCURL`.
#[test]
fn grpcurl_lists_describes_and_calls_through_reflection() {
    let how = "run tests/run, which installs grpcurl and sets it (or point it at a grpcurl binary)";
    let grpcurl = require_env("MASSA_GRPCURL", how);
    if let Err(e) = std::process::Command::new(&grpcurl).arg("-version").output() {
        panic!("MASSA_GRPCURL={grpcurl} does not run ({e}): {how}");
    }
    let (_f, m, _c) = setup();
    let addr = format!("127.0.0.1:{}", m.port);
    let grpcurl = |args: &[&str]| {
        let out = std::process::Command::new(&grpcurl).arg("-plaintext").args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "grpcurl {args:?} failed:\n{text}");
        text
    };
    let list = grpcurl(&[&addr, "list"]);
    assert!(list.lines().any(|l| l == "example.echo.Echo"), "{list}");
    let described = grpcurl(&[&addr, "describe", "example.echo.Echo"]);
    assert!(described.contains("rpc Split ( .example.echo.EchoRequest ) returns ( stream .example.echo.EchoReply )"), "{described}");
    let reply = grpcurl(&["-d", r#"{"text":"from grpcurl"}"#, &addr, "example.echo.Echo/Say"]);
    assert!(reply.contains(r#""text": "from grpcurl""#), "{reply}");
    // v1alpha lists exactly what the TCK expects (no health), so grpcurl
    // reads the health service from our .proto instead.
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let health = grpcurl(&["-import-path", proto, "-proto", "grpc/health/v1/health.proto", &addr, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
}

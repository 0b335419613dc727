//! Actions end to end: the real `massa` binary in front of the real example
//! user function, called over loopback with a gRPC client.

mod support;

use std::time::Duration;

use bytes::Bytes;
use massa::grpc::{encode_prost, Code};
use massa::proto::example::echo::EchoRequest;
use support::*;

fn setup(extra: &[&str]) -> (Proc, Massa, Client) {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, extra);
    let c = Client::new(m.port);
    (f, m, c)
}

#[test]
fn unary_passes_payload_and_metadata_both_ways() {
    let (_f, m, c) = setup(&[]);
    run(async {
        let framed = vec![encode_prost(&text_req("hello"))];
        let (headers, msgs, status) =
            c.call("/example.echo.Echo/Say", Some(&header("x-echo-request", "abc")), framed).await;
        status.unwrap();
        let headers = headers.unwrap();
        assert_eq!(headers.get_str(b"x-echo-method"), Some("Say"), "reply metadata becomes response headers");
        assert_eq!(headers.get_str(b"x-echo-request-seen"), Some("abc"), "request headers reach ActionCommand.metadata");
        assert_eq!(msgs.len(), 1);
        assert_eq!(c.say("second call, same connection").await.unwrap(), "second call, same connection");
    });
    drop(m);
}

#[test]
fn every_streaming_shape() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        assert_eq!(c.echo("Split", &[text_req("a b c")]).await.unwrap(), ["a", "b", "c"]);
        let many: Vec<_> = ["x", "y", "z"].iter().map(|t| text_req(t)).collect();
        assert_eq!(c.echo("Collect", &many).await.unwrap(), ["x y z"]);
        assert_eq!(c.echo("Chat", &many).await.unwrap(), ["x", "y", "z"]);
        assert_eq!(c.echo("Collect", &[]).await.unwrap(), [""], "client-streaming with no messages");
    });
}

#[test]
fn forwards_become_the_reply() {
    let (f, _m, c) = setup(&[]);
    run(async {
        let req = EchoRequest { text: "quiet".into(), forward_to: "Upper".into(), ..Default::default() };
        assert_eq!(c.echo("Say", &[req.clone()]).await.unwrap(), ["QUIET"]);
        // A forward inside a bidi stream is executed as a unary call.
        assert_eq!(c.echo("Chat", &[req, text_req("b")]).await.unwrap(), ["QUIET", "b"]);
        let bad = EchoRequest { text: "x".into(), forward_to: "NoSuchMethod".into(), ..Default::default() };
        let err = c.echo("Say", &[bad]).await.unwrap_err();
        assert_eq!(err.code, Code::NotFound);
        assert!(err.message.contains("does not have a command named: [NoSuchMethod]"), "{err}");
    });
    // The function hears about it, as from the reference proxy.
    f.must_log("reportError: Service [example.echo.Echo] does not have a command named: [NoSuchMethod]");
}

#[test]
fn synchronous_side_effects_run_before_the_reply() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let req = EchoRequest {
            text: "main".into(),
            side_effects: vec!["s1".into(), "s2".into()],
            synchronous: true,
            ..Default::default()
        };
        assert_eq!(c.say_req(req).await, "main");
        assert_eq!(c.echo("Recorded", &[text_req("")]).await.unwrap(), ["s1,s2"]);
    });
}

#[test]
fn asynchronous_side_effects_happen_after_all() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let req = EchoRequest { text: "main".into(), side_effects: vec!["later".into()], ..Default::default() };
        assert_eq!(c.say_req(req).await, "main");
        eventually("the async side effect", || async {
            let r = c.echo("Recorded", &[text_req("")]).await.unwrap();
            (r == ["later"]).then_some(())
        })
        .await;
    });
}

#[test]
fn failures_become_unknown_with_the_description() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let fail = EchoRequest { text: "t".into(), fail: "expected failure".into(), ..Default::default() };
        let err = c.echo("Say", &[fail.clone()]).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "expected failure"));
        // Streamed: the messages before the failure arrive, then the error.
        let split = EchoRequest { text: "one two".into(), fail: "boom ✓".into(), ..Default::default() };
        let framed = vec![encode_prost(&split)];
        let (_, msgs, status) = c.call("/example.echo.Echo/Split", None, framed).await;
        assert_eq!(msgs.len(), 2);
        let err = status.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "boom ✓"), "non-ASCII survives percent-encoding");
        // Failure inside a client stream ends the call.
        let err = c.echo("Collect", &[text_req("a"), fail]).await.unwrap_err();
        assert_eq!(err.code, Code::Unknown);
    });
}

#[test]
fn client_cancellation_reaches_the_function() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let slow = EchoRequest { text: "c1".into(), delay_ms: 30_000, ..Default::default() };
        let pool = c.pool();
        let (mut send, response) = pool.open(&pool.endpoint("/example.echo.Echo/Say"), None).await.unwrap();
        send.send_data(encode_prost(&slow), true).unwrap();
        monoio::time::sleep(Duration::from_millis(200)).await;
        send.send_reset(massa::http2::Reason::CANCEL);
        drop(response);
        eventually("the function to see the cancellation", || async {
            let r = c.echo("Recorded", &[text_req("")]).await.unwrap();
            (r == ["cancelled:c1"]).then_some(())
        })
        .await;
    });
}

#[test]
fn function_cancellation_reaches_the_client() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let err = c.say("cancel!").await.unwrap_err();
        assert_eq!(err.code, Code::Cancelled, "{err}");
        assert_eq!(c.say("still fine").await.unwrap(), "still fine");
    });
}

#[test]
fn deadline_is_honoured() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let slow = EchoRequest { text: "slow".into(), delay_ms: 30_000, ..Default::default() };
        let (_, _, status) =
            c.call("/example.echo.Echo/Say", Some(&header("grpc-timeout", "200m")), vec![encode_prost(&slow)]).await;
        assert_eq!(status.unwrap_err().code, Code::DeadlineExceeded);
    });
}

#[test]
fn unknown_services_and_methods_are_unimplemented() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let (_, _, s) = c.call("/no.Such/Thing", None, vec![encode_prost(&text_req("x"))]).await;
        let s = s.unwrap_err();
        assert_eq!(s.code, Code::Unimplemented);
        assert!(s.message.contains("no.Such"), "{s}");
        let (_, _, s) = c.call("/example.echo.Echo/Nope", None, vec![encode_prost(&text_req("x"))]).await;
        assert_eq!(s.unwrap_err().code, Code::Unimplemented);
    });
}

#[test]
fn malformed_frames_fail_the_call_not_the_connection() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        // Header announces 100 bytes, body ends after 3.
        let truncated = Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]);
        let (_, _, s) = c.call("/example.echo.Echo/Say", None, vec![truncated]).await;
        assert_eq!(s.unwrap_err().code, Code::Internal);
        let compressed = Bytes::from_static(&[1, 0, 0, 0, 1, 0]);
        let (_, _, s) = c.call("/example.echo.Echo/Say", None, vec![compressed]).await;
        assert_eq!(s.unwrap_err().code, Code::Unimplemented);
        let (_, _, s) = c.call("/example.echo.Echo/Say", None, vec![]).await;
        assert_eq!(s.unwrap_err().code, Code::InvalidArgument, "no request message");
        assert_eq!(c.say("after").await.unwrap(), "after", "same h2 connection still serves");
    });
}

#[test]
fn oversized_messages_are_resource_exhausted() {
    let (_f, _m, c) = setup(&["--max-message-size", "1KiB"]);
    run(async {
        let big = EchoRequest { text: "x".repeat(2048), ..Default::default() };
        let err = c.echo("Say", &[big]).await.unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted, "{err}");
        assert_eq!(c.say("small").await.unwrap(), "small");
    });
}

#[test]
fn large_messages_pass_whole() {
    let (_f, _m, c) = setup(&[]);
    run(async {
        let text = "m".repeat(3 << 20);
        assert_eq!(c.say(&text).await.unwrap().len(), text.len());
    });
}

#[test]
fn legacy_stateless_function_sdks_are_served() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--legacy", "--protocol", "0.0"]);
    let m = start_massa(fn_port, &[]);
    m.proc.must_log("compatibility mode");
    f.must_log("discover: proxy massa");
    run(async { assert_eq!(Client::new(m.port).say("old sdk").await.unwrap(), "old sdk") });
}

#[test]
fn strict_protocol_rejects_old_sdks_with_report_error() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--protocol", "0.0"]);
    let mut m = spawn_massa(fn_port, &["--strict-protocol"]);
    assert_ne!(m.proc.must_exit(), 0);
    f.must_log("reportError: Incompatible protocol version 0.0");
    assert!(m.proc.log().contains("Incompatible protocol version"), "{}", m.proc.log());
}

#[test]
fn invalid_spec_is_reported_and_massa_exits() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--invalid-spec"]);
    let mut m = spawn_massa(fn_port, &[]);
    assert_ne!(m.proc.must_exit(), 0);
    f.must_log("reportError: Service [example.echo.Missing] not found in descriptors!");
}

#[test]
fn discovery_waits_for_the_function_and_user_function_crash_is_unavailable() {
    let fn_port = free_port();
    let m = spawn_massa(fn_port, &[]);
    m.proc.must_log("discovery failed");
    assert_eq!(http_get(m.admin, "/health/ready").map(|r| r.0), Some(503), "not ready before discovery");
    assert_eq!(http_get(m.admin, "/health/live").map(|r| r.0), Some(200));
    let f = start_example_fn(fn_port, &[]);
    m.must_be_ready();
    let c = Client::new(m.port);
    run(async {
        assert_eq!(c.say("up").await.unwrap(), "up");
        let err = c.say("crash!").await.unwrap_err();
        assert_eq!(err.code, Code::Unavailable, "{err}");
        drop(f);
        let err = c.say("nobody home").await.unwrap_err();
        assert_eq!(err.code, Code::Unavailable);
        assert!(err.message.contains("user function"), "{err}");
        let _f = start_example_fn(fn_port, &[]);
        eventually("recovery after the function restarts", || async { c.say("back").await.ok() }).await;
    });
}

#[test]
fn user_function_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("massa-uds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("fn.sock");
    let sock = sock.to_str().unwrap();
    let _f = start_example_fn(free_port(), &["--uds", sock]);
    let m = start_massa(1, &["--user-function-uds", sock]);
    run(async { assert_eq!(Client::new(m.port).say("via uds").await.unwrap(), "via uds") });
}

#[test]
fn sigterm_drains_in_flight_calls_and_exits_zero() {
    let (_f, mut m, c) = setup(&["--shutdown-timeout", "10s"]);
    let result = run(async {
        let slow = EchoRequest { text: "finishing".into(), delay_ms: 700, ..Default::default() };
        let requests = [slow];
        let call = c.echo("Say", &requests);
        let pid = m.proc.child.id() as i32;
        let signal = async move {
            monoio::time::sleep(Duration::from_millis(200)).await;
            unsafe { libc::kill(pid, libc::SIGTERM) };
        };
        let (r, ()) = futures_join(call, signal).await;
        r
    });
    assert_eq!(result.unwrap(), ["finishing"]);
    assert_eq!(m.proc.must_exit(), 0);
}

/// Polls two futures to completion on this thread.
async fn futures_join<A: std::future::Future, B: std::future::Future<Output = ()> + 'static>(a: A, b: B) -> (A::Output, B::Output) {
    let b = monoio::spawn(async move { b.await });
    let a = a.await;
    (a, b.await)
}

trait SayReq {
    async fn say_req(&self, req: EchoRequest) -> String;
}

impl SayReq for Client {
    async fn say_req(&self, req: EchoRequest) -> String {
        self.echo("Say", &[req]).await.unwrap().remove(0)
    }
}

//! HTTP/JSON transcoding end to end: the README's cart and the Echo action
//! behind the real binary, called with curl (HTTP/1.1 and HTTP/2), server
//! streams read as SSE and as newline-delimited JSON, and the bad inputs,
//! none of which may change an entity.

mod support;

use std::process::Command;

use massa::grpc::encode_prost;
use massa::proto::com::example::shoppingcart::{Cart, GetShoppingCart};
use prost::Message;
use support::*;

fn setup(extra: &[&str]) -> (Proc, Massa) {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, extra);
    (f, m)
}

/// Runs curl; `(status, body)`.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
    (status.parse().unwrap_or(0), body.to_owned())
}

fn url(m: &Massa, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", m.port)
}

fn post_json(m: &Massa, path: &str, body: &str) -> (u16, String) {
    curl(&["-H", "content-type: application/json", "-d", body, &url(m, path)])
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_readme_cart_over_http_json_reaches_the_same_entity_as_grpc() {
    let (_f, m) = setup(&[]);
    let (status, body) = post_json(&m, "/cart/alice/items/add", r#"{"productId":"apple","name":"Apple","quantity":2}"#);
    assert_eq!((status, json(&body)), (200, json("{}")), "google.protobuf.Empty prints as {{}}");
    // Proto field names are accepted as well as JSON names.
    let (status, _) = post_json(&m, "/cart/alice/items/add", r#"{"product_id":"pear","name":"Pear","quantity":1}"#);
    assert_eq!(status, 200);
    let (status, body) = curl(&[&url(&m, "/carts/alice")]);
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        json(r#"{"items":[{"productId":"apple","name":"Apple","quantity":2},{"productId":"pear","name":"Pear","quantity":1}]}"#)
    );
    // The additional binding with `response_body`: the list alone, its
    // numbers through google.protobuf.Value as the reference proxy prints them.
    let (status, body) = curl(&[&url(&m, "/carts/alice/items")]);
    assert_eq!(status, 200);
    assert_eq!(json(&body)[0]["quantity"], serde_json::json!(2.0));
    // Over HTTP/2 too.
    let (status, body) = curl(&["--http2-prior-knowledge", &url(&m, "/carts/alice")]);
    assert_eq!((status, json(&body)["items"].as_array().map(Vec::len)), (200, Some(2)));
    // gRPC sees the same entity.
    let cart = run(async {
        let c = Client::new(m.port);
        let framed = vec![encode_prost(&GetShoppingCart { user_id: "alice".into() })];
        let (_, messages, status) = c.call("/com.example.shoppingcart.ShoppingCart/GetCart", None, framed).await;
        status.unwrap();
        Cart::decode(&messages[0][..]).unwrap()
    });
    assert_eq!(cart.items.iter().map(|i| i.product_id.as_str()).collect::<Vec<_>>(), ["apple", "pear"]);
    // A rule with path variables only.
    let (status, _) = curl(&["-X", "POST", &url(&m, "/cart/alice/items/apple/remove")]);
    assert_eq!(status, 200);
    let (_, body) = curl(&[&url(&m, "/carts/alice")]);
    assert_eq!(json(&body)["items"].as_array().map(Vec::len), Some(1));

    let metrics = http_get(m.admin, "/metrics").unwrap().1;
    assert!(metrics.contains("massa_requests_total{method=\"/com.example.shoppingcart.ShoppingCart/GetCart\",code=\"OK\",protocol=\"http-json\"} 4"), "{metrics}");
    assert!(metrics.contains("massa_requests_total{method=\"/com.example.shoppingcart.ShoppingCart/GetCart\",code=\"OK\",protocol=\"grpc\"} 1"), "{metrics}");
}

#[test]
fn default_rules_failures_and_server_streams_as_sse_and_lines() {
    let (_f, m) = setup(&[]);
    // The default rule, `POST /<service>/<Method>` with the whole body.
    let (status, body) = post_json(&m, "/example.echo.Echo/Say", r#"{"text":"hi"}"#);
    assert_eq!((status, json(&body)), (200, json(r#"{"text":"hi"}"#)));
    // Defaults are printed.
    let (_, body) = post_json(&m, "/example.echo.Echo/Say", "{}");
    assert_eq!(json(&body), json(r#"{"text":""}"#));
    // A function's failure: 500 with the description as plain text.
    let (status, body) = post_json(&m, "/example.echo.Echo/Say", r#"{"fail":"boom"}"#);
    assert_eq!((status, body.as_str()), (500, "boom"));
    // Server streaming read by curl as server-sent events...
    let (status, body) = curl(&["-N", "-H", "accept: text/event-stream", "-H", "content-type: application/json", "-d", r#"{"text":"a b c"}"#, &url(&m, "/example.echo.Echo/Split")]);
    assert_eq!(status, 200);
    let events: Vec<serde_json::Value> = body.split("\n\n").filter(|e| !e.is_empty()).map(|e| json(e.strip_prefix("data: ").expect("a data event"))).collect();
    assert_eq!(events, [json(r#"{"text":"a"}"#), json(r#"{"text":"b"}"#), json(r#"{"text":"c"}"#)]);
    // ...and as newline-delimited JSON otherwise.
    let (_, body) = post_json(&m, "/example.echo.Echo/Split", r#"{"text":"x y"}"#);
    assert_eq!(body.lines().map(json).collect::<Vec<_>>(), [json(r#"{"text":"x"}"#), json(r#"{"text":"y"}"#)]);
}

#[test]
fn bad_input_gets_a_clear_400_and_changes_nothing() {
    let (_f, m) = setup(&["--max-http-body", "1KiB"]);
    let (status, _) = post_json(&m, "/cart/bob/items/add", r#"{"productId":"kept","name":"Kept","quantity":1}"#);
    assert_eq!(status, 200);
    let add = "/cart/bob/items/add";
    for (body, content_type, expect) in [
        (r#"{"productId":"x","#, "application/json", "malformed"),
        (r#"{"productId":"x","colour":"red"}"#, "application/json", "colour"),
        (r#"{"productId":"x","quantity":"many"}"#, "application/json", "quantity"),
        (r#"{"productId":"x","quantity":1}"#, "text/plain", "content-type"),
    ] {
        let (status, text) = curl(&["-H", &format!("content-type: {content_type}"), "-d", body, &url(&m, add)]);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.to_lowercase().contains(expect), "{body}: the reason names {expect:?}: {text}");
    }
    // No content type at all.
    let (status, text) = curl(&["-H", "content-type:", "-d", r#"{"productId":"x"}"#, &url(&m, add)]);
    assert_eq!(status, 400, "{text}");
    // A body on GET.
    let (status, text) = curl(&["-X", "GET", "-H", "content-type: application/json", "-d", "{}", &url(&m, "/carts/bob")]);
    assert_eq!(status, 400, "{text}");
    // Too large: 413.
    let big = format!(r#"{{"productId":"{}"}}"#, "x".repeat(4096));
    let (status, _) = post_json(&m, add, &big);
    assert_eq!(status, 413);
    // Unknown routes and methods.
    assert_eq!(curl(&[&url(&m, "/carts")]).0, 404);
    assert_eq!(curl(&["-X", "DELETE", &url(&m, "/carts/bob")]).0, 405);
    // Nothing of it reached the entity.
    let (_, body) = curl(&[&url(&m, "/carts/bob")]);
    assert_eq!(json(&body), json(r#"{"items":[{"productId":"kept","name":"Kept","quantity":1}]}"#));
}

//! gRPC-Web end to end with clients that are not Massa's: the npm `grpc-web`
//! client in a page that headless Debian Chromium loads from another origin
//! (so its CORS preflights are real), and the same client in Node. Both call
//! the example function's Echo through the real `massa`: unary `Say` and
//! server-streaming `Split`, each also failing, in the grpc-web-text and
//! binary formats (tests/web/echo.js). `tests/run` installs the npm packages
//! (tests/web/setup.sh) and sets `MASSA_GRPC_WEB`; without it the tests
//! fail, saying so.

mod support;

use std::process::Command;
use std::time::Duration;

use massa::grpc::Code;
use serde_json::{json, Value};
use support::*;

/// A browser run bundles the page, starts Chromium and makes 16 calls;
/// generous, never a threshold (browser.js bounds itself at 90 s).
const NODE_BOUND: Duration = Duration::from_secs(120);

/// Runs `tests/web/<script> <outcome file> <args>` with the npm packages on
/// NODE_PATH and returns the JSON outcome it wrote.
fn node(script: &str, args: &[&str]) -> Value {
    let packages = require_env(
        "MASSA_GRPC_WEB",
        "run tests/run, which installs the npm grpc-web client, esbuild and playwright-core (tests/web/setup.sh) and sets it",
    );
    let dir = TempDir::new("grpc-web");
    let outcome = format!("{}/outcome.json", dir.path());
    let mut cmd = Command::new("node");
    cmd.arg(format!("{}/tests/web/{script}", env!("CARGO_MANIFEST_DIR")))
        .arg(&outcome)
        .args(args)
        .env("NODE_PATH", format!("{packages}/node_modules"));
    let mut p = Proc::spawn_command(cmd);
    assert_eq!(p.must_exit_within(NODE_BOUND), 0, "{script} failed; its log:\n{}", p.log());
    serde_json::from_str(&std::fs::read_to_string(&outcome).unwrap()).unwrap()
}

/// Runs the page in Chromium from each of `page_ports` (distinct origins);
/// returns per port the page's outcome and the browser console.
fn browser(massa: &Massa, page_ports: &[u16]) -> Value {
    let url = massa_url(massa);
    let ports: Vec<String> = page_ports.iter().map(u16::to_string).collect();
    let args: Vec<&str> = std::iter::once(url.as_str()).chain(ports.iter().map(String::as_str)).collect();
    node("browser.js", &args)
}

fn massa_url(massa: &Massa) -> String {
    format!("http://127.0.0.1:{}", massa.port)
}

fn origin(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// What tests/web/echo.js sees when every call goes through: the example
/// function's failures reach the client as UNKNOWN with their description
/// (percent-encoded on the wire, non-ASCII included).
fn answered() -> Value {
    let unknown = Code::Unknown as u8;
    let calls = json!({
        "say": {"reply": "héllo web ✓"},
        "sayFail": {"error": {"code": unknown, "message": "no ✓"}},
        "split": {"replies": ["one", "two", "three"]},
        "splitFail": {"replies": ["a", "b"], "error": {"code": unknown, "message": "boom ✓"}},
    });
    json!({"text": calls, "binary": calls})
}

/// Every call failed without a reply, and Chromium blamed CORS.
#[track_caller]
fn assert_refused_by_cors(seen: &Value) {
    let outcome = &seen["result"];
    for format in ["text", "binary"] {
        for (call, result) in outcome[format].as_object().unwrap_or_else(|| panic!("no {format} calls in {seen}")) {
            let replied = result.get("reply").is_some() || result["replies"].as_array().is_some_and(|r| !r.is_empty());
            assert!(result.get("error").is_some() && !replied, "{format} {call} was not refused: {result}");
        }
    }
    let console = seen["console"].as_array().unwrap();
    assert!(
        console.iter().any(|line| line.as_str().unwrap().contains("blocked by CORS policy")),
        "Chromium did not report a CORS refusal: {console:?}"
    );
}

#[test]
fn browser_page_calls_echo_from_an_allowed_origin_and_is_refused_from_another() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let (allowed, other) = (free_port(), free_port());
    let m = start_massa(fn_port, &["--cors-allowed-origins", &origin(allowed)]);
    let seen = browser(&m, &[allowed, other]);
    let from_allowed = &seen[allowed.to_string()];
    assert_eq!(from_allowed["result"], answered(), "from the allowed origin; console: {}", from_allowed["console"]);
    assert_refused_by_cors(&seen[other.to_string()]);
}

#[test]
fn browser_page_is_refused_when_no_origin_is_allowed() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &[]);
    let page = free_port();
    let seen = browser(&m, &[page]);
    assert_refused_by_cors(&seen[page.to_string()]);
}

#[test]
fn node_grpc_web_client_calls_echo_in_both_formats() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &[]);
    assert_eq!(node("node_client.js", &[&massa_url(&m)]), answered());
}

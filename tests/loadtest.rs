//! `massa-load` end to end: a short bounded run through the real proxy in
//! front of the real example function, and its bad-input behaviour.

mod support;

use std::process::Command;

use support::*;

fn load(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_massa-load"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("running massa-load")
}

#[test]
fn a_bounded_run_through_massa_reports_in_ghz_json() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    let addr = format!("127.0.0.1:{}", m.port);
    let echo = ["--proto", "example/echo/echo.proto", "--import-path", "proto"];
    let out = load(&[&addr, "--call", "example.echo.Echo/Say", "-d", r#"{"text":"hi {{i}}"}"#, "-n", "200", "-c", "2", "--format", "json"]
        .iter()
        .chain(&echo)
        .copied()
        .collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["count"], 200);
    assert_eq!(report["statusCodeDistribution"]["OK"], 200);
    assert_eq!(report["endReason"], "normal");

    // Server streaming (address by --host) and entities with spread keys,
    // human summary.
    let out = load(&["--host", &addr, "--call", "example.echo.Echo/Split", "-d", r#"{"text":"a b c"}"#, "-n", "20"]
        .iter()
        .chain(&echo)
        .copied()
        .collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[OK]\t20 responses"), "{}", String::from_utf8_lossy(&out.stdout));
    let cart = r#"{"user_id":"cart-{{i}}","product_id":"p","name":"P","quantity":1}"#;
    let out = load(&[
        &addr, "--call", "com.example.shoppingcart.ShoppingCart/AddItem", "--proto", "example/shoppingcart/shoppingcart.proto",
        "--import-path", "proto", "-d", cart, "--keys", "10", "-n", "100", "--rps", "2000",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("[OK]\t100 responses"), "{}", String::from_utf8_lossy(&out.stdout));
    let (_, metrics) = http_get(m.admin, "/metrics").unwrap();
    assert!(metrics.contains("massa_entity_activations_total 10"), "ten carts:\n{metrics}");
}

#[test]
fn a_duration_bound_open_loop_run_ends_on_its_own() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    let addr = format!("127.0.0.1:{}", m.port);
    let out = load(&[
        &addr, "--call", "example.echo.Echo/Say", "--proto", "example/echo/echo.proto", "--import-path", "proto",
        "-d", r#"{"text":"{{.RequestNumber}}"}"#, "--rps", "200", "-z", "1s", "--threads", "2", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["endReason"], "timeout");
    assert!(report["count"].as_u64().unwrap() > 0);
    assert_eq!(report["statusCodeDistribution"]["OK"], report["count"]);
    assert_eq!(report["options"]["rps"], 200.0);
}

#[test]
fn bad_input_is_one_clear_line_and_a_failure_exit() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory"]);
    let addr = format!("127.0.0.1:{}", m.port);
    let echo = ["--proto", "example/echo/echo.proto", "--import-path", "proto"];
    let fails = |args: Vec<&str>, expect: &str| {
        let out = load(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(expect), "{err}");
    };
    fails([&addr, "--call", "example.echo.Echo/Nope"].iter().chain(&echo).copied().collect(), "unknown method Nope");
    fails([&addr, "--call", "example.echo.Echo/Say", "-d", "{oops"].iter().chain(&echo).copied().collect(), "request JSON");
    let unused = format!("127.0.0.1:{}", free_port());
    fails([&unused, "--call", "example.echo.Echo/Say"].iter().chain(&echo).copied().collect(), "cannot reach");
}

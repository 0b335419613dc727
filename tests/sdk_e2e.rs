//! End to end with a real Cloudstate SDK from the registries as the user
//! function: the PyPI `cloudstate==0.1.1` shopping cart (protocol 0.0,
//! event sourced) behind the real `massa`, driven through the proxy.
//! `.ci/run` installs it (tests/sdk/python/setup.sh) and sets
//! `MASSA_SDK_PYTHON`; required in CI, skipped with a line elsewhere.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use massa::grpc::{encode_prost, Code, Status};
use massa::proto::com::example::shoppingcart::{AddLineItem, Cart, GetShoppingCart, RemoveLineItem};
use prost::Message;
use support::*;

const CART: &str = "com.example.shoppingcart.ShoppingCart";

fn sdk_dir(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(dir) => Some(dir),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "{var} is required in CI (.ci/run sets it)");
            eprintln!("{var} not set; skipping the real-SDK test");
            None
        }
    }
}

/// The Python SDK's cart on `port`, once it accepts connections.
fn start_python_cart(dir: &str, port: u16) -> Proc {
    let mut cmd = Command::new(format!("{dir}/bin/python"));
    cmd.arg(format!("{dir}/shopping_cart.py"))
        .env("PYTHONPATH", format!("{dir}/gen"))
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string());
    let p = Proc::spawn_command(cmd);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < PATIENCE, "the Python cart never listened; log:\n{}", p.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

async fn unary(c: &Client, method: &str, request: &impl Message) -> Result<Vec<u8>, Status> {
    let (_, msgs, status) = c.call(&format!("/{CART}/{method}"), None, vec![encode_prost(request)]).await;
    status?;
    Ok(msgs.first().map(|m| m.to_vec()).unwrap_or_default())
}

async fn add(c: &Client, user: &str, product: &str, quantity: i32) -> Result<(), Status> {
    let req = AddLineItem { user_id: user.into(), product_id: product.into(), name: product.to_uppercase(), quantity };
    unary(c, "AddItem", &req).await.map(drop)
}

async fn cart(c: &Client, user: &str) -> Vec<String> {
    let bytes = unary(c, "GetCart", &GetShoppingCart { user_id: user.into() }).await.unwrap();
    let cart = Cart::decode(bytes.as_slice()).unwrap();
    cart.items.iter().map(|i| format!("{} x{}", i.product_id, i.quantity)).collect()
}

#[test]
fn pypi_sdk_shopping_cart_through_massa_survives_a_proxy_restart() {
    let Some(dir) = sdk_dir("MASSA_SDK_PYTHON") else { return };
    let fn_port = free_port();
    let f = start_python_cart(&dir, fn_port);
    let data = TempDir::new("pypi");
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    assert!(m.proc.log().contains("protocol 0.0"), "the SDK reports protocol 0.0:\n{}", m.proc.log());
    run(async {
        let c = Client::new(m.port);
        for user in ["ann", "ben", "cat"] {
            add(&c, user, "apple", 2).await.unwrap();
            add(&c, user, "pear", 1).await.unwrap();
        }
        add(&c, "ann", "apple", 3).await.unwrap();
        unary(&c, "RemoveItem", &RemoveLineItem { user_id: "ben".into(), product_id: "pear".into() }).await.unwrap();
        let err = add(&c, "cat", "plum", -1).await.unwrap_err();
        assert_eq!(err.code, Code::Unknown);
        // The SDK reports failure descriptions as a Python list repr.
        assert_eq!(err.message, "['Cannot add negative quantity of to item plum']");
        assert_eq!(cart(&c, "ann").await, ["apple x5", "pear x1"]);
        assert_eq!(cart(&c, "ben").await, ["apple x2"]);
    });
    drop(m);
    // A new proxy on the same journal: every cart is replayed into a fresh
    // SDK stream (events only: this SDK never writes snapshots).
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, "ann").await, ["apple x5", "pear x1"]);
        assert_eq!(cart(&c, "ben").await, ["apple x2"]);
        assert_eq!(cart(&c, "cat").await, ["apple x2", "pear x1"]);
        add(&c, "cat", "apple", 1).await.unwrap();
        assert_eq!(cart(&c, "cat").await, ["apple x3", "pear x1"]);
    });
    drop(f);
}

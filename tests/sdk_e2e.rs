//! End to end with real Cloudstate SDKs from the registries as the user
//! function: the PyPI `cloudstate==0.1.1` and the npm `cloudstate@0.0.3`
//! shopping carts (protocol 0.0, event sourced) behind the real `massa`,
//! driven through the proxy. `tests/run` installs them
//! (tests/sdk/{python,node}/setup.sh) and sets `MASSA_SDK_PYTHON` /
//! `MASSA_SDK_NODE`; without them the tests fail, saying so.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use massa::grpc::{encode_prost, Code, Status};
use massa::proto::com::example::shoppingcart::{AddLineItem, Cart, GetShoppingCart, RemoveLineItem};
use prost::Message;
use support::*;

const CART: &str = "com.example.shoppingcart.ShoppingCart";

#[track_caller]
fn sdk_dir(var: &str) -> String {
    require_env(var, "run tests/run, which installs the SDK and sets it")
}

/// The Python SDK's cart on `port`, once it accepts connections.
fn start_python_cart(dir: &str, port: u16) -> Proc {
    let mut cmd = Command::new(format!("{dir}/bin/python"));
    cmd.arg(format!("{dir}/shopping_cart.py"))
        .env("PYTHONPATH", format!("{dir}/gen"))
        .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string());
    listening(Proc::spawn_command(cmd), port)
}

/// The npm SDK's cart on `port` (it reads user-function.desc from its
/// working directory).
fn start_node_cart(dir: &str, port: u16) -> Proc {
    let mut cmd = Command::new("node");
    cmd.arg("shoppingcart.js").current_dir(dir).env("PORT", port.to_string());
    listening(Proc::spawn_command(cmd), port)
}

fn listening(p: Proc, port: u16) -> Proc {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < PATIENCE, "the SDK function never listened; log:\n{}", p.log());
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
    let dir = sdk_dir("MASSA_SDK_PYTHON");
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

#[test]
fn npm_sdk_shopping_cart_with_snapshots_through_massa_survives_a_proxy_restart() {
    let dir = sdk_dir("MASSA_SDK_NODE");
    let fn_port = free_port();
    let f = start_node_cart(&dir, fn_port);
    let data = TempDir::new("npm");
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        // Six events on one cart: the SDK attaches a snapshot to the fifth.
        for (product, quantity) in [("apple", 1), ("pear", 2), ("apple", 1), ("kiwi", 1), ("pear", 1), ("fig", 3)] {
            add(&c, "dora", product, quantity).await.unwrap();
        }
        add(&c, "eve", "apple", 1).await.unwrap();
        let err = add(&c, "eve", "plum", 0).await.unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (Code::Unknown, "Cannot add negative quantity to item plum"));
        let err = unary(&c, "RemoveItem", &RemoveLineItem { user_id: "eve".into(), product_id: "nope".into() }).await.unwrap_err();
        assert_eq!(err.message, "Item nope not in cart");
        assert_eq!(cart(&c, "dora").await, ["apple x2", "pear x3", "kiwi x1", "fig x3"]);
    });
    drop(m);
    // The SDK's snapshot was stored at the fifth event's sequence number.
    {
        let rocks = massa::store::RocksStore::open(std::path::Path::new(data.path())).unwrap();
        let journal = massa::store::EntityStore::open(Box::new(rocks), None).unwrap().read_journal("shopping-cart", "dora").unwrap();
        assert_eq!(journal.snapshot.as_ref().map(|s| s.0), Some(5), "snapshot at sequence 5");
        assert_eq!(journal.events.iter().map(|e| e.0).collect::<Vec<_>>(), [6], "only event 6 after it");
    }
    // Re-activation sends the stored snapshot (sequence 5) plus event 6.
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, "dora").await, ["apple x2", "pear x3", "kiwi x1", "fig x3"]);
        assert_eq!(cart(&c, "eve").await, ["apple x1"]);
        unary(&c, "RemoveItem", &RemoveLineItem { user_id: "dora".into(), product_id: "kiwi".into() }).await.unwrap();
        assert_eq!(cart(&c, "dora").await, ["apple x2", "pear x3", "fig x3"]);
    });
    drop(f);
}

//! Criterion benches of HTTP/JSON transcoding on the shopping cart's rules:
//! route lookup, request building and reply rendering, alone and together.
//! Run: `cargo bench --bench transcode`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use prost_reflect::DescriptorPool;

use massa::proto::com::example::shoppingcart::{Cart, LineItem};
use massa::proto::EXAMPLE_DESCRIPTORS;
use massa::transcode::{Found, Routes};

fn routes() -> Routes {
    let pool = DescriptorPool::decode(EXAMPLE_DESCRIPTORS).expect("example descriptors decode");
    let methods = pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()).enumerate();
    let (routes, problems) = Routes::compile(methods);
    assert!(problems.is_empty(), "{problems:?}");
    routes
}

fn cart(items: usize) -> Vec<u8> {
    let item = |i| LineItem { product_id: format!("product-{i}"), name: "Deluxe".to_owned(), quantity: 7 };
    Cart { items: (0..items).map(item).collect() }.encode_to_vec()
}

/// `POST /cart/{user_id}/items/add` with a JSON body, and `GET
/// /carts/{user_id}` rendering a cart of 3 items: find, request, response,
/// and the three in a row (what one HTTP call costs in transcoding).
fn cart_calls(c: &mut Criterion) {
    let routes = routes();
    let add_body = br#"{"productId":"A14362347","name":"Deluxe","quantity":7}"#;
    let reply = cart(3);
    let mut g = c.benchmark_group("transcode");
    g.bench_function("find/add_item", |b| b.iter(|| matches!(routes.find("POST", black_box("/cart/user-1/items/add")), Found::Route(..))));
    g.bench_function("find/not_found", |b| b.iter(|| matches!(routes.find("GET", black_box("/nothing/here")), Found::NotFound)));
    let Found::Route(add, bindings) = routes.find("POST", "/cart/user-1/items/add") else { panic!("AddItem is routed") };
    g.bench_function("request/add_item", |b| {
        b.iter(|| add.request(&bindings, None, Some("application/json"), black_box(add_body)).unwrap())
    });
    let Found::Route(get, get_bindings) = routes.find("GET", "/carts/user-1") else { panic!("GetCart is routed") };
    g.bench_function("request/get_cart", |b| b.iter(|| get.request(&get_bindings, None, None, b"").unwrap()));
    g.bench_function("response/get_cart_3_items", |b| b.iter(|| get.response(black_box(&reply)).unwrap()));
    g.bench_function("call/add_item", |b| {
        b.iter(|| {
            let Found::Route(rule, bindings) = routes.find("POST", black_box("/cart/user-1/items/add")) else { unreachable!() };
            let request = rule.request(&bindings, None, Some("application/json"), add_body).unwrap();
            (request, rule.response(b"").unwrap())
        })
    });
    g.bench_function("call/get_cart_3_items", |b| {
        b.iter(|| {
            let Found::Route(rule, bindings) = routes.find("GET", black_box("/carts/user-1")) else { unreachable!() };
            let request = rule.request(&bindings, None, None, b"").unwrap();
            (request, rule.response(&reply).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, cart_calls);
criterion_main!(benches);

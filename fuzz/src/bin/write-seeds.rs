//! Writes the seed corpora (`fuzz/corpus/<target>/`) from real messages:
//! shopping-cart requests, gRPC frames of them, connection prefaces,
//! probe heads, the example function's `EntitySpec`. Rerun after changing
//! a fixture; the output is deterministic.

use std::{fs, path::Path};

use bytes::Bytes;
use massa::grpc::encode_prost;
use massa::proto::com::example::shoppingcart::{AddLineItem, GetShoppingCart};
use massa::proto::EXAMPLE_DESCRIPTORS;
use massa_fuzz::{example_spec, KEY_SPECS};
use prost::Message;
use prost_reflect::{DynamicMessage, Kind, Value};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("creating corpus directory");
        fs::write(dir.join(name), bytes).expect("writing seed");
    };
    let add = AddLineItem { user_id: "alice".into(), product_id: "pen".into(), name: "Blue pen".into(), quantity: 3 };
    let get = GetShoppingCart { user_id: "bob".into() };

    // entity_key: [spec selector] [message]
    write("entity_key", "add-line-item", &[&[0u8][..], &add.encode_to_vec()].concat());
    for (selector, spec) in KEY_SPECS.iter().enumerate() {
        let mut message = DynamicMessage::new(spec.clone());
        for (i, field) in spec.fields().enumerate() {
            message.set_field(&field, key_value(&field.kind(), i as i32 + 1));
        }
        write(
            "entity_key",
            &format!("{}-all-set", spec.name()),
            &[&[selector as u8][..], &message.encode_to_vec()].concat(),
        );
    }

    // frame: [max: u16 LE, x4] [n] [n chunk sizes - 1] [stream]
    let stream = [encode_prost(&add), encode_prost(&get), encode_prost(&add)].concat();
    write("frame", "three-requests-one-chunk", &[&[0, 4, 0][..], &stream].concat());
    write("frame", "three-requests-ragged-chunks", &[&[0, 4, 3, 6, 0, 40][..], &stream].concat());
    write("frame", "empty-message-then-compressed", &[0, 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 7]);
    write("frame", "over-the-limit", &[&[1, 0, 0][..], &stream].concat());

    // sniff: connection starts
    write("sniff", "h2-preface-settings", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    write("sniff", "http1-get", b"GET /health/ready HTTP/1.1\r\n");
    write("sniff", "http1-options", b"OPTIONS * HTTP/1.1\r\n");
    write("sniff", "tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");

    // http1_head: complete heads
    write("http1_head", "knative-probe", b"GET / HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nK-Network-Probe: queue\r\nUser-Agent: Knative-Activator-Probe\r\n\r\n");
    write("http1_head", "metrics", b"GET /metrics HTTP/1.1\r\nhost:localhost\r\naccept: */*\r\n\r\n");
    write("http1_head", "odd-spacing", b"POST /x?y=1 HTTP/1.0\r\n  X-A :  b: c  \r\n:empty-name\r\n\r\n");

    // discovery: [mode] [EntitySpec] (mode bit 0 clear) or [mode] [FileDescriptorSet]
    let spec = example_spec(Bytes::from_static(EXAMPLE_DESCRIPTORS));
    write("discovery", "example-spec", &[&[0u8][..], &spec.encode_to_vec()].concat());
    write("discovery", "example-descriptors", &[&[1u8][..], EXAMPLE_DESCRIPTORS].concat());

    // transcode: [mode] METHOD path \n query \n content-type \n body
    let json = "application/json";
    let add_item = format!("POST /cart/alice/items/add\n\n{json}\n{{\"productId\":\"pen\",\"quantity\":3}}");
    write("transcode", "add-item", &[b"\0", add_item.as_bytes()].concat());
    write("transcode", "get-cart-items", b"\0GET /carts/bob/items\nuser_id=x&a.b=%41+\n\n");
    write("transcode", "remove-item-bad-query", b"\0POST /cart/bob/items/p%2Fq/remove\nquantity=2&quantity=3\n\n");
    let tck = format!("POST /tck/model/crdt/c1\n\n{json}\n{{\"actions\":[{{\"update\":{{\"pncounter\":{{\"change\":\"-81\"}}}}}}]}}");
    write("transcode", "tck-crdt", &[b"\x01", tck.as_bytes()].concat());
    let two = format!("POST /cloudstate.tck.model.valueentity.ValueEntityTwo/Call\n\n{json}; charset=utf-8\n{{\"id\":\"e\"}}");
    write("transcode", "tck-default-rule", &[b"\x01", two.as_bytes()].concat());
}

/// A value of the key kind: the `n`th string, or `n`, negative where signed.
fn key_value(kind: &Kind, n: i32) -> Value {
    match kind {
        Kind::String => Value::String(format!("key{n}")),
        Kind::Bool => Value::Bool(true),
        Kind::Enum(_) => Value::EnumNumber(n % 2),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(-n),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(-i64::from(n)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(n.unsigned_abs()),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(n.unsigned_abs().into()),
        other => unreachable!("no fixture key is {other:?}"),
    }
}

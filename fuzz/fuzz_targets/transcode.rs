//! HTTP/JSON transcoding on the example function's and the TCK model's
//! rules: a request line, query, content type and body, mutated. Matching
//! and request building never panic; a 400 has a reason; a built request
//! decodes as the method's input type; the same bytes rendered as a reply
//! give JSON or an error, never a panic.
//!
//! Input: `[mode] METHOD path \n query \n content-type \n body`; mode bit 0
//! picks the TCK rules, bit 1 drops the query, bit 2 the content type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use massa::proto::{EXAMPLE_DESCRIPTORS, TCK_DESCRIPTORS};
use massa::transcode::{Found, Routes};
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use std::sync::LazyLock;

struct Fixture {
    routes: Routes,
    methods: Vec<MethodDescriptor>,
}

fn fixture(descriptors: &[u8]) -> Fixture {
    let pool = DescriptorPool::decode(descriptors).expect("embedded descriptors decode");
    let methods: Vec<_> = pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()).collect();
    let (routes, problems) = Routes::compile(methods.iter().cloned().enumerate());
    assert!(problems.is_empty(), "{problems:?}");
    Fixture { routes, methods }
}

static EXAMPLE: LazyLock<Fixture> = LazyLock::new(|| fixture(EXAMPLE_DESCRIPTORS));
static TCK: LazyLock<Fixture> = LazyLock::new(|| fixture(TCK_DESCRIPTORS));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut parts = rest.splitn(4, |&b| b == b'\n');
    let Some(Ok(line)) = parts.next().map(std::str::from_utf8) else { return };
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok()).filter(|_| mode & 2 == 0);
    let content_type = parts.next().and_then(|c| std::str::from_utf8(c).ok()).filter(|_| mode & 4 == 0);
    let body = parts.next().unwrap_or_default();
    let (method, path) = line.split_once(' ').unwrap_or(("POST", line));
    let fixture = if mode & 1 == 0 { &*EXAMPLE } else { &*TCK };
    let Found::Route(rule, bindings) = fixture.routes.find(method, path) else { return };
    let input = fixture.methods[rule.route_id()].input();
    match rule.request(&bindings, query, content_type, body) {
        Ok(bytes) => {
            assert!(DynamicMessage::decode(input, bytes.as_slice()).is_ok(), "the request decodes as its input type");
        }
        Err(reason) => assert!(!reason.0.is_empty()),
    }
    if let Ok(rendered) = rule.response(body) {
        assert!(!rendered.content_type.is_empty());
    }
});

//! Discovery validation on a mutated `EntitySpec` (decoded as `discover`
//! decodes it), or on a mutated descriptor set behind the example
//! function's entity list. It returns a router or an error, never panics,
//! and a router it returns is consistent: dense route ids, every path
//! `/<service>/<method>` found by lookup, every service of a supported
//! kind and declared once, every input type resolvable, and every stateful
//! method keyed.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use massa::discovery::spec::{type_url, validate};
use massa::discovery::{Acceptance, EntityKind};
use massa::proto::cloudstate::EntitySpec;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let spec = if mode & 1 == 0 {
        match EntitySpec::decode(bytes) {
            Ok(spec) => spec,
            Err(_) => return,
        }
    } else {
        massa_fuzz::example_spec(Bytes::copy_from_slice(bytes))
    };
    let mut supported = vec![EntityKind::Action, EntityKind::EventSourced, EntityKind::ValueEntity];
    if mode & 4 != 0 {
        supported.push(EntityKind::Crdt);
    }
    let accept = Acceptance { strict_protocol: mode & 2 != 0, supported };
    let router = match validate(&spec, &accept) {
        Ok(validated) => validated.router,
        Err(message) => return assert!(!message.is_empty()),
    };
    let services = router.services();
    for (i, s) in services.iter().enumerate() {
        assert!(accept.supported.contains(&s.kind), "{s:?}");
        assert!(services[..i].iter().all(|t| t.name != s.name), "{} twice", s.name);
    }
    for (id, route) in router.routes().iter().enumerate() {
        assert_eq!(route.id, id);
        let service = &services[route.service];
        assert_eq!(route.path, format!("/{}/{}", service.name, route.method));
        assert_eq!(router.lookup(&route.path).map(|r| r.id), Some(id));
        let input = route.input_type_url.strip_prefix(&type_url("")).expect("type URL prefix");
        assert!(router.descriptors().get_message_by_name(input).is_some(), "{input} not in the pool");
        assert!(service.kind == EntityKind::Action || !route.key_fields.is_empty(), "{} unkeyed", route.path);
    }
});

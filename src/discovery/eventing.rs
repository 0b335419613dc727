//! The `(cloudstate.eventing)` method option (spec §5.5): which action
//! methods consume an event-sourced entity's event log, how they group into
//! consumers, and what discovery refuses. Massa serves event-log sources
//! only; topics (Google Pub/Sub in the reference proxy) are refused with a
//! message saying so.

use std::collections::HashMap;

use prost::Message;
use prost_reflect::MethodDescriptor;

use super::routes::{Consumer, EntityKind, EntityService, Shape};
use crate::proto::cloudstate::{event_destination::Destination, event_source::Source, Eventing};

const ANY: &str = "google.protobuf.Any";

/// `MethodOptions` seen only for `(cloudstate.eventing)`, field 1081; read
/// from the encoded options so it works whether or not the function's
/// descriptor set declares the extension.
#[derive(Clone, PartialEq, prost::Message)]
struct EventingOption {
    #[prost(message, optional, tag = "1081")]
    eventing: Option<Eventing>,
}

/// One method's `in.event_log` subscription, as declared.
#[derive(Debug)]
pub struct Subscription {
    route: usize,
    service: String,
    method: String,
    /// Full name of the method's input type.
    input: String,
    group: String,
    persistence_id: String,
}

/// The method's event-log subscription, if it declares one; `Err` for
/// eventing Massa does not serve.
pub fn subscription(
    method: &MethodDescriptor,
    service: &str,
    kind: EntityKind,
    shape: Shape,
    route: usize,
) -> Result<Option<Subscription>, String> {
    let options = method.options().encode_to_vec();
    let Some(eventing) = EventingOption::decode(options.as_slice()).ok().and_then(|o| o.eventing) else { return Ok(None) };
    let here = format!("Service [{service}] method [{}]", method.name());
    let source = eventing.r#in.as_ref().and_then(|s| s.source.as_ref());
    let out = eventing.out.as_ref().and_then(|d| d.destination.as_ref());
    if let (Some(Source::Topic(input)), Some(Destination::Topic(output))) = (source, out) {
        if input == output {
            return Err(format!("{here}: the input topic and the output topic are both [{input}]; a method must not consume what it publishes"));
        }
    }
    if let Some(Destination::Topic(topic)) = out {
        return Err(format!(
            "{here}: publishing to topic [{topic}] is not supported; Massa serves event-log eventing only (eventing.support = none)"
        ));
    }
    let persistence_id = match source {
        None => return Ok(None),
        Some(Source::Topic(topic)) => {
            return Err(format!(
                "{here}: consuming topic [{topic}] is not supported; Massa serves event-log eventing only (eventing.support = none)"
            ))
        }
        Some(Source::EventLog(pid)) if pid.is_empty() => return Err(format!("{here}: in.event_log names no persistence id")),
        Some(Source::EventLog(pid)) => pid.clone(),
    };
    if kind != EntityKind::Action {
        return Err(format!("{here}: event-log eventing is served for Action methods only, not {}", kind.protocol()));
    }
    if matches!(shape, Shape::ClientStreaming | Shape::Bidi) {
        return Err(format!("{here}: an event-log consumer must take a single message (unary or server-streaming), not {shape:?}"));
    }
    let group = eventing.r#in.map(|s| s.consumer_group).filter(|g| !g.is_empty()).unwrap_or_else(|| service.to_owned());
    Ok(Some(Subscription {
        route,
        service: service.to_owned(),
        method: method.name().to_owned(),
        input: method.input().full_name().to_owned(),
        group,
        persistence_id,
    }))
}

/// Groups subscriptions into consumers, one per (consumer group, event
/// log), checking that each event log exists and that every event type has
/// one method. Also returns warnings worth logging.
pub fn consumers(subscriptions: Vec<Subscription>, services: &[EntityService]) -> Result<(Vec<Consumer>, Vec<String>), String> {
    let mut consumers: Vec<Consumer> = Vec::new();
    let mut by_type: Vec<HashMap<String, &Subscription>> = Vec::new();
    for sub in &subscriptions {
        let known = |s: &&EntityService| s.kind == EntityKind::EventSourced && s.persistence_id == sub.persistence_id;
        if !services.iter().any(|s| known(&s)) {
            let mut logs: Vec<_> =
                services.iter().filter(|s| s.kind == EntityKind::EventSourced).map(|s| s.persistence_id.as_str()).collect();
            logs.sort_unstable();
            logs.dedup();
            return Err(format!(
                "Service [{}] method [{}] consumes event log [{}], but no event-sourced entity has that persistence id (known: [{}])",
                sub.service,
                sub.method,
                sub.persistence_id,
                logs.join(", ")
            ));
        }
        let i = match consumers.iter().position(|c| c.group == sub.group && c.persistence_id == sub.persistence_id) {
            Some(i) => i,
            None => {
                consumers.push(Consumer::new(sub.group.clone(), sub.persistence_id.clone()));
                by_type.push(HashMap::new());
                consumers.len() - 1
            }
        };
        if let Some(other) = by_type[i].insert(sub.input.clone(), sub) {
            return Err(format!(
                "Consumer group [{}] of event log [{}]: methods [{}/{}] and [{}/{}] both take [{}]; each event type needs exactly one method",
                sub.group, sub.persistence_id, other.service, other.method, sub.service, sub.method, sub.input
            ));
        }
        consumers[i].add(&sub.input, sub.input == ANY, sub.route);
    }
    let warnings = consumers
        .iter()
        .filter(|c| !c.has_fallback())
        .map(|c| {
            format!(
                "Consumer group [{}] of event log [{}] has no method taking {ANY}: JSON, primitive and other events no method takes will fail and be retried",
                c.group, c.persistence_id
            )
        })
        .collect();
    Ok((consumers, warnings))
}

#[cfg(test)]
mod tests {
    use crate::discovery::routes::{ACTION_PROTOCOL, EVENT_SOURCED_PROTOCOL};
    use crate::discovery::spec::{validate, Acceptance, Validated};
    use crate::discovery::EntityKind;
    use crate::proto::cloudstate::{Entity, EntitySpec, ServiceInfo};

    /// Validates a spec of event-sourced `t.Log` (persistence id "log") and
    /// action `t.Sub`, whose methods are `methods` (proto text).
    fn check(methods: &str) -> Result<Validated, String> {
        let dir = std::env::temp_dir().join(format!("massa-eventing-spec-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = format!(
            "syntax = \"proto3\"; package t; import \"google/protobuf/any.proto\"; import \"cloudstate/eventing.proto\";
             import \"cloudstate/entity_key.proto\";
             message Ev {{ string id = 1 [(.cloudstate.entity_key) = true]; }}
             message Other {{ string id = 1; }}
             service Log {{ rpc Emit(Ev) returns (Ev); }}
             service Sub {{ {methods} }}"
        );
        std::fs::write(dir.join("t.proto"), source).unwrap();
        let mut compiler = protox::Compiler::new([dir.clone(), concat!(env!("CARGO_MANIFEST_DIR"), "/proto").into()]).unwrap();
        compiler.include_imports(true).open_file("t.proto").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let entity = |entity_type: &str, service_name: &str, persistence_id: &str| Entity {
            entity_type: entity_type.into(),
            service_name: service_name.into(),
            persistence_id: persistence_id.into(),
            passivation_strategy: None,
        };
        let spec = EntitySpec {
            proto: compiler.encode_file_descriptor_set().into(),
            entities: vec![entity(EVENT_SOURCED_PROTOCOL, "t.Log", "log"), entity(ACTION_PROTOCOL, "t.Sub", "")],
            service_info: Some(ServiceInfo { protocol_major_version: 0, protocol_minor_version: 2, ..Default::default() }),
        };
        validate(&spec, &Acceptance { strict_protocol: true, supported: vec![EntityKind::Action, EntityKind::EventSourced] })
    }

    fn must_refuse(methods: &str, expected: &str) {
        let err = check(methods).expect_err(methods);
        assert!(err.contains(expected), "{err}");
    }

    #[test]
    fn consumers_group_by_group_and_log_and_miss_the_any_method_loudly() {
        let v = check(
            "rpc A(Ev) returns (Ev) { option (.cloudstate.eventing) = { in: { event_log: \"log\" } }; }
             rpc B(Other) returns (stream Ev) { option (.cloudstate.eventing) = { in: { event_log: \"log\" } }; }
             rpc C(Ev) returns (Ev) { option (.cloudstate.eventing) = { in: { consumer_group: \"g\", event_log: \"log\" } }; }
             rpc D(google.protobuf.Any) returns (Ev) { option (.cloudstate.eventing) = { in: { consumer_group: \"g\", event_log: \"log\" } }; }
             rpc Plain(Ev) returns (Ev);",
        )
        .unwrap();
        let consumers = v.router.consumers();
        let groups: Vec<_> = consumers.iter().map(|c| (c.group.as_str(), c.persistence_id.as_str())).collect();
        assert_eq!(groups, [("t.Sub", "log"), ("g", "log")], "the group defaults to the service name");
        let route = |id: Option<usize>| id.map(|i| v.router.routes()[i].method.as_str());
        assert_eq!(route(consumers[0].route_for("type.googleapis.com/t.Other")), Some("B"));
        assert_eq!(route(consumers[0].route_for("json.cloudstate.io/t.Ev")), None);
        assert_eq!(route(consumers[1].route_for("json.cloudstate.io/t.Ev")), Some("D"));
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains("Consumer group [t.Sub] of event log [log] has no method taking google.protobuf.Any"));
    }

    #[test]
    fn eventing_massa_does_not_serve_is_refused_with_a_reason() {
        let opt = |o: &str| format!("rpc A(Ev) returns (Ev) {{ option (.cloudstate.eventing) = {{ {o} }}; }}");
        must_refuse(&opt("out: { topic: \"t\" }"), "Service [t.Sub] method [A]: publishing to topic [t] is not supported");
        must_refuse(&opt("in: { topic: \"t\" }"), "Service [t.Sub] method [A]: consuming topic [t] is not supported");
        must_refuse(&opt("in: { topic: \"t\" } out: { topic: \"t\" }"), "the input topic and the output topic are both [t]");
        must_refuse(
            &opt("in: { event_log: \"nope\" }"),
            "Service [t.Sub] method [A] consumes event log [nope], but no event-sourced entity has that persistence id (known: [log])",
        );
        must_refuse(
            &format!("{} rpc B(Ev) returns (Ev) {{ option (.cloudstate.eventing) = {{ in: {{ event_log: \"log\" }} }}; }}", opt("in: { event_log: \"log\" }")),
            "methods [t.Sub/A] and [t.Sub/B] both take [t.Ev]",
        );
        must_refuse(
            "rpc A(stream Ev) returns (Ev) { option (.cloudstate.eventing) = { in: { event_log: \"log\" } }; }",
            "an event-log consumer must take a single message",
        );
    }
}

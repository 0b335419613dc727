//! Validation of a discovered `EntitySpec` and construction of the routes,
//! following the reference proxy's rules (spec §3).

use std::time::Duration;

use prost::Message;
use prost_reflect::{DescriptorPool, FieldDescriptor, MessageDescriptor};

use crate::entity::key::{KeyField, KeyKind};
use crate::transcode;

use super::eventing;
use super::routes::{EntityKind, EntityService, MethodRoute, Router, Shape};
use crate::proto::cloudstate::{entity_passivation_strategy::Strategy, EntitySpec};

/// `(cloudstate.entity_key)` and `(cloudstate.legacy_entity_key)`.
const KEY_EXTENSIONS: [u32; 2] = [1080, 50002];

/// What the proxy accepts from a function.
#[derive(Clone, Debug)]
pub struct Acceptance {
    /// Reject functions that do not speak exactly protocol 0.2.
    pub strict_protocol: bool,
    /// Entity kinds this build serves.
    pub supported: Vec<EntityKind>,
}

/// A valid spec: the routes plus warnings worth logging, and the HTTP
/// rules that cannot be served, worth reporting to the function too.
#[derive(Debug)]
pub struct Validated {
    pub router: Router,
    pub warnings: Vec<String>,
    pub http_problems: Vec<String>,
}

/// Checks the spec and builds the routes; `Err` carries the message the
/// proxy reports to the function before it stops.
pub fn validate(spec: &EntitySpec, accept: &Acceptance) -> Result<Validated, String> {
    let mut warnings = Vec::new();
    let (major, minor) = spec
        .service_info
        .as_ref()
        .map(|i| (i.protocol_major_version, i.protocol_minor_version))
        .unwrap_or((0, 0));
    match (major, minor) {
        (0, 2) => {}
        (0, 0) | (0, 1) if !accept.strict_protocol => warnings.push(format!(
            "user function speaks protocol {major}.{minor}; Massa speaks 0.2 and serves it in compatibility mode"
        )),
        _ => return Err(format!("Incompatible protocol version {major}.{minor}, only 0.2 is supported")),
    }

    check_syntax(&spec.proto)?;
    let descriptors = DescriptorPool::decode(spec.proto.as_ref())
        .map_err(|e| format!("Unable to build descriptors from the user function's FileDescriptorSet: {e}"))?;
    if spec.entities.is_empty() {
        return Err("No entities were reported by the discover call!".to_owned());
    }

    let mut services = Vec::with_capacity(spec.entities.len());
    let mut routes = Vec::new();
    let mut subscriptions = Vec::new();
    let mut methods = Vec::new();
    for entity in &spec.entities {
        let kind = EntityKind::from_entity_type(&entity.entity_type)
            .filter(|k| accept.supported.contains(k))
            .ok_or_else(|| {
                let supported: Vec<_> = accept.supported.iter().map(|k| k.protocol()).collect();
                format!(
                    "Service [{}] has declared an unsupported entity type [{}]. Supported types are {}",
                    entity.service_name,
                    entity.entity_type,
                    supported.join(", ")
                )
            })?;
        if services.iter().any(|s: &EntityService| s.name == entity.service_name) {
            return Err(format!("Service [{}] is declared more than once", entity.service_name));
        }
        let service = descriptors
            .get_service_by_name(&entity.service_name)
            .ok_or_else(|| format!("Service [{}] not found in descriptors!", entity.service_name))?;
        let service_idx = services.len();
        for method in service.methods() {
            let shape = Shape::new(method.is_client_streaming(), method.is_server_streaming());
            check_shape(kind, &entity.service_name, method.name(), shape)?;
            let input = method.input();
            let key_fields = key_fields(&input);
            if kind != EntityKind::Action {
                check_keys(&entity.service_name, method.name(), &input, &key_fields)?;
            }
            subscriptions.extend(eventing::subscription(&method, &entity.service_name, kind, shape, routes.len())?);
            methods.push((routes.len(), method.clone()));
            routes.push(MethodRoute {
                id: routes.len(),
                path: format!("/{}/{}", entity.service_name, method.name()),
                service: service_idx,
                method: method.name().to_owned(),
                input_type_url: type_url(input.full_name()),
                output_type_url: type_url(method.output().full_name()),
                shape,
                key_fields: key_fields
                    .iter()
                    .filter_map(|f| KeyKind::of(&f.kind()).map(|kind| KeyField { number: f.number(), kind }))
                    .collect(),
            });
        }
        let passivation_timeout = entity
            .passivation_strategy
            .as_ref()
            .and_then(|p| p.strategy.as_ref())
            .and_then(|Strategy::Timeout(t)| (t.timeout > 0).then(|| Duration::from_millis(t.timeout as u64)));
        services.push(EntityService {
            name: entity.service_name.clone(),
            kind,
            protocol: entity.entity_type.clone(),
            persistence_id: entity.persistence_id.clone(),
            passivation_timeout,
        });
    }
    let (consumers, eventing_warnings) = eventing::consumers(subscriptions, &services)?;
    warnings.extend(eventing_warnings);
    let (http, http_problems) = transcode::Routes::compile(methods);
    let router = Router::new(services, routes, descriptors).with_consumers(consumers).with_http(http);
    Ok(Validated { router, warnings, http_problems })
}

/// The fields of a `FileDescriptorProto` read before prost-reflect sees the
/// set: prost-reflect 0.16.5 panics (index out of bounds) on a file whose
/// `syntax` it does not know, such as `editions`.
#[derive(Clone, PartialEq, prost::Message)]
struct FileSyntax {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "12")]
    syntax: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileSyntaxes {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileSyntax>,
}

/// Rejects files in a syntax other than proto2 and proto3. Undecodable
/// bytes pass: the descriptor pool reports those.
fn check_syntax(proto: &[u8]) -> Result<(), String> {
    let Ok(set) = FileSyntaxes::decode(proto) else { return Ok(()) };
    match set.file.iter().find(|f| !matches!(f.syntax.as_deref(), None | Some("proto2") | Some("proto3"))) {
        Some(f) => Err(format!(
            "Unable to build descriptors from the user function's FileDescriptorSet: file [{}] uses syntax [{}]; only proto2 and proto3 are supported",
            f.name(),
            f.syntax()
        )),
        None => Ok(()),
    }
}

/// `type.googleapis.com/<full name>`.
pub fn type_url(full_name: &str) -> String {
    format!("type.googleapis.com/{full_name}")
}

fn check_shape(kind: EntityKind, service: &str, method: &str, shape: Shape) -> Result<(), String> {
    let allowed = match kind {
        EntityKind::Action => true,
        EntityKind::EventSourced | EntityKind::ValueEntity => shape == Shape::Unary,
        EntityKind::Crdt => matches!(shape, Shape::Unary | Shape::ServerStreaming),
    };
    if allowed {
        Ok(())
    } else {
        Err(format!("Service [{service}] method [{method}]: {} entities do not support {shape:?} methods", kind.protocol()))
    }
}

fn check_keys(service: &str, method: &str, input: &MessageDescriptor, keys: &[FieldDescriptor]) -> Result<(), String> {
    if keys.is_empty() {
        return Err(format!(
            "Service [{service}] method [{method}]: input type [{}] has no field marked (cloudstate.entity_key)",
            input.full_name()
        ));
    }
    for key in keys {
        let ok = !key.is_list() && KeyKind::of(&key.kind()).is_some();
        if !ok {
            return Err(format!(
                "Service [{service}] method [{method}]: entity key field [{}] has type {:?}; keys must be single strings, integers or bools",
                key.full_name(),
                key.kind()
            ));
        }
    }
    Ok(())
}

/// The message's top-level fields marked as entity keys, in declaration order.
pub fn key_fields(message: &MessageDescriptor) -> Vec<FieldDescriptor> {
    message.fields().filter(is_key).collect()
}

fn is_key(field: &FieldDescriptor) -> bool {
    let options = field.options();
    let known = options.extensions().any(|(ext, v)| KEY_EXTENSIONS.contains(&ext.number()) && v.as_bool() == Some(true));
    // Options whose extension is not in the function's descriptor set stay
    // unknown fields; a bool `true` is the varint 1 after the tag.
    let unknown = options.unknown_fields().any(|u| {
        let mut encoded = Vec::new();
        u.encode(&mut encoded);
        KEY_EXTENSIONS.contains(&u.number())
            && u.wire_type() == prost::encoding::WireType::Varint
            && encoded.last() == Some(&1)
    });
    known || unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::routes::ACTION_PROTOCOL;
    use crate::proto::cloudstate::{Entity, ServiceInfo};
    use prost_types::{FileDescriptorProto, FileDescriptorSet};

    #[test]
    fn a_file_in_an_unknown_syntax_is_an_error_not_a_panic() {
        let file = FileDescriptorProto {
            name: Some("echo.proto".to_owned()),
            syntax: Some("editions".to_owned()),
            ..Default::default()
        };
        let spec = EntitySpec {
            proto: FileDescriptorSet { file: vec![file] }.encode_to_vec().into(),
            entities: vec![Entity {
                entity_type: ACTION_PROTOCOL.to_owned(),
                service_name: "example.Echo".to_owned(),
                ..Default::default()
            }],
            service_info: Some(ServiceInfo {
                protocol_major_version: 0,
                protocol_minor_version: 2,
                ..Default::default()
            }),
        };
        let accept = Acceptance { strict_protocol: true, supported: vec![EntityKind::Action] };
        let err = validate(&spec, &accept).unwrap_err();
        assert!(err.contains("file [echo.proto] uses syntax [editions]"), "{err}");
    }
}

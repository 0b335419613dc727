//! `massa-tck-model`: a Cloudstate user function (protocol 0.2) serving the
//! TCK model services of `proto/tck/` with the behaviour the Cloudstate TCK
//! expects (proto/tck/README.md §4): actions ([`action`]), value entities
//! ([`value_entity`]), event-sourced entities ([`event_sourced`]), CRDTs
//! ([`crdt`]) and event-log eventing ([`eventing`]).
//! Protocol violations by the caller end the call with INVALID_ARGUMENT and
//! a message saying what was wrong.

mod action;
mod crdt;
mod event_sourced;
mod eventing;
mod value_entity;
mod wire;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use massa::http2::{server::Incoming, Reason};

use massa::config::IoDriver;
use massa::discovery::routes::{ACTION_PROTOCOL, CRDT_PROTOCOL, EVENT_SOURCED_PROTOCOL, VALUE_ENTITY_PROTOCOL};
use massa::grpc::{Code, MessageReader, Responder, Status};
use massa::proto::cloudstate::{
    entity_passivation_strategy::Strategy, Entity, EntityPassivationStrategy, EntitySpec, ProxyInfo, ServiceInfo,
    TimeoutPassivationStrategy, UserFunctionError,
};
use massa::proto::google::protobuf::Empty;
use massa::runtime::{self, Notify};
use massa::grpc::budget::Budget;
use massa::server::{serve_h2, H2Options, Service};

use action::Shape;
use wire::{decode, send};

/// Largest message accepted.
const MAX_MESSAGE: usize = 64 << 20;
/// Passivation timeout the `*Configured` services declare (ms).
pub const CONFIGURED_PASSIVATION_MS: i64 = 100;

/// The Cloudstate TCK model user function.
#[derive(Parser, Debug)]
#[command(name = "massa-tck-model", version)]
struct Args {
    /// Interface to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (the proxy's user-function port).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Declare only these model groups at discovery (action, valueentity,
    /// eventsourced, crdt, eventing), e.g. to test a proxy that does not
    /// serve every entity type yet. Default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

struct TckModel {
    /// Model groups declared at discovery; empty means all.
    only: Vec<String>,
}

fn main() {
    let args = Args::parse();
    let serve = async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = match monoio::net::TcpListener::bind(addr.as_str()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("massa-tck-model: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("massa-tck-model listening on {addr}");
        let (model, shutdown) = (Rc::new(TckModel { only: args.only.clone() }), Notify::new());
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let options = H2Options::user_function(None);
                    monoio::spawn(serve_h2(stream, BytesMut::new(), model.clone(), shutdown.clone(), options, Budget::unlimited()));
                }
                Err(e) => eprintln!("massa-tck-model: accept failed: {e}"),
            }
        }
    };
    if let Err(e) = runtime::block_on(IoDriver::Auto, serve) {
        eprintln!("massa-tck-model: runtime failed: {e}");
        std::process::exit(1);
    }
}

impl Service for TckModel {
    async fn call(self: Rc<Self>, request: Incoming, _budget: Rc<Budget>) {
        let path = request.head.get_str(b":path").unwrap_or("").to_owned();
        let mut responder = Responder::new(request.send);
        let reader = MessageReader::new(request.recv, MAX_MESSAGE);
        let r = &mut responder;
        let status = match path.as_str() {
            "/cloudstate.EntityDiscovery/discover" => discover(reader, r, &self.only).await,
            "/cloudstate.EntityDiscovery/reportError" => report_error(reader, r).await,
            "/cloudstate.action.ActionProtocol/handleUnary" => action::handle_unary(reader, r).await,
            "/cloudstate.action.ActionProtocol/handleStreamedOut" => action::handle_streamed_out(reader, r).await,
            "/cloudstate.action.ActionProtocol/handleStreamedIn" => action::handle_streamed(reader, r, Shape::StreamedIn).await,
            "/cloudstate.action.ActionProtocol/handleStreamed" => action::handle_streamed(reader, r, Shape::Streamed).await,
            "/cloudstate.valueentity.ValueEntity/handle" => value_entity::handle(reader, r).await,
            "/cloudstate.eventsourced.EventSourced/handle" => event_sourced::handle(reader, r).await,
            "/cloudstate.crdt.Crdt/handle" => crdt::handle(reader, r).await,
            _ => Err(Status::new(Code::Unimplemented, format!("massa-tck-model has no method {path}"))),
        };
        match status {
            Ok(()) => responder.finish(&Status::ok()),
            Err(s) if s.code == Code::Cancelled => responder.reset(Reason::CANCEL),
            Err(s) => {
                if s.code == Code::InvalidArgument {
                    eprintln!("massa-tck-model: rejected {path}: {}", s.message);
                }
                responder.finish(&s)
            }
        }
    }
}

/// One declared entity, with the 100 ms passivation timeout if `configured`.
fn entity(entity_type: &str, service_name: &str, persistence_id: &str, configured: bool) -> Entity {
    Entity {
        entity_type: entity_type.to_owned(),
        service_name: service_name.to_owned(),
        persistence_id: persistence_id.to_owned(),
        passivation_strategy: configured.then_some(EntityPassivationStrategy {
            strategy: Some(Strategy::Timeout(TimeoutPassivationStrategy { timeout: CONFIGURED_PASSIVATION_MS })),
        }),
    }
}

/// What `discover` answers: the implemented model services, with the entity
/// types and persistence ids of the reference (Java) TCK model.
pub fn entity_spec() -> EntitySpec {
    let (a, v, e, c) = (ACTION_PROTOCOL, VALUE_ENTITY_PROTOCOL, EVENT_SOURCED_PROTOCOL, CRDT_PROTOCOL);
    EntitySpec {
        proto: Bytes::from_static(massa::proto::TCK_DESCRIPTORS),
        entities: vec![
            entity(a, action::TCK_MODEL, "", false),
            entity(a, action::TWO, "", false),
            entity(v, value_entity::TCK_MODEL, "value-entity-tck-model", false),
            entity(v, value_entity::TWO, "value-entity-tck-model-two", false),
            entity(v, value_entity::CONFIGURED, "value-entity-configured", true),
            entity(e, event_sourced::TCK_MODEL, "event-sourced-tck-model", false),
            entity(e, event_sourced::TWO, "EventSourcedTwoEntity", false),
            entity(e, event_sourced::CONFIGURED, "event-sourced-configured", true),
            entity(c, crdt::TCK_MODEL, "", false),
            entity(c, crdt::TWO, "", false),
            entity(c, crdt::CONFIGURED, "", true),
            entity(a, eventing::SUBSCRIBER, "", false),
            entity(e, eventing::ENTITY_ONE, "eventlogeventing-one", false),
            entity(e, eventing::ENTITY_TWO, "eventlogeventing-two", false),
        ],
        service_info: Some(ServiceInfo {
            service_name: "massa-tck-model".to_owned(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            service_runtime: "rust".to_owned(),
            support_library_name: "massa".to_owned(),
            support_library_version: env!("CARGO_PKG_VERSION").to_owned(),
            protocol_major_version: 0,
            protocol_minor_version: 2,
        }),
    }
}

async fn discover(reader: MessageReader, responder: &mut Responder, only: &[String]) -> Result<(), Status> {
    let info: ProxyInfo = decode(reader.single().await?, "ProxyInfo")?;
    eprintln!(
        "discover: proxy {} {} protocol {}.{} supports {:?}",
        info.proxy_name, info.proxy_version, info.protocol_major_version, info.protocol_minor_version, info.supported_entity_types
    );
    let mut spec = entity_spec();
    if !only.is_empty() {
        spec.entities.retain(|e| only.iter().any(|g| g == group(&e.service_name)));
    }
    send(responder, &spec).await
}

/// The model group a declared service belongs to (for `--only`).
fn group(service: &str) -> &'static str {
    match service.rsplit_once('.').map_or("", |(package, _)| package) {
        "cloudstate.tck.model.action" => "action",
        "cloudstate.tck.model.valueentity" => "valueentity",
        "cloudstate.tck.model.crdt" => "crdt",
        "cloudstate.tck.model.eventlogeventing" => "eventing",
        _ => "eventsourced",
    }
}

async fn report_error(reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let error: UserFunctionError = decode(reader.single().await?, "UserFunctionError")?;
    eprintln!("reportError: {}", error.message);
    send(responder, &Empty {}).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;

    #[test]
    fn every_declared_service_is_in_the_descriptors() {
        let spec = entity_spec();
        let pool = DescriptorPool::decode(spec.proto.clone()).expect("descriptor set decodes");
        for e in &spec.entities {
            let service = pool.get_service_by_name(&e.service_name).unwrap_or_else(|| panic!("{} missing", e.service_name));
            if e.entity_type != ACTION_PROTOCOL {
                let server_streaming_allowed = e.entity_type == CRDT_PROTOCOL;
                let ok = |m: prost_reflect::MethodDescriptor| !m.is_client_streaming() && (server_streaming_allowed || !m.is_server_streaming());
                assert!(service.methods().all(ok), "{}", e.service_name);
            }
            let configured = e.service_name.ends_with("Configured");
            assert_eq!(e.passivation_strategy.is_some(), configured, "{}", e.service_name);
        }
        let info = spec.service_info.unwrap();
        assert_eq!((info.protocol_major_version, info.protocol_minor_version), (0, 2));
    }

    #[test]
    fn action_shapes_match_the_descriptors() {
        let pool = DescriptorPool::decode(massa::proto::TCK_DESCRIPTORS).unwrap();
        for service in [action::TCK_MODEL, action::TWO, eventing::SUBSCRIBER] {
            for m in pool.get_service_by_name(service).unwrap().methods() {
                let expected = match (m.is_client_streaming(), m.is_server_streaming()) {
                    (false, false) => Shape::Unary,
                    (true, false) => Shape::StreamedIn,
                    (false, true) => Shape::StreamedOut,
                    (true, true) => Shape::Streamed,
                };
                assert_eq!(action::shape(service, m.name()), Some(expected), "{service}/{}", m.name());
            }
        }
    }
}

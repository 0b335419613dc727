//! The routing table: built once from the discovered `EntitySpec`, then
//! immutable and shared by every core through an `Arc`.

use crate::entity::key::KeyField;
use std::{collections::HashMap, time::Duration};

use prost_reflect::DescriptorPool;

use crate::transcode;

/// The four Cloudstate entity protocols, plus the pre-0.2 name of actions.
pub const ACTION_PROTOCOL: &str = "cloudstate.action.ActionProtocol";
pub const LEGACY_FUNCTION_PROTOCOL: &str = "cloudstate.function.StatelessFunction";
pub const EVENT_SOURCED_PROTOCOL: &str = "cloudstate.eventsourced.EventSourced";
pub const VALUE_ENTITY_PROTOCOL: &str = "cloudstate.valueentity.ValueEntity";
pub const CRDT_PROTOCOL: &str = "cloudstate.crdt.Crdt";

/// What kind of entity serves a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    Action,
    EventSourced,
    ValueEntity,
    Crdt,
}

impl EntityKind {
    /// Parses a discovery `entity_type`; legacy stateless functions are actions.
    pub fn from_entity_type(entity_type: &str) -> Option<EntityKind> {
        Some(match entity_type {
            ACTION_PROTOCOL | LEGACY_FUNCTION_PROTOCOL => EntityKind::Action,
            EVENT_SOURCED_PROTOCOL => EntityKind::EventSourced,
            VALUE_ENTITY_PROTOCOL => EntityKind::ValueEntity,
            CRDT_PROTOCOL => EntityKind::Crdt,
            _ => return None,
        })
    }

    pub fn protocol(self) -> &'static str {
        match self {
            EntityKind::Action => ACTION_PROTOCOL,
            EntityKind::EventSourced => EVENT_SOURCED_PROTOCOL,
            EntityKind::ValueEntity => VALUE_ENTITY_PROTOCOL,
            EntityKind::Crdt => CRDT_PROTOCOL,
        }
    }
}

/// One discovered entity service.
#[derive(Clone, Debug)]
pub struct EntityService {
    /// Full service name, e.g. `com.example.shoppingcart.ShoppingCart`.
    pub name: String,
    pub kind: EntityKind,
    /// The protocol service to call on the function: the discovered
    /// `entity_type` verbatim, so legacy SDKs get their legacy path.
    pub protocol: String,
    pub persistence_id: String,
    /// The function's passivation override, if it sent one.
    pub passivation_timeout: Option<Duration>,
}

/// Streaming shape of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Unary,
    ServerStreaming,
    ClientStreaming,
    Bidi,
}

impl Shape {
    pub fn new(client_streaming: bool, server_streaming: bool) -> Shape {
        match (client_streaming, server_streaming) {
            (false, false) => Shape::Unary,
            (false, true) => Shape::ServerStreaming,
            (true, false) => Shape::ClientStreaming,
            (true, true) => Shape::Bidi,
        }
    }
}

/// Everything needed to serve `/<service>/<Method>` without looking at
/// descriptors again.
#[derive(Clone, Debug)]
pub struct MethodRoute {
    /// Dense index, used for per-core metrics arrays.
    pub id: usize,
    /// `/<service>/<Method>`.
    pub path: String,
    /// Index into [`Router::services`].
    pub service: usize,
    pub method: String,
    pub input_type_url: String,
    pub output_type_url: String,
    pub shape: Shape,
    /// Top-level entity-key fields, in declaration order.
    pub key_fields: Vec<KeyField>,
}

/// Type URL prefixes of Cloudstate's JSON and primitive values, which
/// always go to a consumer's `google.protobuf.Any` method.
const UNTYPED_PREFIXES: [&str; 2] = ["json.cloudstate.io/", "p.cloudstate.io/"];

/// An event-log consumer (spec §5.5): the methods of one consumer group
/// that take the events of one event-sourced persistence id.
#[derive(Clone, Debug)]
pub struct Consumer {
    pub group: String,
    pub persistence_id: String,
    /// Route ids by the full name of the method's input type.
    by_type: HashMap<String, usize>,
    /// The route taking `google.protobuf.Any`: every other event.
    fallback: Option<usize>,
}

impl Consumer {
    pub fn new(group: String, persistence_id: String) -> Consumer {
        Consumer { group, persistence_id, by_type: HashMap::new(), fallback: None }
    }

    /// Adds a method by its input type (`any`: the fallback).
    pub fn add(&mut self, input: &str, any: bool, route: usize) {
        if any {
            self.fallback = Some(route);
        } else {
            self.by_type.insert(input.to_owned(), route);
        }
    }

    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    /// The route for an event of `type_url`: the method taking that type,
    /// else the `Any` method.
    pub fn route_for(&self, type_url: &str) -> Option<usize> {
        let untyped = UNTYPED_PREFIXES.iter().any(|p| type_url.starts_with(p));
        let name = type_url.rsplit_once('/').map_or(type_url, |(_, name)| name);
        let typed = if untyped { None } else { self.by_type.get(name).copied() };
        typed.or(self.fallback)
    }
}

/// The immutable routing table.
#[derive(Debug)]
pub struct Router {
    services: Vec<EntityService>,
    routes: Vec<MethodRoute>,
    by_path: HashMap<String, usize>,
    descriptors: DescriptorPool,
    consumers: Vec<Consumer>,
    http: transcode::Routes,
}

impl Router {
    pub fn new(services: Vec<EntityService>, routes: Vec<MethodRoute>, descriptors: DescriptorPool) -> Router {
        let by_path = routes.iter().map(|r| (r.path.clone(), r.id)).collect();
        Router { services, routes, by_path, descriptors, consumers: Vec::new(), http: transcode::Routes::default() }
    }

    /// The same table with its event-log consumers.
    pub fn with_consumers(self, consumers: Vec<Consumer>) -> Router {
        Router { consumers, ..self }
    }

    pub fn consumers(&self) -> &[Consumer] {
        &self.consumers
    }

    /// The same table with its HTTP/JSON bindings.
    pub fn with_http(self, http: transcode::Routes) -> Router {
        Router { http, ..self }
    }

    /// The HTTP/JSON bindings (spec §4), by HTTP method and path.
    pub fn http(&self) -> &transcode::Routes {
        &self.http
    }

    /// The route for a request path.
    #[inline]
    pub fn lookup(&self, path: &str) -> Option<&MethodRoute> {
        self.by_path.get(path).map(|&i| &self.routes[i])
    }

    /// The route a forward or side effect names, with the reference proxy's
    /// error texts when it does not exist.
    pub fn by_name(&self, service: &str, method: &str) -> Result<&MethodRoute, String> {
        if let Some(route) = self.lookup(&format!("/{service}/{method}")) {
            return Ok(route);
        }
        if self.services.iter().any(|s| s.name == service) {
            Err(format!("Service [{service}] does not have a command named: [{method}]"))
        } else {
            Err(format!("Service [{service}] unknown"))
        }
    }

    pub fn service(&self, route: &MethodRoute) -> &EntityService {
        &self.services[route.service]
    }

    pub fn services(&self) -> &[EntityService] {
        &self.services
    }

    pub fn routes(&self) -> &[MethodRoute] {
        &self.routes
    }

    /// The function's descriptors, for reflection.
    pub fn descriptors(&self) -> &DescriptorPool {
        &self.descriptors
    }
}

//! gRPC server reflection, built from the function's descriptors.
//!
//! `v1alpha` behaves exactly as the Cloudstate TCK checks: it lists itself
//! plus the sorted entity services, and answers an unknown symbol with an
//! empty `FileDescriptorResponse`. `v1` (what newer grpcurl asks first) also
//! lists and describes Massa's own health and reflection services, and
//! answers unknown symbols with NOT_FOUND. Both share one message layout,
//! so both decode with the v1alpha types.

use std::{collections::HashSet, rc::Rc, sync::OnceLock};

use bytes::Bytes;
use crate::dispatch::Request;
use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor};

use crate::dispatch::End;
use crate::grpc::{Code, Responder, Status};
use crate::proto::grpc::reflection::v1alpha::{
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse, ErrorResponse,
    ExtensionNumberResponse, FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest,
    ServerReflectionResponse, ServiceResponse,
};
use crate::worker::Core;

pub const V1ALPHA_PATH: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
pub const V1_PATH: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1alpha,
    V1,
}

/// Descriptors of Massa's own services (health, reflection), decoded once.
fn admin_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::proto::ADMIN_DESCRIPTORS).expect("embedded descriptors are valid"))
}

/// Answers each request of the stream in order.
pub async fn serve(core: &Rc<Core>, version: Version, request: Request, responder: &mut Responder) -> End {
    let mut reader = core.request_reader(request.body, responder);
    loop {
        let body = match reader.message().await {
            Ok(Some(body)) => body,
            Ok(None) => return End::ok(),
            Err(e) => return End::Status(e.into_client_status()),
        };
        let request = match ServerReflectionRequest::decode(body) {
            Ok(r) => r,
            Err(e) => return End::Status(Status::new(Code::InvalidArgument, format!("bad ServerReflectionRequest: {e}"))),
        };
        let served: Vec<&str> = core.router.services().iter().map(|s| s.name.as_str()).collect();
        let response = answer(core.router.descriptors(), &served, version, request);
        if responder.send(Bytes::from(response.encode_to_vec())).await.is_err() {
            return End::ClientGone;
        }
    }
}

/// The response to one reflection request; pure, so it is unit-tested.
/// Answers one reflection request. `served` are the discovered entity
/// services: the list names those, not every service in the descriptors.
pub fn answer(pool: &DescriptorPool, served: &[&str], version: Version, request: ServerReflectionRequest) -> ServerReflectionResponse {
    let pools: Vec<&DescriptorPool> = match version {
        Version::V1alpha => vec![pool],
        Version::V1 => vec![pool, admin_pool()],
    };
    let message = match &request.message_request {
        None => error(Code::InvalidArgument, "empty reflection request"),
        Some(MessageRequest::ListServices(_)) => list_services(served, version),
        Some(MessageRequest::FileByFilename(name)) => {
            match pools.iter().find_map(|p| p.get_file_by_name(name)) {
                Some(file) => files_response(file),
                None => not_found(version, format!("file {name} not found")),
            }
        }
        Some(MessageRequest::FileContainingSymbol(symbol)) => match pools.iter().find_map(|p| find_symbol(p, symbol)) {
            Some(file) => files_response(file),
            None => not_found(version, format!("symbol {symbol} not found")),
        },
        Some(MessageRequest::FileContainingExtension(ext)) => {
            let found = pools.iter().find_map(|p| {
                p.get_message_by_name(&ext.containing_type)?
                    .extensions()
                    .find(|e| e.number() == ext.extension_number as u32)
                    .map(|e| e.parent_file())
            });
            match found {
                Some(file) => files_response(file),
                None => not_found(
                    version,
                    format!("extension {} of {} not found", ext.extension_number, ext.containing_type),
                ),
            }
        }
        Some(MessageRequest::AllExtensionNumbersOfType(name)) => {
            match pools.iter().find_map(|p| p.get_message_by_name(name)) {
                Some(message) => MessageResponse::AllExtensionNumbersResponse(ExtensionNumberResponse {
                    base_type_name: name.clone(),
                    extension_number: message.extensions().map(|e| e.number() as i32).collect(),
                }),
                None => error(Code::NotFound, format!("type {name} not found")),
            }
        }
    };
    ServerReflectionResponse {
        valid_host: request.host.clone(),
        original_request: Some(request),
        message_response: Some(message),
    }
}

fn list_services(served: &[&str], version: Version) -> MessageResponse {
    let mut names: Vec<String> = match version {
        Version::V1alpha => vec!["grpc.reflection.v1alpha.ServerReflection".to_owned()],
        Version::V1 => vec!["grpc.health.v1.Health".to_owned(), "grpc.reflection.v1.ServerReflection".to_owned()],
    };
    let mut entities: Vec<String> = served.iter().map(|s| (*s).to_owned()).collect();
    entities.sort();
    entities.dedup();
    names.extend(entities);
    MessageResponse::ListServicesResponse(ListServiceResponse {
        service: names.into_iter().map(|name| ServiceResponse { name }).collect(),
    })
}

/// The file defining `symbol`: a service, method, message, enum, or extension.
fn find_symbol(pool: &DescriptorPool, symbol: &str) -> Option<FileDescriptor> {
    if let Some(s) = pool.get_service_by_name(symbol) {
        return Some(s.parent_file());
    }
    if let Some(m) = pool.get_message_by_name(symbol) {
        return Some(m.parent_file());
    }
    if let Some(e) = pool.get_enum_by_name(symbol) {
        return Some(e.parent_file());
    }
    if let Some(e) = pool.get_extension_by_name(symbol) {
        return Some(e.parent_file());
    }
    let (parent, member) = symbol.rsplit_once('.')?;
    if let Some(s) = pool.get_service_by_name(parent) {
        return s.methods().any(|m| m.name() == member).then(|| s.parent_file());
    }
    pool.get_message_by_name(parent)
        .filter(|m| m.get_field_by_name(member).is_some())
        .map(|m| m.parent_file())
}

/// The file and everything it imports, each serialized with its options.
fn files_response(file: FileDescriptor) -> MessageResponse {
    let mut seen = HashSet::new();
    let mut stack = vec![file];
    let mut out = Vec::new();
    while let Some(f) = stack.pop() {
        if !seen.insert(f.name().to_owned()) {
            continue;
        }
        stack.extend(f.dependencies());
        out.push(Bytes::from(f.encode_to_vec()));
    }
    MessageResponse::FileDescriptorResponse(FileDescriptorResponse { file_descriptor_proto: out })
}

fn not_found(version: Version, message: String) -> MessageResponse {
    match version {
        Version::V1alpha => MessageResponse::FileDescriptorResponse(FileDescriptorResponse::default()),
        Version::V1 => error(Code::NotFound, message),
    }
}

fn error(code: Code, message: impl Into<String>) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse { error_code: code as i32, error_message: message.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(crate::proto::EXAMPLE_DESCRIPTORS).unwrap()
    }

    fn ask(version: Version, req: MessageRequest) -> ServerReflectionResponse {
        let pool = pool();
        let names: Vec<String> = pool.services().map(|s| s.full_name().to_owned()).collect();
        let served: Vec<&str> = names.iter().map(String::as_str).collect();
        answer(&pool, &served, version, ServerReflectionRequest { host: "h".into(), message_request: Some(req) })
    }

    #[test]
    fn v1alpha_lists_itself_then_sorted_services() {
        let r = ask(Version::V1alpha, MessageRequest::ListServices("nonsense.blabla.".into()));
        assert_eq!(r.valid_host, "h");
        assert!(r.original_request.is_some());
        let Some(MessageResponse::ListServicesResponse(list)) = r.message_response else { panic!() };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "grpc.reflection.v1alpha.ServerReflection",
                "com.example.shoppingcart.ShoppingCart",
                "com.example.valueentity.shoppingcart.ShoppingCart",
                "example.echo.Echo"
            ]
        );
    }

    #[test]
    fn unknown_symbols_are_empty_in_v1alpha_and_not_found_in_v1() {
        let sym = MessageRequest::FileContainingSymbol("nonsense.blabla.Void".into());
        let Some(MessageResponse::FileDescriptorResponse(f)) = ask(Version::V1alpha, sym.clone()).message_response else {
            panic!()
        };
        assert!(f.file_descriptor_proto.is_empty());
        let Some(MessageResponse::ErrorResponse(e)) = ask(Version::V1, sym).message_response else { panic!() };
        assert_eq!(e.error_code, Code::NotFound as i32);
    }

    #[test]
    fn symbols_resolve_to_their_file_and_imports() {
        for symbol in ["example.echo.Echo", "example.echo.Echo.Say", "example.echo.EchoRequest"] {
            let r = ask(Version::V1alpha, MessageRequest::FileContainingSymbol(symbol.into()));
            let Some(MessageResponse::FileDescriptorResponse(f)) = r.message_response else { panic!() };
            let first = prost_types::FileDescriptorProto::decode(f.file_descriptor_proto[0].clone()).unwrap();
            assert_eq!(first.name(), "example/echo/echo.proto", "{symbol}");
        }
        let r = ask(Version::V1, MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()));
        assert!(matches!(r.message_response, Some(MessageResponse::FileDescriptorResponse(_))));
    }
}

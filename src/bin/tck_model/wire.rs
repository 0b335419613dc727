//! Protobuf and gRPC plumbing shared by the model services: packing and
//! unpacking `Any` payloads, protocol-error statuses, sending messages.

use prost::Message;

use massa::grpc::{Code, FrameError, ReadError, Responder, Status};
use massa::proto::google::protobuf::Any;

/// The prefix the proxy (and every SDK) puts before a message's full name.
pub const TYPE_PREFIX: &str = "type.googleapis.com/";

/// Packs `message` as `Any{type.googleapis.com/<type_name>, canonical bytes}`.
pub fn any(type_name: &str, message: &impl Message) -> Any {
    Any { type_url: format!("{TYPE_PREFIX}{type_name}"), value: message.encode_to_vec().into() }
}

/// The message name a type URL points at (the part after the last `/`).
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

/// Unpacks a command payload that must hold a `type_name`.
pub fn unpack<M: Message + Default>(payload: Option<&Any>, type_name_expected: &str) -> Result<M, Status> {
    let payload = payload.ok_or_else(|| invalid(format!("command without payload (expected {type_name_expected})")))?;
    if type_name(&payload.type_url) != type_name_expected {
        return Err(invalid(format!("payload type {:?} is not {type_name_expected}", payload.type_url)));
    }
    decode(payload.value.clone(), type_name_expected)
}

/// Decodes protocol bytes; a failure is the caller's fault.
pub fn decode<M: Message + Default>(bytes: bytes::Bytes, what: &str) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| invalid(format!("undecodable {what}: {e}")))
}

/// INVALID_ARGUMENT: the proxy sent something the protocol does not allow.
pub fn invalid(message: impl Into<String>) -> Status {
    Status::new(Code::InvalidArgument, message)
}

/// The status for a request stream that could not be read.
pub fn read_error(e: ReadError) -> Status {
    match e {
        ReadError::Frame(e @ FrameError::TooLarge { .. }) => Status::new(Code::ResourceExhausted, e.to_string()),
        ReadError::Frame(e) => invalid(format!("malformed gRPC framing: {e}")),
        ReadError::Stream(e) => Status::new(Code::Cancelled, format!("request stream failed: {e}")),
        e @ (ReadError::Incomplete(_) | ReadError::OverBudget) => e.into_client_status(),
    }
}

/// Sends one response message, waiting for flow-control capacity.
pub async fn send(responder: &mut Responder, message: &impl Message) -> Result<(), Status> {
    responder
        .send(message.encode_to_vec().into())
        .await
        .map_err(|e| Status::new(Code::Cancelled, format!("proxy went away: {e}")))
}

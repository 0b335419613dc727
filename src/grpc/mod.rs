//! gRPC on top of h2, for both sides of the proxy: status codes, message
//! framing, and message streams over h2 bodies. Kept small and allocation
//! aware because every call crosses it twice.

mod body;
pub mod budget;
mod frame;
pub mod pipe;
mod status;
mod timeout;

pub use body::{wait_capacity, MessageReader, ReadError, RequestBody, Responder, SendError};
pub use frame::{encode_message, encode_prost, put_frame, Decoder, FrameError, HEADER_LEN};
pub use status::{Code, Status};
pub use timeout::parse_timeout;

/// The content type every gRPC request and response carries.
pub const CONTENT_TYPE: &str = "application/grpc";

/// Whether a request content type is gRPC (`application/grpc`, `+proto`, `;…`).
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    value.starts_with(b"application/grpc")
        && !value.starts_with(b"application/grpc-web")
        && matches!(value.get(16), None | Some(b'+') | Some(b';'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/json"));
        assert!(!is_grpc_content_type(b"application/grpcx"));
    }
}

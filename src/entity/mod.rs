//! Serving discovered methods by entity kind. Actions are stateless and run
//! on the core that received the call; event-sourced, value and CRDT
//! entities run on the core that owns their key ([`crate::shard`]).

pub mod action;
pub mod cache;
pub mod crdt;
mod crdt_store;
pub mod eventsourced;
pub mod key;
pub mod metadata;
pub mod stateful;
pub mod value;

use std::future::Future;

use crate::dispatch::End;
use crate::grpc::{Responder, Status};
use crate::proto::cloudstate::Reply;

/// Answers a unary call with the outcome of `work`, abandoning the work if
/// the client resets the stream first.
pub async fn respond_unary(responder: &mut Responder, work: impl Future<Output = Result<Option<Reply>, Status>>) -> End {
    let outcome = monoio::select! {
        outcome = work => outcome,
        _ = responder.reset_by_client() => return End::ClientGone,
    };
    match outcome {
        Ok(Some(reply)) => {
            let headers = metadata::to_headers(reply.metadata.as_ref());
            let payload = reply.payload.map(|p| p.value).unwrap_or_default();
            if responder.send_headers(Some(&headers)).is_err() {
                return End::ClientGone;
            }
            match responder.send_only(payload).await {
                Ok(()) => End::ok(),
                Err(e) => End::from_send(e),
            }
        }
        Ok(None) => End::ok(),
        Err(status) => End::from_upstream(status),
    }
}

//! A client's call of an entity method: read the request, route the
//! command ([`super::route`]), run the answer's side effects and forwards
//! ([`super::effects`]), and send the reply — once for a unary call, per
//! answer for a CRDT server-streaming one.

use std::{future::Future, rc::Rc};

use super::route::Hop;
use super::{effects, forward, route, End, Request};
use crate::discovery::{EntityKind, MethodRoute, Shape};
use crate::entity::metadata;
use crate::grpc::{Responder, Status};
use crate::proto::cloudstate::Reply;
use crate::worker::Core;

/// Serves a call of an event-sourced, value or CRDT method.
pub async fn serve(core: &Rc<Core>, route: &MethodRoute, request: Request, responder: &mut Responder) -> End {
    let head = request.head;
    let reader = core.request_reader(request.body, responder);
    // The request stays charged to its connection until the call ends, in
    // whichever entity queue or mailbox it waits.
    let (payload, _held) = match reader.single_held().await {
        Ok(request) => request,
        Err(status) => return End::Status(status),
    };
    let hop = if head.get(forward::FORWARDED).is_some() { Hop::Forwarded } else { Hop::First };
    if route.shape == Shape::ServerStreaming && core.router.service(route).kind == EntityKind::Crdt {
        return Box::pin(streamed(core, route, payload, hop, responder)).await;
    }
    let work = async {
        let answer = route::call(core, route, payload, hop).await?;
        effects::finish(core, answer.side_effects, answer.outcome, &route.path, 0).await
    };
    respond_unary(responder, work).await
}

/// A CRDT server-streaming call: each answer resolved and relayed until the
/// entity or the client ends it.
async fn streamed(core: &Rc<Core>, route: &MethodRoute, payload: bytes::Bytes, hop: Hop, responder: &mut Responder) -> End {
    // Dropping `answers` (client gone) is how the entity learns of a cancel.
    let answers = route::call_streamed(core, route, payload, hop).await;
    loop {
        let next = monoio::select! {
            answer = answers.next() => answer,
            _ = responder.reset_by_client() => return End::ClientGone,
        };
        let answer = match next {
            None => return End::ok(),
            Some(Ok(answer)) => answer,
            Some(Err(status)) => return End::from_upstream(status),
        };
        match effects::finish(core, answer.side_effects, answer.outcome, &route.path, 0).await {
            Ok(Some(reply)) => {
                // Headers only with the first message: a call answered with
                // nothing yet stays silent, as the TCK checks.
                if !responder.started() && responder.send_headers(Some(&metadata::to_headers(reply.metadata.as_ref()))).is_err() {
                    return End::ClientGone;
                }
                if let Err(e) = responder.send(reply.payload.map(|p| p.value).unwrap_or_default()).await {
                    return End::from_send(e);
                }
            }
            Ok(None) => {}
            Err(status) => return End::from_upstream(status),
        }
    }
}

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

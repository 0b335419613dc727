//! What happens after the function answered: side effects (synchronous ones
//! in order before the reply, asynchronous ones fire-and-forget), then the
//! reply, a failure, or a forward whose result becomes the reply.
//! Forwards and side effects may target any discovered method.

use std::{future::Future, pin::Pin, rc::Rc};

use bytes::Bytes;
use prost::Message;
use tracing::{debug, warn};

use crate::discovery::{report_error, EntityKind};
use crate::grpc::{encode_prost, Code, Status};
use crate::entity::{Orphaned, Outcome};
use crate::runtime::queue;
use crate::proto::cloudstate::{
    action::{ActionCommand, ActionResponse},
    Metadata, Reply, SideEffect,
};
use crate::proto::google::protobuf::Any;
use crate::userfn;
use crate::worker::Core;

/// A forward chain longer than this is a loop in the function's logic.
const MAX_FORWARD_DEPTH: u8 = 32;

type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Applies an action's response: effects, then reply/failure/forward.
/// `Ok(None)` means the function chose not to reply.
pub async fn resolve(core: &Rc<Core>, response: ActionResponse, origin: &str, depth: u8) -> Result<Option<Reply>, Status> {
    finish(core, response.side_effects, response.response.into(), origin, depth).await
}

/// Side effects first (synchronous ones awaited), then the outcome.
pub async fn finish(
    core: &Rc<Core>,
    side_effects: Vec<SideEffect>,
    outcome: Outcome,
    origin: &str,
    depth: u8,
) -> Result<Option<Reply>, Status> {
    run_side_effects(core, side_effects, origin, depth).await;
    match outcome {
        Outcome::Nothing => Ok(None),
        Outcome::Reply(reply) => Ok(Some(reply)),
        Outcome::Failure(description) => Err(Status::new(Code::Unknown, description)),
        Outcome::Forward(fwd) => {
            let trace = format!("forwarded from {origin}");
            dispatch(core, fwd.service_name, fwd.command_name, fwd.payload, fwd.metadata, trace, depth + 1).await
        }
    }
}

/// Runs side effects in order: synchronous ones awaited (their results are
/// ignored), asynchronous ones spawned — up to the core's limit, beyond
/// which they run before the reply, so a burst slows its sender instead of
/// piling up tasks.
pub async fn run_side_effects(core: &Rc<Core>, effects: Vec<SideEffect>, origin: &str, depth: u8) {
    for effect in effects {
        let trace = format!("side effect of {origin}");
        let call = dispatch(core, effect.service_name, effect.command_name, effect.payload, effect.metadata, trace, depth + 1);
        let running = &core.async_side_effects;
        if !effect.synchronous && running.get() < core.shared.config.max_async_side_effects {
            running.set(running.get() + 1);
            let core = core.clone();
            monoio::spawn(async move {
                if let Err(status) = call.await {
                    debug!(%status, "asynchronous side effect failed");
                }
                core.async_side_effects.set(core.async_side_effects.get() - 1);
            });
        } else if let Err(status) = call.await {
            debug!(%status, synchronous = effect.synchronous, "side effect failed");
        }
    }
}

/// Runs the side effects entities hand over with no caller waiting (see
/// [`Orphaned`]), for as long as the core runs.
pub async fn run_orphaned(core: Rc<Core>, orphans: queue::Receiver<Orphaned>) {
    while let Some(orphaned) = orphans.recv().await {
        run_side_effects(&core, orphaned.side_effects, &orphaned.origin, 0).await;
    }
}

/// Calls `service/method` as a unary command and resolves its answer.
pub fn dispatch(
    core: &Rc<Core>,
    service: String,
    method: String,
    payload: Option<Any>,
    metadata: Option<Metadata>,
    trace: String,
    depth: u8,
) -> LocalFuture<'static, Result<Option<Reply>, Status>> {
    let core = core.clone();
    Box::pin(async move {
        if depth > MAX_FORWARD_DEPTH {
            return Err(Status::new(Code::Internal, format!("forward chain deeper than {MAX_FORWARD_DEPTH} ({trace})")));
        }
        let route = match core.router.by_name(&service, &method) {
            Ok(route) => route.clone(),
            Err(msg) => {
                let report = format!("{msg} ({trace})");
                warn!("{report}");
                let reporter = core.clone();
                monoio::spawn(async move { report_error(&reporter.pool, &report).await });
                return Err(Status::new(Code::NotFound, msg));
            }
        };
        let target = core.router.service(&route);
        match target.kind {
            EntityKind::Action => {
                let uris = core.action_uris(route.service).expect("action routes have action URIs");
                let command = ActionCommand { service_name: service, name: method, payload, metadata };
                let (_, body) = userfn::unary(&core.pool, &uris.unary, encode_prost(&command), core.max_message_size()).await?;
                let response = decode_response(body)?;
                resolve(&core, response, &route.path, depth).await
            }
            // A streamed CRDT method called this way gives its first answer.
            EntityKind::EventSourced | EntityKind::ValueEntity | EntityKind::Crdt => {
                let payload = payload.map(|p| p.value).unwrap_or_default();
                let answer = super::route::call(&core, &route, payload, super::route::Hop::First).await?;
                finish(&core, answer.side_effects, answer.outcome, &route.path, depth).await
            }
        }
    })
}

/// Decodes an `ActionResponse` from the function.
pub fn decode_response(body: Bytes) -> Result<ActionResponse, Status> {
    ActionResponse::decode(body)
        .map_err(|e| Status::new(Code::Unavailable, format!("user function sent an undecodable ActionResponse: {e}")))
}

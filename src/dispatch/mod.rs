//! A call's lifecycle, whichever front it came through (gRPC, gRPC-Web,
//! HTTP/JSON): apply the deadline, serve the call, finish it with a status,
//! count it.
//!
//! ```text
//! front ─► route ─┬─ reflection (v1alpha, v1)
//!                 ├─ grpc.health.v1.Health
//!                 ├─ action ─► [`action`] (the function's ActionProtocol)
//!                 ├─ entity method ─► [`entity`] ─► [`route`] ─► owning core
//!                 └─ unknown ─► UNIMPLEMENTED
//! ```
//!
//! Every answer's side effects and forwards run here ([`effects`]): the
//! entity modules only decide.

pub mod action;
pub mod effects;
pub mod entity;
pub mod forward;
pub mod route;

use std::{rc::Rc, sync::atomic::Ordering, time::Instant};

pub use crate::admin::metrics::Front;
use crate::admin::{health, reflection};
use crate::discovery::{EntityKind, MethodRoute};
use crate::grpc::{self, Code, RequestBody, Responder, SendError, Status};
use crate::http2::{Headers, Reason};
use crate::worker::Core;

/// How a call ended, as the dispatcher turns it into wire output.
pub enum End {
    /// Trailers with this status.
    Status(Status),
    /// RST_STREAM with this reason (cancellation from the user function).
    Reset(Reason),
    /// The client reset the stream; nothing to send.
    ClientGone,
}

impl End {
    pub fn ok() -> End {
        End::Status(Status::ok())
    }

    /// A failed user-function call: a cancel there cancels the client's call.
    pub fn from_upstream(status: Status) -> End {
        if status.code == Code::Cancelled {
            End::Reset(Reason::CANCEL)
        } else {
            End::Status(status)
        }
    }

    /// A reply that could not be sent: a stalled reader loses the stream, an
    /// over-budget one gets the reason.
    pub fn from_send(e: SendError) -> End {
        match e {
            SendError::Stream(_) => End::ClientGone,
            SendError::Stalled(t) => {
                tracing::debug!(stall = ?t, "client opened no window; resetting its stream");
                End::Reset(Reason::CANCEL)
            }
            SendError::OverBudget => End::Status(Status::new(Code::ResourceExhausted, SendError::OverBudget.to_string())),
        }
    }

    fn code(&self) -> Code {
        match self {
            End::Status(s) => s.code,
            End::Reset(_) | End::ClientGone => Code::Cancelled,
        }
    }
}

/// A client's call as the entity modules see it: the request head (pseudo
/// headers and metadata) and its body.
pub struct Request {
    pub head: Headers,
    pub body: RequestBody,
}

impl Request {
    /// The `:path` (`/pkg.Service/Method`).
    pub fn path(&self) -> &str {
        self.head.get_str(b":path").unwrap_or("")
    }
}

/// Serves one call to its end, whichever front it came through: the
/// deadline (`grpc-timeout`), the refusal while draining, the entity kinds
/// and built-in services; then the status, and the metrics.
pub async fn run(core: &Rc<Core>, front: Front, route: Option<&MethodRoute>, request: Request, mut responder: Responder) {
    let started = Instant::now();
    let route_id = route.map(|r| r.id);
    core.metrics.started(route_id);
    let deadline = request.head.get(b"grpc-timeout").and_then(grpc::parse_timeout);
    let work = Box::pin(serve(core, route, request, &mut responder));
    let end = match deadline {
        None => work.await,
        Some(d) => match monoio::time::timeout(d, work).await {
            Ok(end) => end,
            Err(_) => End::Status(Status::new(Code::DeadlineExceeded, format!("deadline of {d:?} exceeded"))),
        },
    };
    let code = end.code();
    if matches!(code, Code::Unavailable) {
        core.metrics.user_fn_error();
    }
    match end {
        End::Status(status) => responder.finish(&status),
        End::Reset(reason) => responder.reset(reason),
        End::ClientGone => {}
    }
    core.metrics.finished(route_id, front, code, started.elapsed());
}

async fn serve(
    core: &Rc<Core>,
    route: Option<&MethodRoute>,
    request: Request,
    responder: &mut Responder,
) -> End {
    if core.shared.draining.load(Ordering::Relaxed) && route.is_some() {
        // GOAWAY already went out; a stream that raced it is refused cleanly.
        return End::Status(Status::new(Code::Unavailable, "Massa is shutting down"));
    }
    let Some(route) = route else {
        return Box::pin(serve_builtin(core, request, responder)).await;
    };
    match core.router.service(route).kind {
        // Each kind's state machine is boxed, sized for that kind alone: the
        // per-call task then stays small, and spawning and polling it does
        // not move kilobytes around (measured: an 8 KiB task, memmove 15 %
        // of a worker's CPU on unary passthrough).
        EntityKind::Action => action::serve(core, route, request, responder).await,
        EntityKind::EventSourced | EntityKind::ValueEntity | EntityKind::Crdt => {
            Box::pin(entity::serve(core, route, request, responder)).await
        }
    }
}

async fn serve_builtin(core: &Rc<Core>, request: Request, responder: &mut Responder) -> End {
    let path = request.path().to_owned();
    match path.as_str() {
        reflection::V1ALPHA_PATH => reflection::serve(core, reflection::Version::V1alpha, request, responder).await,
        reflection::V1_PATH => reflection::serve(core, reflection::Version::V1, request, responder).await,
        health::CHECK_PATH => health::check(core, request, responder).await,
        health::WATCH_PATH => health::watch(core, request, responder).await,
        _ => End::Status(unknown_path(core, &path)),
    }
}

fn unknown_path(core: &Core, path: &str) -> Status {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if core.router.services().iter().any(|s| s.name == service) {
        Status::new(Code::Unimplemented, format!("Method not found: {service}/{method}"))
    } else {
        Status::new(Code::Unimplemented, format!("Service not found: {service}"))
    }
}

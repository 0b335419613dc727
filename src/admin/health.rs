//! `grpc.health.v1.Health` on the public port. The whole server and every
//! discovered service are SERVING once ready, NOT_SERVING while draining.

use std::rc::Rc;

use crate::dispatch::Request;

use crate::dispatch::End;
use crate::grpc::{Code, Responder, Status};
use crate::proto::grpc::health::v1::{health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse};
use crate::worker::Core;

pub const CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
pub const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

fn status_of(core: &Core, service: &str) -> Option<ServingStatus> {
    let known = service.is_empty()
        || service == "grpc.health.v1.Health"
        || core.router.services().iter().any(|s| s.name == service);
    let serving = super::is_ready(&core.shared) && !core.shutdown.fired();
    known.then_some(if serving { ServingStatus::Serving } else { ServingStatus::NotServing })
}

async fn read_request(core: &Core, request: Request, responder: &Responder) -> Result<HealthCheckRequest, Status> {
    let body = core.request_reader(request.body, responder).single().await?;
    prost::Message::decode(body).map_err(|e| Status::new(Code::InvalidArgument, format!("bad HealthCheckRequest: {e}")))
}

fn response(status: ServingStatus) -> bytes::Bytes {
    prost::Message::encode_to_vec(&HealthCheckResponse { status: status as i32 }).into()
}

pub async fn check(core: &Rc<Core>, request: Request, responder: &mut Responder) -> End {
    let req = match read_request(core, request, responder).await {
        Ok(r) => r,
        Err(status) => return End::Status(status),
    };
    match status_of(core, &req.service) {
        Some(s) => match responder.send_only(response(s)).await {
            Ok(()) => End::ok(),
            Err(_) => End::ClientGone,
        },
        None => End::Status(Status::new(Code::NotFound, format!("unknown service {}", req.service))),
    }
}

/// Sends the current status, then NOT_SERVING when this core shuts down.
pub async fn watch(core: &Rc<Core>, request: Request, responder: &mut Responder) -> End {
    let req = match read_request(core, request, responder).await {
        Ok(r) => r,
        Err(status) => return End::Status(status),
    };
    let Some(current) = status_of(core, &req.service) else {
        return match responder.send(response(ServingStatus::ServiceUnknown)).await {
            Ok(()) => End::ok(),
            Err(_) => End::ClientGone,
        };
    };
    if responder.send(response(current)).await.is_err() {
        return End::ClientGone;
    }
    if current == ServingStatus::Serving {
        monoio::select! {
            _ = core.shutdown.wait() => {}
            _ = responder.reset_by_client() => return End::ClientGone,
        }
        if responder.send(response(ServingStatus::NotServing)).await.is_err() {
            return End::ClientGone;
        }
    }
    End::ok()
}

//! Actions (spec §5.1): each client call becomes one call on the function's
//! `ActionProtocol`, by shape:
//!
//! | client call      | function call       |
//! |------------------|---------------------|
//! | unary            | `handleUnary`       |
//! | server-streaming | `handleStreamedOut` |
//! | client-streaming | `handleStreamedIn`  |
//! | bidi             | `handleStreamed`    |
//!
//! Request bytes become `Any.value` untouched; a reply's `Any.value` goes
//! back untouched. Dropping the function-side call resets its stream, which
//! is how a client's cancellation reaches the function.

use std::{pin::pin, rc::Rc};

use bytes::Bytes;
use crate::http2::{self, client::ResponseFuture};

use super::effects::{decode_response, resolve};
use super::{End, Request};
use crate::discovery::{MethodRoute, Shape};
use crate::entity::metadata;
use crate::grpc::{encode_prost, wait_capacity, Code, MessageReader, Responder};
use crate::proto::cloudstate::{action::ActionCommand, Metadata};
use crate::proto::google::protobuf::Any;
use crate::userfn::{self, upstream_status, CallResponse, Endpoint};
use crate::worker::Core;

/// Serves one client call of an action method.
pub async fn serve(core: &Rc<Core>, route: &MethodRoute, request: Request, responder: &mut Responder) -> End {
    let metadata = metadata::from_headers(&request.head);
    let reader = core.request_reader(request.body, responder);
    let uris = core.action_uris(route.service).expect("action routes have action URIs");
    match route.shape {
        Shape::Unary => Box::pin(unary(core, route, metadata, reader, responder)).await,
        Shape::ServerStreaming => Box::pin(streamed_out(core, route, metadata, reader, &uris.streamed_out, responder)).await,
        Shape::ClientStreaming => Box::pin(streamed(core, route, metadata, reader, &uris.streamed_in, responder)).await,
        Shape::Bidi => Box::pin(streamed(core, route, metadata, reader, &uris.streamed, responder)).await,
    }
}

/// Server-streaming: one command, then the function's answers relayed.
async fn streamed_out(
    core: &Rc<Core>,
    route: &MethodRoute,
    metadata: Metadata,
    reader: MessageReader,
    endpoint: &Endpoint,
    responder: &mut Responder,
) -> End {
    let (payload, _held) = match reader.single_held().await {
        Ok(request) => request,
        Err(status) => return End::Status(status),
    };
    let command = first_command(core, route, Some(payload), metadata);
    match core.pool.open(endpoint, None).await {
        Ok((mut send, response)) => match send.send_data(encode_prost(&command), true) {
            Ok(()) => relay(core, route, response, responder).await,
            Err(e) => End::from_upstream(upstream_status(e)),
        },
        Err(status) => End::from_upstream(status),
    }
}

async fn unary(core: &Rc<Core>, route: &MethodRoute, metadata: Metadata, reader: MessageReader, responder: &mut Responder) -> End {
    let (payload, _held) = match reader.single_held().await {
        Ok(request) => request,
        Err(status) => return End::Status(status),
    };
    let command = first_command(core, route, Some(payload), metadata);
    let uri = &core.action_uris(route.service).expect("action route").unary;
    let work = async {
        let (_, body) = userfn::unary(&core.pool, uri, encode_prost(&command), core.max_message_size()).await?;
        resolve(core, decode_response(body)?, &route.path, 0).await
    };
    super::entity::respond_unary(responder, work).await
}

/// Client-streaming and bidi: the first command names the method, then one
/// command per client message; the function's answers are relayed as they
/// come. If the function ends first, the client's request stream is dropped
/// (cancelled).
async fn streamed(
    core: &Rc<Core>,
    route: &MethodRoute,
    metadata: Metadata,
    mut reader: MessageReader,
    endpoint: &Endpoint,
    responder: &mut Responder,
) -> End {
    let (mut send, response) = match core.pool.open(endpoint, None).await {
        Ok(call) => call,
        Err(status) => return End::from_upstream(status),
    };
    let first = first_command(core, route, None, metadata.clone());
    if let Err(e) = send.send_data(encode_prost(&first), false) {
        return End::from_upstream(upstream_status(e));
    }
    let type_url = &route.input_type_url;
    let pump = async move {
        loop {
            match reader.message().await {
                Ok(Some(payload)) => {
                    let command = ActionCommand {
                        payload: Some(Any { type_url: type_url.clone(), value: payload }),
                        metadata: Some(metadata.clone()),
                        ..ActionCommand::default()
                    };
                    let framed = encode_prost(&command);
                    if wait_capacity(&mut send).await.and_then(|()| send.send_data(framed, false)).is_err() {
                        // The function's side failed; the relay reports why.
                        return Ok(());
                    }
                }
                Ok(None) => {
                    let _ = send.send_data(Bytes::new(), true);
                    return Ok(());
                }
                Err(e) => {
                    send.send_reset(http2::Reason::CANCEL);
                    return Err(e.into_client_status());
                }
            }
        }
    };
    let mut pump = pin!(pump);
    let mut relay = pin!(relay(core, route, response, responder));
    let mut pumping = true;
    loop {
        monoio::select! {
            result = &mut pump, if pumping => {
                pumping = false;
                if let Err(status) = result {
                    return if status.code == Code::Cancelled { End::ClientGone } else { End::Status(status) };
                }
            }
            end = &mut relay => return end,
        }
    }
}

/// Relays the function's `ActionResponse` stream to the client: each reply
/// is sent (forwards resolved first), a failure ends the call with UNKNOWN.
async fn relay(core: &Rc<Core>, route: &MethodRoute, response: ResponseFuture, responder: &mut Responder) -> End {
    let opened = monoio::select! {
        r = CallResponse::open(response, core.max_message_size()) => r,
        _ = responder.reset_by_client() => return End::ClientGone,
    };
    let mut upstream = match opened {
        Ok(r) => r,
        Err(status) => return End::from_upstream(status),
    };
    loop {
        let next = monoio::select! {
            m = upstream.message() => m,
            _ = responder.reset_by_client() => return End::ClientGone,
        };
        let body = match next {
            Ok(Some(body)) => body,
            Ok(None) => return End::ok(),
            Err(status) => return End::from_upstream(status),
        };
        let response = match decode_response(body) {
            Ok(r) => r,
            Err(status) => return End::Status(status),
        };
        match resolve(core, response, &route.path, 0).await {
            Ok(Some(reply)) => {
                if !responder.started() && responder.send_headers(Some(&metadata::to_headers(reply.metadata.as_ref()))).is_err() {
                    return End::ClientGone;
                }
                let payload = reply.payload.map(|p| p.value).unwrap_or_default();
                if let Err(e) = responder.send(payload).await {
                    tracing::debug!(error = %e, "reply not sent while relaying");
                    return End::from_send(e);
                }
            }
            Ok(None) => {}
            Err(status) => return End::from_upstream(status),
        }
    }
}

fn first_command(core: &Core, route: &MethodRoute, payload: Option<Bytes>, metadata: Metadata) -> ActionCommand {
    ActionCommand {
        service_name: core.router.service(route).name.clone(),
        name: route.method.clone(),
        payload: payload.map(|value| Any { type_url: route.input_type_url.clone(), value }),
        metadata: Some(metadata),
    }
}

//! The protocols a client may speak on the public port, each translated to
//! one call through [`dispatch::run`]. Routes are tried in the reference
//! proxy's order:
//!
//! ```text
//! HTTP/2 stream ─┬─ POST application/grpc ────────────► dispatch (gRPC)
//!                └─ anything else ─┐
//! HTTP/1.1 request ────────────────┴─► web: CORS preflight
//!                                         ─► application/grpc-web* ─► grpc_web ─► dispatch
//!                                         ─► google.api.http rule ──► json ─────► dispatch
//!                                         ─► K-Network-Probe
//!                                         ─► 404
//! ```

mod grpc_web;
mod json;
mod web;

use std::{rc::Rc, time::Duration};

use bytes::{Bytes, BytesMut};

use crate::dispatch::{self, Front, Request};
use crate::grpc::{self, budget::Budget, budget::Charge, pipe, wait_capacity, RequestBody, Responder};
use crate::http2::{server::Incoming, Headers, RecvStream, SendStream};
use crate::runtime::deadlines::Deadlines;
use crate::server::http::{respond_text, Closed, HttpRequest, ResponseWriter};
use crate::server::{HttpService, Service};
use crate::worker::Core;

/// Reply bytes a translated call may queue ahead of its client.
const PIPE_LIMIT: usize = 64 * 1024;

impl Service for Core {
    async fn call(self: Rc<Self>, incoming: Incoming, budget: Rc<Budget>) {
        let Incoming { head, recv, send } = incoming;
        let is_grpc = head.get(b":method") == Some(b"POST") && head.get(b"content-type").is_some_and(grpc::is_grpc_content_type);
        if is_grpc {
            // Borrowed from the core's router: no per-call count on the
            // `Arc` every core shares.
            let route = self.router.lookup(head.get_str(b":path").unwrap_or(""));
            let responder = Responder::bounded(send, budget, self.stall());
            return dispatch::run(&self, Front::Grpc, route, Request { head, body: RequestBody::Stream(recv) }, responder).await;
        }
        // Anything else on HTTP/2 is plain HTTP: read whole, then the same
        // fronts as HTTP/1.1.
        let mut writer = H2Writer { send, stall: self.stall() };
        let config = &self.shared.config;
        let read = self.deadlines.within(config.body_timeout, read_body(recv, config.max_http_body, &budget)).await;
        let _ = match read {
            Ok(Ok((body, _held))) => return self.serve_http(HttpRequest { head, body }, &mut writer, &budget).await,
            Ok(Err(BodyError::TooLarge)) => {
                respond_text(&mut writer, 413, format!("request body larger than {} bytes\n", config.max_http_body)).await
            }
            Ok(Err(BodyError::OverBudget)) => respond_text(&mut writer, 503, "connection buffer limit reached\n").await,
            Ok(Err(BodyError::Stream)) => Ok(()),
            Err(()) => respond_text(&mut writer, 408, "request body not complete in time\n").await,
        };
    }
}

impl Core {
    /// How long a reply may wait for its client before the call is dropped.
    fn stall(&self) -> Option<(Rc<Deadlines>, Duration)> {
        Some((self.deadlines.clone(), self.shared.config.send_stall_timeout))
    }

    /// Runs `request` on `route` with a responder into a pipe, and `relay`
    /// reading that pipe, together on this task: the call's replies reach
    /// the relay as they come, and a relay that returns (its client gone)
    /// drops the pipe's reader, which ends the call.
    async fn run_piped<F, Fut>(
        self: &Rc<Self>,
        front: Front,
        route: Option<&crate::discovery::MethodRoute>,
        request: Request,
        budget: &Rc<Budget>,
        relay: F,
    )
    where
        F: FnOnce(pipe::PipeReader) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let (pipe, reader) = pipe::pipe(PIPE_LIMIT);
        let responder = Responder::piped(pipe, budget.clone(), self.stall());
        monoio::join!(dispatch::run(self, front, route, request, responder), relay(reader));
    }
}

/// Why a plain HTTP/2 request body could not be read.
enum BodyError {
    TooLarge,
    OverBudget,
    Stream,
}

/// Reads a whole HTTP/2 request body, charged to the connection's budget
/// while the call holds it.
async fn read_body(mut recv: RecvStream, max: usize, budget: &Rc<Budget>) -> Result<(Bytes, Charge), BodyError> {
    let mut body = BytesMut::new();
    let mut held = Charge::new(budget);
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(|_| BodyError::Stream)?;
        recv.release_capacity(chunk.len());
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        if !held.grow(chunk.len()) {
            return Err(BodyError::OverBudget);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), held))
}

/// A plain HTTP response on an HTTP/2 stream, paced by the client's window.
struct H2Writer {
    send: SendStream,
    stall: Option<(Rc<Deadlines>, Duration)>,
}

impl ResponseWriter for H2Writer {
    fn head(&mut self, status: u16, headers: &Headers, length: Option<usize>) -> Result<(), Closed> {
        let mut head = Headers::with_capacity(64, headers.len() + 2);
        head.push(b":status", status.to_string().as_bytes());
        head.extend(headers);
        if let Some(n) = length.filter(|_| status != 204 && status != 304) {
            head.push(b"content-length", n.to_string().as_bytes());
        }
        self.send.send_head(&[], Some(&head), false).map_err(|_| Closed)
    }

    async fn data(&mut self, mut chunk: Bytes) -> Result<(), Closed> {
        while !chunk.is_empty() {
            if self.send.capacity() == 0 {
                let wait = wait_capacity(&mut self.send);
                match &self.stall {
                    Some((deadlines, t)) => deadlines.within(*t, wait).await.map_err(|()| Closed)?.map_err(|_| Closed)?,
                    None => wait.await.map_err(|_| Closed)?,
                }
            }
            let n = self.send.capacity().min(chunk.len()).max(1);
            self.send.send_data(chunk.split_to(n), false).map_err(|_| Closed)?;
        }
        Ok(())
    }

    async fn end(&mut self) -> Result<(), Closed> {
        self.send.send_data(Bytes::new(), true).map_err(|_| Closed)
    }
}

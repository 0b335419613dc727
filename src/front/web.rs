//! Plain HTTP requests on the public port (HTTP/1.1, or HTTP/2 without a
//! gRPC content type), in the reference proxy's order: gRPC-Web, HTTP/JSON
//! rules, the Knative probe, then 404. Browser origins are checked here
//! once for all of them (CORS).

use std::rc::Rc;

use crate::grpc::budget::Budget;
use crate::http2::Headers;
use crate::server::http::{respond, respond_text, HttpRequest, HttpService, ResponseWriter};
use crate::transcode::Found;
use crate::worker::Core;

use super::{grpc_web, json};

/// Request fields a cross-origin browser call may carry when the preflight
/// does not name them (gRPC-Web's and the usual ones).
const ALLOW_HEADERS: &str = "content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization, accept";
/// Response fields a cross-origin page may read.
const EXPOSE_HEADERS: &str = "grpc-status, grpc-message";
/// How long a browser may cache a preflight answer, seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

impl HttpService for Core {
    fn serve_http<'a, W: ResponseWriter + 'a>(
        self: &'a Rc<Self>,
        request: HttpRequest,
        writer: &'a mut W,
        budget: &'a Rc<Budget>,
    ) -> impl std::future::Future<Output = ()> + 'a {
        async move {
            let cors = match request.header(b"origin") {
                None => Cors::SameOrigin,
                Some(origin) if self.origin_allowed(origin) => Cors::Allowed(origin.to_owned()),
                Some(origin) => Cors::Refused(origin.to_owned()),
            };
            if request.method() == "OPTIONS" && request.header(b"access-control-request-method").is_some() {
                return preflight(writer, &cors, request.header(b"access-control-request-headers")).await;
            }
            if let Cors::Refused(origin) = &cors {
                tracing::debug!(%origin, "cross-origin request from an origin not allowed");
                let _ = respond_text(writer, 403, format!("origin {origin} is not allowed (--cors-allowed-origins)\n")).await;
                return;
            }
            let mut extra = Headers::new();
            cors.write_to(&mut extra);
            if let Some(content_type) = request.header(b"content-type").filter(|t| t.starts_with("application/grpc-web")) {
                let Some(format) = grpc_web::Format::parse(content_type) else {
                    let _ = respond_text(writer, 415, format!("unsupported gRPC-Web content type {content_type}\n")).await;
                    return;
                };
                return grpc_web::serve(self, format, request, extra, writer, budget).await;
            }
            match self.router.http().find(request.method(), request.path()) {
                Found::Route(rule, bindings) => return json::serve(self, rule, bindings, request, extra, writer, budget).await,
                Found::MethodNotAllowed => {
                    let _ = respond_text(writer, 405, format!("{} is not allowed on {}\n", request.method(), request.path())).await;
                    return;
                }
                Found::NotFound => {}
            }
            let _ = match request.header(b"k-network-probe") {
                Some("queue") => respond(writer, 200, &extra, bytes::Bytes::from_static(b"queue")).await,
                Some(other) => respond_text(writer, 400, format!("unexpected K-Network-Probe value {other:?}\n")).await,
                None => {
                    let text = format!("no route for {} {} (this port serves gRPC, gRPC-Web and HTTP/JSON)\n", request.method(), request.path());
                    respond_text(writer, 404, text).await
                }
            };
        }
    }
}

impl Core {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.shared.config.cors_allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// What a request's `Origin` means for its response.
enum Cors {
    /// No `Origin`: not a cross-origin browser call.
    SameOrigin,
    Allowed(String),
    Refused(String),
}

impl Cors {
    /// The fields an allowed cross-origin response carries.
    fn write_to(&self, headers: &mut Headers) {
        if let Cors::Allowed(origin) = self {
            headers.push(b"access-control-allow-origin", origin.as_bytes());
            headers.push(b"access-control-expose-headers", EXPOSE_HEADERS.as_bytes());
            headers.push(b"vary", b"origin");
        }
    }
}

/// Answers a CORS preflight: 204 with what the origin may send (the fields
/// it asked for: an allowed origin may send any metadata), or 403.
async fn preflight<W: ResponseWriter>(writer: &mut W, cors: &Cors, requested: Option<&str>) {
    let _ = match cors {
        Cors::Allowed(origin) => {
            let mut headers = Headers::new();
            headers.push(b"access-control-allow-origin", origin.as_bytes());
            headers.push(b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS");
            headers.push(b"access-control-allow-headers", requested.unwrap_or(ALLOW_HEADERS).as_bytes());
            headers.push(b"access-control-max-age", PREFLIGHT_MAX_AGE.as_bytes());
            headers.push(b"vary", b"origin");
            respond(writer, 204, &headers, bytes::Bytes::new()).await
        }
        Cors::Refused(origin) => respond_text(writer, 403, format!("origin {origin} is not allowed (--cors-allowed-origins)\n")).await,
        Cors::SameOrigin => respond_text(writer, 400, "CORS preflight without Origin\n").await,
    };
}

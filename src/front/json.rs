//! HTTP/JSON calls (`google.api.http` rules): the request becomes the
//! method's protobuf message (see [`crate::transcode`]), goes through the
//! same dispatch as a gRPC call — so it reaches the same entity — and the
//! replies come back as JSON: one body for a unary call, server-sent events
//! or newline-delimited JSON for a stream.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::dispatch::{Front, Request};
use crate::grpc::{budget::Budget, pipe::{Event, PipeReader}, put_frame, Code, RequestBody, Status};
use crate::http2::Headers;
use crate::server::http::{respond, respond_text, HttpRequest, ResponseWriter};
use crate::transcode::{Bindings, HttpRule};
use crate::worker::Core;

/// Fields of the client's request not passed on as call metadata.
const NOT_METADATA: [&[u8]; 3] = [b"content-type", b"content-length", b"accept"];

/// Serves one HTTP/JSON call.
pub async fn serve<W: ResponseWriter>(
    core: &Rc<Core>,
    rule: &HttpRule,
    bindings: Bindings,
    request: HttpRequest,
    extra: Headers,
    writer: &mut W,
    budget: &Rc<Budget>,
) {
    let payload = match rule.request(&bindings, request.query(), request.header(b"content-type"), &request.body) {
        Ok(payload) => payload,
        Err(e) => {
            let _ = respond_text(writer, 400, format!("{e}\n")).await;
            return;
        }
    };
    let route = &core.router.routes()[rule.route_id()];
    let mut head = Headers::with_capacity(64 + route.path.len(), request.head.len());
    head.push(b":method", b"POST");
    head.push(b":path", route.path.as_bytes());
    for (name, value) in request.head.regular().filter(|(n, _)| !NOT_METADATA.contains(n)) {
        head.push(name, value);
    }
    // One copy: the call's body is the message behind its frame header.
    let mut framed = BytesMut::new();
    put_frame(&mut framed, 0, &payload);
    let call = Request { head, body: RequestBody::Complete(framed.freeze()) };
    let stream = if !rule.server_streaming() {
        None
    } else if request.header(b"accept").is_some_and(|a| a.contains("text/event-stream")) {
        Some(Streamed::Sse)
    } else {
        Some(Streamed::Lines)
    };
    core.run_piped(Front::HttpJson, Some(route), call, budget, |reader| async move {
        match stream {
            None => relay_unary(reader, rule, extra, writer).await,
            Some(style) => relay_stream(reader, rule, style, extra, writer).await,
        }
    })
    .await;
}

/// The HTTP status for a call that failed: a function's failure is 500
/// with its description as the body (as the reference proxy answers);
/// transport-level outcomes map as Google's HTTP mapping of gRPC codes.
fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

async fn fail<W: ResponseWriter>(writer: &mut W, status: &Status) {
    let _ = respond_text(writer, http_status(status.code), status.message.clone()).await;
}

async fn relay_unary<W: ResponseWriter>(mut reader: PipeReader, rule: &HttpRule, extra: Headers, writer: &mut W) {
    let (mut metadata, mut reply) = (None, None);
    let status = loop {
        match reader.next().await {
            Event::Head(m) => metadata = m,
            Event::Message(m) => reply = Some(m),
            Event::End(status) => break status,
            Event::Reset(_) => break Status::new(Code::Cancelled, "the call was cancelled"),
        }
    };
    if !status.is_ok() {
        return fail(writer, &status).await;
    }
    let Some(reply) = reply else {
        // A reply with no message (an empty client action).
        return fail(writer, &Status::new(Code::Internal, "the call completed without a reply message")).await;
    };
    match rule.response(&reply) {
        Ok(rendered) => {
            let mut head = Headers::with_capacity(128, 4);
            head.push(b"content-type", rendered.content_type.as_bytes());
            head.extend(&extra);
            if let Some(m) = &metadata {
                head.extend(m);
            }
            let _ = respond(writer, 200, &head, Bytes::from(rendered.body)).await;
        }
        Err(e) => fail(writer, &Status::new(Code::Internal, format!("the reply could not be rendered as JSON: {e}"))).await,
    }
}

/// How a server stream is written.
#[derive(Clone, Copy)]
enum Streamed {
    /// `text/event-stream`: one `data:` event per message.
    Sse,
    /// Newline-delimited JSON (or the raw bytes of `google.api.HttpBody`).
    Lines,
}

async fn relay_stream<W: ResponseWriter>(mut reader: PipeReader, rule: &HttpRule, style: Streamed, extra: Headers, writer: &mut W) {
    let mut started = false;
    let mut metadata = None;
    loop {
        let mut out = BytesMut::new();
        let mut content_type = None;
        let mut end = None;
        let mut event = Some(reader.next().await);
        while let Some(e) = event.take() {
            match e {
                Event::Head(m) => metadata = m,
                Event::Message(m) => match rule.response(&m) {
                    Ok(rendered) => {
                        match style {
                            Streamed::Sse => {
                                out.extend_from_slice(b"data: ");
                                out.extend_from_slice(&rendered.body);
                                out.extend_from_slice(b"\n\n");
                            }
                            Streamed::Lines if rendered.content_type.starts_with("application/json") => {
                                out.extend_from_slice(&rendered.body);
                                out.extend_from_slice(b"\n");
                            }
                            Streamed::Lines => out.extend_from_slice(&rendered.body),
                        }
                        content_type.get_or_insert(rendered.content_type);
                    }
                    Err(e) => end = Some(Status::new(Code::Internal, format!("a reply could not be rendered as JSON: {e}"))),
                },
                Event::End(status) => end = Some(status),
                Event::Reset(_) => end = Some(Status::new(Code::Cancelled, "the call was cancelled")),
            }
            if end.is_none() {
                event = reader.try_next();
            }
        }
        if !started {
            if let Some(status) = end.as_ref().filter(|s| !s.is_ok() && out.is_empty()) {
                return fail(writer, status).await;
            }
            let mut head = Headers::with_capacity(128, 4);
            let content_type = match style {
                Streamed::Sse => "text/event-stream".into(),
                Streamed::Lines => content_type.unwrap_or("application/x-ndjson".into()),
            };
            head.push(b"content-type", content_type.as_bytes());
            head.extend(&extra);
            if let Some(m) = metadata.take() {
                head.extend(&m);
            }
            if writer.head(200, &head, None).is_err() {
                return;
            }
            started = true;
        }
        if let (Some(status), Streamed::Sse) = (&end, style) {
            if !status.is_ok() {
                out.extend_from_slice(format!("event: error\ndata: {}\n\n", status.message.replace('\n', " ")).as_bytes());
            }
        }
        if !out.is_empty() && writer.data(out.freeze()).await.is_err() {
            return;
        }
        if end.is_some() {
            let _ = writer.end().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_http_statuses() {
        assert_eq!(http_status(Code::Unknown), 500, "a function's failure");
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::Unavailable), 503);
        assert_eq!(http_status(Code::DeadlineExceeded), 504);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
    }
}

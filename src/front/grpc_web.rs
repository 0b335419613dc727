//! gRPC-Web (binary and base64 text) over HTTP/1.1 or HTTP/2: the request
//! body is gRPC framing already; the reply goes out as framed messages and
//! the trailers as one last frame (flag 0x80) in the body, which is what
//! lets browsers, which cannot read HTTP trailers, get the status.

use std::rc::Rc;

use base64::Engine;
use bytes::{Bytes, BytesMut};

use crate::dispatch::{Front, Request};
use crate::grpc::{budget::Budget, pipe::{Event, PipeReader}, put_frame, Code, RequestBody, Status};
use crate::http2::Headers;
use crate::server::http::{respond_text, HttpRequest, ResponseWriter};
use crate::worker::Core;

/// Flag of the frame that carries the trailers.
const TRAILER_FLAG: u8 = 0x80;

/// The two encodings of a gRPC-Web body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Binary,
    /// Base64 of the binary form; replies as padded base64 per write.
    Text,
}

impl Format {
    /// From a request content type; `None` for codecs other than protobuf.
    pub fn parse(content_type: &str) -> Option<Format> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/grpc-web" | "application/grpc-web+proto" => Some(Format::Binary),
            "application/grpc-web-text" | "application/grpc-web-text+proto" => Some(Format::Text),
            _ => None,
        }
    }

    fn content_type(self) -> &'static [u8] {
        match self {
            Format::Binary => b"application/grpc-web+proto",
            Format::Text => b"application/grpc-web-text+proto",
        }
    }
}

/// Decodes a text body: base64, possibly several padded pieces one after
/// another (clients may encode each write on its own).
pub fn decode_text(body: &[u8]) -> Result<Bytes, base64::DecodeError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut rest = body;
    while !rest.is_empty() {
        let end = match rest.iter().position(|&b| b == b'=') {
            Some(i) => i + rest[i..].iter().take_while(|&&b| b == b'=').count(),
            None => rest.len(),
        };
        engine.decode_vec(&rest[..end], &mut out)?;
        rest = &rest[end..];
    }
    Ok(out.into())
}

/// Serves one gRPC-Web call.
pub async fn serve<W: ResponseWriter>(
    core: &Rc<Core>,
    format: Format,
    request: HttpRequest,
    extra: Headers,
    writer: &mut W,
    budget: &Rc<Budget>,
) {
    if request.method() != "POST" {
        let _ = respond_text(writer, 405, "gRPC-Web calls are POST\n").await;
        return;
    }
    let HttpRequest { head, body } = request;
    let body = match format {
        Format::Binary => body,
        Format::Text => match decode_text(&body) {
            Ok(body) => body,
            Err(e) => {
                let _ = respond_text(writer, 400, format!("gRPC-Web text body is not base64: {e}\n")).await;
                return;
            }
        },
    };
    let route = core.router.lookup(head.get_str(b":path").unwrap_or(""));
    let call = Request { head, body: RequestBody::Complete(body) };
    core.run_piped(Front::GrpcWeb, route, call, budget, |reader| relay(reader, format, extra, writer)).await;
}

/// Writes the call's events as they come; what is ready at once goes out
/// in one write, so a unary reply is a single response with a length.
async fn relay<W: ResponseWriter>(mut reader: PipeReader, format: Format, extra: Headers, writer: &mut W) {
    let mut started = false;
    let mut metadata = None;
    loop {
        let mut frames = BytesMut::new();
        let mut done = false;
        let mut event = Some(reader.next().await);
        while let Some(e) = event.take() {
            match e {
                Event::Head(m) => metadata = m,
                Event::Message(m) => put_frame(&mut frames, 0, &m),
                Event::End(status) => {
                    put_trailers(&mut frames, &status);
                    done = true;
                }
                Event::Reset(_) => {
                    put_trailers(&mut frames, &Status::new(Code::Cancelled, "the call was cancelled"));
                    done = true;
                }
            }
            if !done {
                event = reader.try_next();
            }
        }
        let chunk = match format {
            Format::Binary => frames.freeze(),
            Format::Text => base64::engine::general_purpose::STANDARD.encode(&frames).into(),
        };
        if !started {
            let mut head = Headers::with_capacity(128, 4);
            head.push(b"content-type", format.content_type());
            head.extend(&extra);
            if let Some(m) = metadata.take() {
                head.extend(&m);
            }
            if writer.head(200, &head, done.then_some(chunk.len())).is_err() {
                return;
            }
            started = true;
        }
        if writer.data(chunk).await.is_err() {
            return;
        }
        if done {
            let _ = writer.end().await;
            return;
        }
    }
}

/// The trailer frame: the status as HTTP/1-style header lines.
fn put_trailers(out: &mut BytesMut, status: &Status) {
    let mut text = Vec::with_capacity(64);
    for (name, value) in status.to_headers().regular() {
        text.extend_from_slice(name);
        text.extend_from_slice(b":");
        text.extend_from_slice(value);
        text.extend_from_slice(b"\r\n");
    }
    put_frame(out, TRAILER_FLAG, &text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(Format::parse("application/grpc-web"), Some(Format::Binary));
        assert_eq!(Format::parse("application/grpc-web+proto; charset=x"), Some(Format::Binary));
        assert_eq!(Format::parse("application/grpc-web-text"), Some(Format::Text));
        assert_eq!(Format::parse("application/grpc-web-text+proto"), Some(Format::Text));
        assert_eq!(Format::parse("application/grpc-web+json"), None);
    }

    #[test]
    fn text_bodies_may_be_several_padded_pieces() {
        let b64 = &base64::engine::general_purpose::STANDARD;
        let joined = format!("{}{}{}", b64.encode(b"ab"), b64.encode(b"cde"), b64.encode(b"f"));
        assert_eq!(&decode_text(joined.as_bytes()).unwrap()[..], b"abcdef");
        assert_eq!(&decode_text(b64.encode(b"abc").as_bytes()).unwrap()[..], b"abc");
        assert!(decode_text(b"a*b=").is_err());
    }

    #[test]
    fn trailers_frame() {
        let mut out = BytesMut::new();
        put_trailers(&mut out, &Status::new(Code::NotFound, "no such cart"));
        assert_eq!(out[0], TRAILER_FLAG);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len, out.len() - 5);
        let text = std::str::from_utf8(&out[5..]).unwrap();
        assert!(text.contains("grpc-status:5\r\n") && text.contains("grpc-message:no such cart\r\n"), "{text}");
    }
}

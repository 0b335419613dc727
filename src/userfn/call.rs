//! Reading a gRPC response from the user function.

use bytes::Bytes;

use super::pool::Endpoint;
use crate::grpc::{Code, MessageReader, ReadError, Status};
use crate::http2::{self, client::ResponseFuture, Headers, Reason};

/// Maps an HTTP/2 failure on a user-function call to the status the client
/// sees. A reset with CANCEL from the function keeps the code `Cancelled`,
/// which callers turn back into a reset of the client's stream.
pub fn upstream_status(e: http2::Error) -> Status {
    if e.is_reset() && e.reason() == Some(Reason::CANCEL) && e.is_remote() {
        return Status::new(Code::Cancelled, "user function cancelled the call");
    }
    Status::new(Code::Unavailable, format!("user function call failed: {e}"))
}

/// The response half of a call to the user function.
pub struct CallResponse {
    headers: Headers,
    reader: Option<MessageReader>,
}

/// Why a response failed: the other side answered with a status, or the
/// stream under it broke (then the call may or may not have run there).
pub enum CallError {
    Answered(Status),
    Broken(http2::Error),
}

impl CallError {
    pub fn into_status(self) -> Status {
        match self {
            CallError::Answered(status) => status,
            CallError::Broken(e) => upstream_status(e),
        }
    }
}

impl From<Status> for CallError {
    fn from(status: Status) -> CallError {
        CallError::Answered(status)
    }
}

impl CallResponse {
    /// Waits for the response headers. A trailers-only error response becomes
    /// `Err` here.
    pub async fn open(response: ResponseFuture, max_message_size: usize) -> Result<CallResponse, Status> {
        CallResponse::start(response, max_message_size).await.map_err(CallError::into_status)
    }

    /// [`CallResponse::open`], telling a broken stream from an answer.
    pub async fn start(response: ResponseFuture, max_message_size: usize) -> Result<CallResponse, CallError> {
        let response = response.await.map_err(CallError::Broken)?;
        if response.status() != 200 {
            return Err(Status::new(
                Code::Unavailable,
                format!("user function answered HTTP {} instead of gRPC", response.status()),
            )
            .into());
        }
        if let Some(status) = Status::from_headers(&response.head) {
            if !status.is_ok() {
                return Err(status.into());
            }
            return Ok(CallResponse { headers: response.head, reader: None });
        }
        Ok(CallResponse { headers: response.head, reader: Some(MessageReader::new(response.body, max_message_size)) })
    }

    /// Frees the response headers, for a stream that outlives its head (an
    /// entity's, open as long as the entity is active).
    pub fn without_headers(self) -> CallResponse {
        CallResponse { headers: Headers::new(), ..self }
    }

    /// Response headers (the function's reply metadata lives here).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The next message; `Ok(None)` at a clean end with status OK, `Err` with
    /// the function's status otherwise.
    pub async fn message(&mut self) -> Result<Option<Bytes>, Status> {
        self.next().await.map_err(CallError::into_status)
    }

    /// [`CallResponse::message`], telling a broken stream from an answer.
    pub async fn next(&mut self) -> Result<Option<Bytes>, CallError> {
        let Some(reader) = self.reader.as_mut() else { return Ok(None) };
        match reader.message().await {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(ReadError::Stream(e)) => return Err(CallError::Broken(e)),
            Err(ReadError::Frame(e)) => {
                return Err(Status::new(Code::Internal, format!("user function sent a malformed frame: {e}")).into())
            }
            // Function replies are read without a budget or timeout.
            Err(e @ (ReadError::Incomplete(_) | ReadError::OverBudget)) => return Err(e.into_client_status().into()),
        }
        let trailers = reader.trailers().await.map_err(CallError::Broken)?;
        self.reader = None;
        match trailers.as_ref().and_then(Status::from_headers) {
            Some(s) if s.is_ok() => Ok(None),
            Some(s) => Err(s.into()),
            None => Err(Status::new(Code::Internal, "user function response ended without grpc-status").into()),
        }
    }
}

/// One unary call: sends an already framed request, returns the response
/// headers and the single response message.
pub async fn unary(
    pool: &super::Pool,
    endpoint: &Endpoint,
    framed_request: Bytes,
    max_message_size: usize,
) -> Result<(Headers, Bytes), Status> {
    let (mut send, response) = pool.open(endpoint, None).await?;
    send.send_data(framed_request, true).map_err(upstream_status)?;
    let mut response = CallResponse::open(response, max_message_size).await?;
    let Some(message) = response.message().await? else {
        return Err(Status::new(Code::Internal, "user function replied without a message"));
    };
    if response.message().await?.is_some() {
        return Err(Status::new(Code::Internal, "user function sent several messages on a unary call"));
    }
    Ok((response.headers, message))
}

//! The proxy's side of the user-function connection: a small per-core pool
//! of HTTP/2 connections (TCP or Unix socket) and gRPC calls over them.
//!
//! Each core owns its pool, so no connection or stream state is shared
//! between cores. Streams are spread round-robin across the pool; a pool
//! whose connections are all at the function's `MAX_CONCURRENT_STREAMS`
//! opens another, up to its limit.

mod call;
mod pool;

pub use call::{unary, upstream_status, CallError, CallResponse};
pub use pool::{Endpoint, Pool, Target};

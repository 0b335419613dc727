//! The proxy's side of the user-function connection: a small per-core pool
//! of h2 connections (TCP or Unix socket) and gRPC calls over them.
//!
//! Each core owns its pool, so no connection or stream state is shared
//! between cores. Streams are spread round-robin across the pool, and h2's
//! `ready()` makes a call wait for a free stream slot, which is how the
//! function's `MAX_CONCURRENT_STREAMS` is respected.

mod call;
mod pool;

pub use call::{unary, upstream_status, CallResponse};
pub use pool::{Pool, Target};

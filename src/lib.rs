//! Massa: a thread-per-core Cloudstate sidecar proxy.
//!
//! # Architecture
//!
//! The main thread is the control plane: it loads the configuration, starts
//! the admin port, discovers the user function once, then starts one worker
//! per core and waits for a signal. Each worker owns a pinned monoio
//! executor (io_uring, or epoll where io_uring is unavailable) and
//! everything its calls need; workers share only the immutable routing table
//! (`Arc<Router>`) and talk to the control plane over channels.
//!
//! # Request lifecycle
//!
//! ```text
//! client ─► server (SO_REUSEPORT listener of core N, TLS, protocol
//!            sniffing; HTTP/2 or HTTP/1.1)
//!        ─► front (gRPC as is; gRPC-Web and HTTP/JSON translated to one
//!           call, replies read back through an in-process pipe)
//!        ─► dispatch (route by path, deadline, metrics)
//!        ─► dispatch::action (wrap bytes as Any, call ActionProtocol on
//!           core N's user-function pool)
//!           or dispatch::entity ─► dispatch::route (read the entity id from
//!           the bytes; run the command on the owning core, crossing over
//!           once by mailbox) ─► entity::stateful / entity::crdt (decide,
//!           persist through that core's storage thread, answer)
//!        ─► dispatch::effects (side effects, then reply / failure / forward)
//!        ─► grpc::Responder (message, trailers)
//! ```
//!
//! # Module map
//!
//! - [`config`]: flags, environment, config file.
//! - [`runtime`]: executors, pinning, drivers, the shutdown notifier.
//! - [`worker`]: one core's state and its control messages.
//! - [`server`]: listeners, TLS, protocol detection, HTTP/2 and HTTP/1.1 connections.
//! - [`front`]: the protocols of the public port (gRPC, gRPC-Web, HTTP/JSON), CORS.
//! - [`http2`]: our HTTP/2 (both roles), HPACK.
//! - [`grpc`]: framing, status, message streams (both directions).
//! - [`dispatch`]: the per-call lifecycle, and the one place that decides
//!   where a command goes (action, local core, other core) and runs
//!   forwards and side effects.
//! - [`discovery`]: `discover`, spec validation, the routing table.
//! - [`userfn`]: h2 client pool to the user function.
//! - [`entity`]: event-sourced, value and CRDT entities (decide and
//!   persist; they see only [`entity::Context`]), entity keys, the per-core
//!   hot cache.
//! - [`crdt`]: the CRDT types the proxy owns for CRDT entities: deltas,
//!   initial deltas, storage encoding, merge.
//! - [`shard`]: which core owns an entity; cross-core mailboxes.
//! - [`store`]: RocksDB, PostgreSQL and in-memory stores, storage threads,
//!   group commit; [`store::lease`]: shard leases with fencing (PostgreSQL).
//! - [`cluster`]: membership (gossip) and placement of lease shards on
//!   members (rendezvous hashing).
//! - [`eventing`]: event-log consumers (events as action commands, stored
//!   offsets).
//! - [`transcode`]: HTTP/JSON transcoding rules, requests and replies.
//! - [`admin`]: admin HTTP port, metrics, gRPC health and reflection.
//! - [`proto`]: generated protocol types.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod crdt;
pub mod discovery;
pub mod dispatch;
pub mod entity;
pub mod eventing;
pub mod front;
pub mod grpc;
pub mod http2;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod store;
pub mod telemetry;
pub mod transcode;
pub mod userfn;
pub mod worker;

mod app;

pub use app::run;

//! Proxy-to-proxy forwarding: an entity command whose shard another proxy
//! owns (by the cluster's placement) goes there as the same gRPC call on
//! that proxy's public port, marked so it is served there and never sent
//! on again. One pool of HTTP/2 connections per peer per core.

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};

use crate::cluster::{Cluster, Members};
use crate::discovery::MethodRoute;
use crate::entity::stateful::{Answer, StreamSink};
use crate::entity::Outcome;
use crate::grpc::{self, Code, Status};
use crate::http2::{client::ResponseFuture, Headers, Reason, SendStream};
use crate::proto::cloudstate::Reply;
use crate::proto::google::protobuf::Any;
use crate::userfn::{upstream_status, CallError, CallResponse, Pool, Target};

/// The request header that marks a forwarded call (its value: the proxy
/// that forwarded it).
pub const FORWARDED: &[u8] = b"massa-forwarded";

/// Connections per peer a core opens at most.
const PEER_CONNECTIONS: usize = 4;

/// One core's view of the cluster and its connections to the peers.
pub struct Peers {
    cluster: Arc<Cluster>,
    /// The placement last read, and the cluster version it was read at.
    seen: RefCell<(u64, Arc<Members>)>,
    pools: RefCell<HashMap<String, Rc<Pool>>>,
    forwarded: std::cell::Cell<u64>,
    /// A forward not answered within this fails UNAVAILABLE (a peer cut
    /// off holds its connections open without answering). Not retried: the
    /// peer may have run it.
    timeout: Duration,
}

impl Peers {
    pub fn new(cluster: Arc<Cluster>, timeout: Duration) -> Peers {
        let seen = RefCell::new((cluster.version(), cluster.members()));
        Peers { cluster, seen, pools: RefCell::default(), forwarded: Default::default(), timeout }
    }

    /// Calls forwarded from this core since start.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.get()
    }

    /// Whether `id` is another live member of the cluster.
    pub fn is_peer(&self, id: &str) -> bool {
        id != self.cluster.self_id() && self.members().members().iter().any(|m| m.id == id)
    }

    /// The placement now: one relaxed load when nothing changed.
    fn members(&self) -> Arc<Members> {
        let version = self.cluster.version();
        let mut seen = self.seen.borrow_mut();
        if seen.0 != version {
            *seen = (version, self.cluster.members());
        }
        seen.1.clone()
    }

    /// The proxy that owns `shard`, if it is not this one.
    pub fn remote_owner(&self, shard: u32) -> Option<String> {
        let members = self.members();
        if members.members().len() < 2 || shard >= members.shards() || members.is_self(shard) {
            return None;
        }
        Some(members.owner(shard).to_owned())
    }

    fn pool(&self, peer: &str) -> Result<Rc<Pool>, Status> {
        if let Some(pool) = self.pools.borrow().get(peer) {
            return Ok(pool.clone());
        }
        let (host, port) = peer
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_start_matches('[').trim_end_matches(']').to_owned(), p.parse().ok()?)))
            .ok_or_else(|| Status::new(Code::Internal, format!("cluster member {peer:?} is not host:port")))?;
        let pool = Rc::new(Pool::growing(Target::Tcp { host, port }, 1, PEER_CONNECTIONS).to_proxy());
        self.pools.borrow_mut().insert(peer.to_owned(), pool.clone());
        Ok(pool)
    }

    /// Runs `route` with `payload` on `peer`; its reply (side effects and
    /// forwards already run there) becomes this call's answer. Failing
    /// before the request left, or refused by the peer, it is UNAVAILABLE
    /// (the command did not run; it may be tried elsewhere). Once the
    /// request is out, a broken stream or no answer within the timeout is
    /// DEADLINE_EXCEEDED: the peer may have run it, so it is not retried.
    pub async fn call(&self, peer: &str, route: &MethodRoute, payload: Bytes, max: usize) -> Result<Answer, Status> {
        self.forwarded.set(self.forwarded.get() + 1);
        let deadline = Instant::now() + self.timeout;
        let (_send, response) = self.send(peer, route, payload).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, read(response, max)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(peer_failure(peer, e)),
            Err(_) => Err(Status::new(
                Code::DeadlineExceeded,
                format!("outcome unknown: proxy {peer} did not answer a forwarded command within {:?}; it may have run there", self.timeout),
            )),
        }
    }

    /// Runs a server-streamed `route` (a CRDT's streamed command) on `peer`,
    /// relaying each message it sends to `sink` until the peer ends the
    /// call (its status the stream's last answer) or the caller goes (then
    /// the peer's stream is cancelled, which cancels the command there).
    /// Failures are told apart as for [`Peers::call`]; an open stream has
    /// no deadline.
    pub async fn relay(&self, peer: &str, route: &MethodRoute, payload: Bytes, max: usize, mut sink: StreamSink) {
        self.forwarded.set(self.forwarded.get() + 1);
        let (mut send, response) = match self.send(peer, route, payload).await {
            Ok(sent) => sent,
            Err(status) => return end(sink, status),
        };
        let opened = monoio::select! {
            opened = CallResponse::start(response, max) => opened,
            _ = gone(&mut sink) => return send.send_reset(Reason::CANCEL),
        };
        let mut response = match opened {
            Ok(response) => response,
            Err(e) => return end(sink, peer_failure(peer, e)),
        };
        loop {
            let next = monoio::select! {
                next = response.next() => next,
                _ = gone(&mut sink) => return send.send_reset(Reason::CANCEL),
            };
            match next {
                Ok(Some(message)) => {
                    // False: the caller is gone or too slow; dropping the
                    // response cancels the peer's stream.
                    if !sink.push(Ok(answer(Some(message)))) {
                        return send.send_reset(Reason::CANCEL);
                    }
                }
                Ok(None) => return,
                Err(e) => return end(sink, peer_failure(peer, e)),
            }
        }
    }

    /// Opens the call on `peer` and sends the request, within the timeout;
    /// failing, nothing was sent (UNAVAILABLE).
    async fn send(&self, peer: &str, route: &MethodRoute, payload: Bytes) -> Result<(SendStream, ResponseFuture), Status> {
        match monoio::time::timeout(self.timeout, self.open(peer, route, payload)).await {
            Ok(sent) => sent,
            Err(_) => Err(Status::new(
                Code::Unavailable,
                format!("proxy {peer} did not take a forwarded command within {:?} (the command was not sent)", self.timeout),
            )),
        }
    }

    async fn open(&self, peer: &str, route: &MethodRoute, payload: Bytes) -> Result<(SendStream, ResponseFuture), Status> {
        let pool = self.pool(peer)?;
        // The pool's errors name the proxy and its address.
        let unsent = |s: Status| Status::new(Code::Unavailable, format!("not forwarded: {}", s.message));
        let endpoint = pool.endpoint(&route.path);
        let mut mark = Headers::new();
        mark.push(FORWARDED, self.cluster.self_id().as_bytes());
        let (mut send, response) = pool.open(&endpoint, Some(&mark)).await.map_err(unsent)?;
        let mut framed = BytesMut::with_capacity(5 + payload.len());
        grpc::put_frame(&mut framed, 0, &payload);
        // The peer runs nothing before the request's end arrives.
        send.send_data(framed.freeze(), true).map_err(|e| unsent(upstream_status(e)))?;
        Ok((send, response))
    }
}

/// What a forwarded command's failure tells the caller: the peer's own
/// answer as it is (an UNAVAILABLE one naming the peer), a stream the peer
/// refused unprocessed as UNAVAILABLE, any other broken stream as outcome
/// unknown.
fn peer_failure(peer: &str, e: CallError) -> Status {
    match e {
        CallError::Answered(s) if s.code == Code::Unavailable => Status::new(s.code, format!("via proxy {peer}: {}", s.message)),
        CallError::Answered(s) => s,
        CallError::Broken(e) if e.reason() == Some(Reason::REFUSED_STREAM) => {
            Status::new(Code::Unavailable, format!("proxy {peer} refused the forwarded command unprocessed: {e}"))
        }
        CallError::Broken(e) => Status::new(
            Code::DeadlineExceeded,
            format!("outcome unknown: the connection to proxy {peer} failed after the command was sent ({e}); it may have run there"),
        ),
    }
}

/// The peer's answer to a forwarded command.
async fn read(response: ResponseFuture, max: usize) -> Result<Answer, CallError> {
    let mut response = CallResponse::start(response, max).await?;
    let message = response.next().await?;
    // The trailers' status, once the message is read.
    while response.next().await?.is_some() {}
    Ok(answer(message))
}

/// A peer's reply message as an answer: its side effects and forwards
/// already ran there.
fn answer(message: Option<Bytes>) -> Answer {
    let reply = message.map(|value| Reply { payload: Some(Any { type_url: String::new(), value }), metadata: None });
    Answer { side_effects: Vec::new(), outcome: reply.map_or(Outcome::Nothing, Outcome::Reply) }
}

/// Ends a relayed stream with `status` (lost if the caller has gone).
fn end(sink: StreamSink, status: Status) {
    let _ = sink.push(Err(status));
}

/// Resolves once the caller of a streamed call has gone.
async fn gone(sink: &mut StreamSink) {
    std::future::poll_fn(|cx| if sink.poll_gone(cx) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }).await
}

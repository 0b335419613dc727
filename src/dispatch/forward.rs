//! Proxy-to-proxy forwarding: an entity command whose shard another proxy
//! owns (by the cluster's placement) goes there as the same gRPC call on
//! that proxy's public port, marked so it is served there and never sent
//! on again. One pool of HTTP/2 connections per peer per core.

use std::{cell::RefCell, collections::HashMap, rc::Rc, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};

use crate::cluster::{Cluster, Members};
use crate::discovery::MethodRoute;
use crate::entity::stateful::Answer;
use crate::entity::Outcome;
use crate::grpc::{self, Code, Status};
use crate::http2::Headers;
use crate::proto::cloudstate::Reply;
use crate::proto::google::protobuf::Any;
use crate::userfn::{upstream_status, CallResponse, Pool, Target};

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
        let pool = Rc::new(Pool::growing(Target::Tcp { host, port }, 1, PEER_CONNECTIONS));
        self.pools.borrow_mut().insert(peer.to_owned(), pool.clone());
        Ok(pool)
    }

    /// Runs `route` with `payload` on `peer`; its reply (side effects and
    /// forwards already run there) becomes this call's answer.
    pub async fn call(&self, peer: &str, route: &MethodRoute, payload: Bytes, max: usize) -> Result<Answer, Status> {
        self.forwarded.set(self.forwarded.get() + 1);
        match monoio::time::timeout(self.timeout, self.exchange(peer, route, payload, max)).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::new(Code::Unavailable, format!("proxy {peer} did not answer a forwarded command within {:?}", self.timeout))),
        }
    }

    async fn exchange(&self, peer: &str, route: &MethodRoute, payload: Bytes, max: usize) -> Result<Answer, Status> {
        let pool = self.pool(peer)?;
        let via = |s: Status| if s.code == Code::Unavailable { Status::new(s.code, format!("via proxy {peer}: {}", s.message)) } else { s };
        let endpoint = pool.endpoint(&route.path);
        let mut mark = Headers::new();
        mark.push(FORWARDED, self.cluster.self_id().as_bytes());
        let (mut send, response) = pool.open(&endpoint, Some(&mark)).await.map_err(via)?;
        let mut framed = BytesMut::with_capacity(5 + payload.len());
        grpc::put_frame(&mut framed, 0, &payload);
        send.send_data(framed.freeze(), true).map_err(|e| via(upstream_status(e)))?;
        let mut response = CallResponse::open(response, max).await.map_err(via)?;
        let message = response.message().await.map_err(via)?;
        // The trailers' status, once the message is read.
        while response.message().await.map_err(via)?.is_some() {}
        let reply = message.map(|value| Reply { payload: Some(Any { type_url: String::new(), value }), metadata: None });
        Ok(Answer { side_effects: Vec::new(), outcome: reply.map_or(Outcome::Nothing, Outcome::Reply) })
    }
}

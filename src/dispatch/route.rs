//! Where an entity command goes: the one place that decides. The entity id
//! is read from the request bytes; the command then runs on the proxy that
//! owns its shard (by the cluster's placement, [`super::forward`]), on the
//! core of that proxy that owns the key ([`crate::shard`], crossing over
//! as an [`Envelope`]).

use std::rc::Rc;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::discovery::MethodRoute;
use crate::entity::key;
use crate::entity::stateful::{self, Answer, Reply, StreamAnswers};
use crate::grpc::{Code, Status};
use crate::shard::{self, Envelope};
use crate::store::lease;
use crate::worker::Core;

/// Where a command came from: a call another proxy forwarded is served
/// here, never sent on (one hop).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    First,
    Forwarded,
}

/// Runs one command for an entity method to its answer. A first attempt
/// refused (UNAVAILABLE) is tried once more where the refusal or the
/// placement now points: the proxy holding the lease (a placement not yet
/// settled, a hand-off under way), or the owner the placement moved to.
pub async fn call(core: &Rc<Core>, route: &MethodRoute, payload: Bytes, hop: Hop) -> Result<Answer, Status> {
    let entity_id = extract(route, &payload)?;
    if hop == Hop::Forwarded {
        return attempt(core, route, &entity_id, payload, None).await;
    }
    let first = remote_owner(core, route, &entity_id);
    let status = match attempt(core, route, &entity_id, payload.clone(), first.as_deref()).await {
        Err(status) if status.code == Code::Unavailable => status,
        answer => return answer,
    };
    // Only a live member: a holder gossip does not know may not be reachable.
    let holder = lease::holder_named_in(&status).filter(|h| core.peers.is_peer(h)).map(str::to_owned);
    let next = holder.or_else(|| remote_owner(core, route, &entity_id));
    if next == first {
        return Err(status);
    }
    tracing::debug!(entity = %entity_id, from = ?first, to = ?next, %status, "retrying once where the owner is now");
    attempt(core, route, &entity_id, payload, next.as_deref()).await
}

async fn attempt(core: &Rc<Core>, route: &MethodRoute, entity_id: &str, payload: Bytes, peer: Option<&str>) -> Result<Answer, Status> {
    if let Some(peer) = peer {
        return core.peers.call(peer, route, payload, core.max_message_size()).await;
    }
    let (reply, answer) = oneshot::channel();
    local(core, route, entity_id.to_owned(), payload, Reply::Once(reply)).await;
    answer.await.map_err(|_| stateful::terminated())?
}

/// Starts a streamed command (CRDT entities' server-streaming methods) on
/// the proxy that owns the entity: here, or relayed from its owner. A
/// stream is not retried elsewhere: its refusal is its answer.
pub async fn call_streamed(core: &Rc<Core>, route: &MethodRoute, payload: Bytes, hop: Hop) -> StreamAnswers {
    let (sink, answers) = stateful::streamed();
    let entity_id = match extract(route, &payload) {
        Ok(entity_id) => entity_id,
        Err(status) => {
            Reply::Stream(sink).finish(Err(status));
            return answers;
        }
    };
    match remote_owner(core, route, &entity_id).filter(|_| hop == Hop::First) {
        Some(peer) => {
            let (core, id) = (core.clone(), route.id);
            monoio::spawn(async move {
                let route = &core.router.routes()[id];
                core.peers.relay(&peer, route, payload, core.max_message_size(), sink).await
            });
        }
        None => local(core, route, entity_id, payload, Reply::Stream(sink)).await,
    }
    answers
}

fn extract(route: &MethodRoute, payload: &[u8]) -> Result<String, Status> {
    key::extract(payload, &route.key_fields).map_err(|e| Status::new(Code::InvalidArgument, format!("{}: {e}", route.path)))
}

/// The other proxy that owns the entity's shard, when there is one.
fn remote_owner(core: &Core, route: &MethodRoute, entity_id: &str) -> Option<String> {
    let leases = core.leases.as_ref()?;
    let svc = core.router.service(route);
    core.peers.remote_owner(leases.shard_of(&svc.persistence_id, entity_id))
}

/// Hands a command to its entity on the owning core; failures go to `reply`.
async fn local(core: &Rc<Core>, route: &MethodRoute, entity_id: String, payload: Bytes, reply: Reply) {
    let svc = core.router.service(route);
    let owner = shard::owner(&svc.persistence_id, &entity_id, core.mailboxes.len());
    if owner == core.id {
        return stateful::submit(&core.ctx, route.id, entity_id, payload, reply).await;
    }
    if let Err(e) = core.mailboxes[owner].send_async(Envelope { route: route.id, entity_id, payload, reply }).await {
        e.into_inner().reply.finish(Err(Status::new(Code::Unavailable, "the owning core has stopped")));
    }
}

/// Runs the commands other cores route to this one.
pub async fn serve_mailbox(core: Rc<Core>, inbox: flume::Receiver<Envelope>) {
    while let Ok(env) = inbox.recv_async().await {
        let ctx = core.ctx.clone();
        monoio::spawn(async move { stateful::submit(&ctx, env.route, env.entity_id, env.payload, env.reply).await });
    }
}

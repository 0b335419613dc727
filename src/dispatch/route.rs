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
use crate::worker::Core;

/// Where a command came from: a call another proxy forwarded is served
/// here, never sent on (one hop).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    First,
    Forwarded,
}

/// Runs one command for an entity method to its answer. A command that
/// another proxy refused or could not take (UNAVAILABLE) is tried once
/// more if the placement moved meanwhile.
pub async fn call(core: &Rc<Core>, route: &MethodRoute, payload: Bytes, hop: Hop) -> Result<Answer, Status> {
    let entity_id = extract(route, &payload)?;
    let owner = |core: &Core| if hop == Hop::First { remote_owner(core, route, &entity_id) } else { None };
    let first = owner(core);
    let answer = attempt(core, route, &entity_id, payload.clone(), first.as_deref()).await;
    match answer {
        Err(status) if status.code == Code::Unavailable => {
            let now = owner(core);
            if now == first {
                return Err(status);
            }
            tracing::debug!(entity = %entity_id, from = ?first, to = ?now, %status, "owner moved; retrying once");
            attempt(core, route, &entity_id, payload, now.as_deref()).await
        }
        answer => answer,
    }
}

async fn attempt(core: &Rc<Core>, route: &MethodRoute, entity_id: &str, payload: Bytes, peer: Option<&str>) -> Result<Answer, Status> {
    if let Some(peer) = peer {
        return core.peers.call(peer, route, payload, core.max_message_size()).await;
    }
    let (reply, answer) = oneshot::channel();
    local(core, route, entity_id.to_owned(), payload, Reply::Once(reply)).await;
    answer.await.map_err(|_| stateful::terminated())?
}

/// Starts a streamed command (CRDT entities' server-streaming methods), on
/// this proxy: streams are not forwarded yet.
pub async fn call_streamed(core: &Rc<Core>, route: &MethodRoute, payload: Bytes) -> StreamAnswers {
    let (sink, answers) = stateful::streamed();
    let reply = Reply::Stream(sink);
    match extract(route, &payload) {
        Ok(entity_id) => local(core, route, entity_id, payload, reply).await,
        Err(status) => reply.finish(Err(status)),
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

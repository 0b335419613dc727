//! Where an entity command goes: the one place that decides. The entity id
//! is read from the request bytes; the command then runs on this core, or
//! crosses to the core that owns the key ([`crate::shard`]) as an
//! [`Envelope`].

use std::rc::Rc;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::discovery::MethodRoute;
use crate::entity::key;
use crate::entity::stateful::{self, Answer, Reply, StreamAnswers};
use crate::grpc::{Code, Status};
use crate::shard::{self, Envelope};
use crate::worker::Core;

/// Runs one command for an entity method to its answer.
pub async fn call(core: &Rc<Core>, route: &MethodRoute, payload: Bytes) -> Result<Answer, Status> {
    let (reply, answer) = oneshot::channel();
    route_command(core, route, payload, Reply::Once(reply)).await;
    answer.await.map_err(|_| stateful::terminated())?
}

/// Starts a streamed command (CRDT entities' server-streaming methods).
pub async fn call_streamed(core: &Rc<Core>, route: &MethodRoute, payload: Bytes) -> StreamAnswers {
    let (sink, answers) = stateful::streamed();
    route_command(core, route, payload, Reply::Stream(sink)).await;
    answers
}

/// Hands a command to its entity on the owning core; failures go to `reply`.
async fn route_command(core: &Rc<Core>, route: &MethodRoute, payload: Bytes, reply: Reply) {
    let entity_id = match key::extract(&payload, &route.key_fields) {
        Ok(id) => id,
        Err(e) => return reply.finish(Err(Status::new(Code::InvalidArgument, format!("{}: {e}", route.path)))),
    };
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

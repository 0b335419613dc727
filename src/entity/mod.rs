//! Event-sourced, value and CRDT entities, each on the core that owns its
//! key ([`crate::shard`]). An entity decides (an [`Answer`](stateful::Answer)
//! of side effects and an [`Outcome`]) and persists; where a command comes
//! from and what its side effects and forwards reach is the dispatcher's
//! business, so nothing here calls back into it.

pub mod cache;
pub mod context;
pub mod crdt;
mod crdt_store;
pub mod eventsourced;
pub mod key;
pub mod metadata;
pub mod stateful;
pub mod value;

pub use context::{Context, Limits, Orphaned};

use crate::proto::cloudstate::{
    action::action_response::Response, client_action::Action, Forward, Reply,
};

/// What the function decided for the client, from an action or an entity.
pub enum Outcome {
    /// The function chose not to reply.
    Nothing,
    Reply(Reply),
    Forward(Forward),
    Failure(String),
}

impl From<Option<Response>> for Outcome {
    fn from(r: Option<Response>) -> Outcome {
        match r {
            None => Outcome::Nothing,
            Some(Response::Reply(r)) => Outcome::Reply(r),
            Some(Response::Forward(f)) => Outcome::Forward(f),
            Some(Response::Failure(f)) => Outcome::Failure(f.description),
        }
    }
}

impl From<Option<Action>> for Outcome {
    fn from(a: Option<Action>) -> Outcome {
        match a {
            None => Outcome::Nothing,
            Some(Action::Reply(r)) => Outcome::Reply(r),
            Some(Action::Forward(f)) => Outcome::Forward(f),
            Some(Action::Failure(f)) => Outcome::Failure(f.description),
        }
    }
}


//! What a core hands its entities: their store, their function pool, their
//! registry and their limits — not the whole worker, so an entity cannot
//! reach the dispatcher, the listener or another core.

use std::{cell::RefCell, rc::Rc, sync::Arc, time::Duration};

use super::cache::StateCache;
use super::stateful::Entities;
use crate::config::Config;
use crate::discovery::Router;
use crate::proto::cloudstate::SideEffect;
use crate::runtime::queue;
use crate::store::{
    lease::{HeldCache, Leases},
    StoreHandle,
};
use crate::userfn::Pool;

/// The entity limits of `--entity-*`, `--passivation-timeout` and friends.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_size: usize,
    pub command_timeout: Duration,
    pub passivation_timeout: Duration,
    pub max_active: usize,
    pub queue: usize,
    pub queue_bytes: usize,
}

impl Limits {
    pub fn from_config(c: &Config) -> Limits {
        Limits {
            max_message_size: c.max_message_size,
            command_timeout: c.entity_command_timeout,
            passivation_timeout: c.passivation_timeout,
            max_active: c.max_active_entities_per_core,
            queue: c.entity_queue,
            queue_bytes: c.entity_queue_bytes,
        }
    }
}

/// Side effects no caller waits for (a cancelled streamed call's): the
/// entity hands them to the dispatcher, which runs them.
pub struct Orphaned {
    pub side_effects: Vec<SideEffect>,
    pub origin: String,
}

/// Side effects of cancelled calls waiting for the dispatcher; past this
/// many they are dropped with a warning.
pub const ORPHANED_BACKLOG: usize = 1024;

/// One core's entity context.
pub struct Context {
    pub router: Arc<Router>,
    pub pool: Pool,
    /// This core's storage thread, with group commit.
    pub store: Rc<StoreHandle>,
    /// This proxy's shard leases, when proxies share the store.
    pub leases: Option<Arc<Leases>>,
    /// This core's copy of the held leases, checked before every command.
    pub held_leases: HeldCache,
    /// Entities this core owns.
    pub entities: Entities,
    /// State of this core's recently passivated entities.
    pub cache: RefCell<StateCache>,
    pub limits: Limits,
    pub orphaned: queue::Sender<Orphaned>,
}

impl Context {
    pub fn max_message_size(&self) -> usize {
        self.limits.max_message_size
    }
}

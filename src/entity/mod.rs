//! Serving discovered methods by entity kind. Actions are stateless and run
//! on the core that received the call.

pub mod action;
pub mod metadata;

//! Why a delta could not be applied or a stored CRDT could not be read.

use super::element::Element;

/// A delta the user function sent that the proxy refuses, or stored bytes
/// that do not hold a CRDT.
///
/// Every variant except [`CrdtError::Corrupt`] is the user function's fault
/// (the command fails and the state is left as it was); `Corrupt` comes from
/// the store and means data loss.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrdtError {
    #[error("CrdtDelta with no delta set")]
    NoDelta,
    #[error("a {delta} delta cannot change a {crdt}")]
    WrongType { crdt: &'static str, delta: &'static str },
    /// An increment of 2^63 or more is what a JVM SDK sends for a negative
    /// `long`, so it is read as an attempted decrement, as the reference
    /// proxy does.
    #[error("GCounter increment {0} is a negative int64: a GCounter cannot be decremented")]
    GCounterDecrement(u64),
    #[error("the {0} value would overflow")]
    Overflow(&'static str),
    #[error("{0} is required")]
    MissingField(&'static str),
    #[error("unknown LWWRegister clock {0}")]
    UnknownClock(i32),
    #[error("ORMap has no key {0} to update")]
    MissingKey(Element),
    #[error("element of type {type_url:?} is not a valid primitive: {reason}")]
    BadElement { type_url: String, reason: String },
    #[error("stored CRDT is corrupt: {0}")]
    Corrupt(String),
}

impl CrdtError {
    /// True when the store, not the user function, is at fault (DATA_LOSS).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, CrdtError::Corrupt(_))
    }
}

//! Last-writer-wins register: the write with the highest timestamp wins a
//! merge. The delta's clock says how a local write is timestamped:
//!
//! - `DEFAULT`: the wall clock, but always past the current timestamp, so a
//!   clock stepping back cannot lose a local write;
//! - `REVERSE`: the negated wall clock, always below the current one, so the
//!   earliest write wins;
//! - `CUSTOM`: `custom_clock_value` as given (a lower value may lose later
//!   merges, by the user's choice);
//! - `CUSTOM_AUTO_INCREMENT`: `custom_clock_value`, or one past the current
//!   timestamp if it is not beyond it.
//!
//! A local write always replaces the value: the user function holds it now.

use std::cmp::Reverse;

use super::error::CrdtError;
use super::replica::{ReplicaId, Writer};
use crate::proto::cloudstate::crdt::{CrdtClock, LwwRegisterDelta};
use crate::proto::google::protobuf::Any;

#[derive(Clone, Debug, PartialEq)]
struct Write {
    timestamp: i64,
    replica: ReplicaId,
    value: Any,
}

impl Write {
    /// A total order, so merge is a join: timestamp, then the lower replica
    /// (as Akka's LWWRegister), then the value's bytes.
    fn rank(&self) -> (i64, Reverse<ReplicaId>, &str, &[u8]) {
        (self.timestamp, Reverse(self.replica), &self.value.type_url, &self.value.value[..])
    }
}

/// A last-writer-wins register of any `Any`; no write yet (`None`) is the
/// bottom every write beats.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LwwRegister {
    write: Option<Write>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredLwwRegister {
    /// Absent when nothing was written.
    #[prost(message, optional, tag = "1")]
    pub value: Option<Any>,
    #[prost(sint64, tag = "2")]
    pub timestamp: i64,
    #[prost(uint64, tag = "3")]
    pub replica: u64,
}

impl LwwRegister {
    pub fn apply(&mut self, delta: &LwwRegisterDelta, writer: Writer) -> Result<(), CrdtError> {
        let value = delta.value.clone().ok_or(CrdtError::MissingField("LWWRegisterDelta.value"))?;
        let clock = CrdtClock::try_from(delta.clock).map_err(|_| CrdtError::UnknownClock(delta.clock))?;
        let (now, custom) = (writer.now_ms, delta.custom_clock_value);
        let current = self.write.as_ref().map(|w| w.timestamp);
        let timestamp = match (clock, current) {
            (CrdtClock::Default, None) => now,
            (CrdtClock::Default, Some(c)) => now.max(c.saturating_add(1)),
            (CrdtClock::Reverse, None) => now.saturating_neg(),
            (CrdtClock::Reverse, Some(c)) => now.saturating_neg().min(c.saturating_sub(1)),
            (CrdtClock::Custom, _) => custom,
            (CrdtClock::CustomAutoIncrement, Some(c)) if custom <= c => c.saturating_add(1),
            (CrdtClock::CustomAutoIncrement, _) => custom,
        };
        self.write = Some(Write { timestamp, replica: writer.replica, value });
        Ok(())
    }

    /// Only the value: the clock instructs a write and is not state.
    pub fn to_delta(&self) -> LwwRegisterDelta {
        LwwRegisterDelta { value: self.write.as_ref().map(|w| w.value.clone()), ..Default::default() }
    }

    pub fn merge(&mut self, other: &LwwRegister) {
        if let Some(theirs) = &other.write {
            if self.write.as_ref().is_none_or(|mine| theirs.rank() > mine.rank()) {
                self.write = Some(theirs.clone());
            }
        }
    }

    pub fn to_stored(&self) -> StoredLwwRegister {
        match &self.write {
            Some(w) => StoredLwwRegister { value: Some(w.value.clone()), timestamp: w.timestamp, replica: w.replica.0 },
            None => StoredLwwRegister::default(),
        }
    }

    pub fn from_stored(stored: &StoredLwwRegister) -> LwwRegister {
        let write = stored.value.clone().map(|value| Write {
            timestamp: stored.timestamp,
            replica: ReplicaId(stored.replica),
            value,
        });
        LwwRegister { write }
    }
}

//! Event-log eventing (proto/example/eventing/ledger.proto, declared with
//! `--eventing`): the event-sourced ledgers `LedgerA` and `LedgerB`, and the
//! consumer actions `Auditor` and `Mirror`. Consumers log each delivery to
//! stderr; the text of the consumed entry steers failures and delays.

use std::{cell::RefCell, collections::HashSet};

use prost::Message;

use massa::discovery::routes::{ACTION_PROTOCOL, EVENT_SOURCED_PROTOCOL};
use massa::grpc::{Code, MessageReader, Responder, Status};
use massa::proto::cloudstate::{
    action::{action_response::Response, ActionCommand, ActionResponse},
    client_action::Action,
    eventsourced::{event_sourced_stream_in, event_sourced_stream_out, EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut},
    metadata_entry::Value,
    ClientAction, Entity, Failure, Reply,
};
use massa::proto::example::eventing::{Append, Entry};
use massa::proto::google::protobuf::Empty;

use super::{any, bad, send};

const PACKAGE: &str = "example.eventing.";

/// The declared services: `(entity type, service, persistence id)`.
const SERVICES: [(&str, &str, &str); 4] = [
    (EVENT_SOURCED_PROTOCOL, "example.eventing.LedgerA", "ledger-a"),
    (EVENT_SOURCED_PROTOCOL, "example.eventing.LedgerB", "ledger-b"),
    (ACTION_PROTOCOL, "example.eventing.Auditor", ""),
    (ACTION_PROTOCOL, "example.eventing.Mirror", ""),
];

pub fn entities() -> Vec<Entity> {
    SERVICES
        .iter()
        .map(|(kind, service, pid)| Entity {
            entity_type: (*kind).to_owned(),
            service_name: (*service).to_owned(),
            persistence_id: (*pid).to_owned(),
            passivation_strategy: None,
        })
        .collect()
}

/// Whether `service` is one of this module's.
pub fn serves(service: &str) -> bool {
    service.starts_with(PACKAGE)
}

/// A ledger's stream after its init: each `Append` persists one `Entry`.
pub async fn event_sourced(mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    while let Some(m) = reader.message().await.map_err(|e| e.into_client_status())? {
        let Some(event_sourced_stream_in::Message::Command(command)) = EventSourcedStreamIn::decode(m).map_err(bad)?.message else {
            continue;
        };
        let append = Append::decode(command.payload.unwrap_or_default().value).map_err(bad)?;
        let reply = EventSourcedReply {
            command_id: command.id,
            client_action: Some(ClientAction { action: Some(Action::Reply(empty_reply())) }),
            side_effects: Vec::new(),
            events: vec![any("example.eventing.Entry", &Entry { text: append.text })],
            snapshot: None,
        };
        send(responder, &EventSourcedStreamOut { message: Some(event_sourced_stream_out::Message::Reply(reply)) }).await?;
    }
    Ok(())
}

/// The consumers' state: deliveries already failed once on purpose.
pub struct Consumers {
    crash_on_event: bool,
    failed_once: RefCell<HashSet<(String, String)>>,
}

impl Consumers {
    pub fn new(crash_on_event: bool) -> Consumers {
        Consumers { crash_on_event, failed_once: RefCell::default() }
    }

    /// Whether a delivery should take a while before it is logged and
    /// answered: entries whose text starts with `slow:` (300 ms).
    pub fn is_slow(command: &ActionCommand) -> bool {
        let value = command.payload.as_ref().map(|p| p.value.clone()).unwrap_or_default();
        Entry::decode(value).is_ok_and(|e| e.text.starts_with("slow:"))
    }

    /// One delivery to `Auditor` or `Mirror`.
    pub fn consume(&self, command: &ActionCommand) -> Result<ActionResponse, Status> {
        let payload = command.payload.clone().ok_or_else(|| Status::new(Code::InvalidArgument, "delivery without payload"))?;
        // `AuditB` takes the stored `Any` as it is; the others its Entry.
        let entry = Entry::decode(payload.value).map_err(bad)?;
        let id = metadata(command, "ce-id");
        eprintln!(
            "consumed {}/{} ce-id={id} ce-source={} ce-subject={} ce-type={} ce-time={} text={}",
            command.service_name,
            command.name,
            metadata(command, "ce-source"),
            metadata(command, "ce-subject"),
            metadata(command, "ce-type"),
            metadata(command, "ce-time"),
            entry.text
        );
        let fail_once = entry.text.starts_with("fail-once:") && self.failed_once.borrow_mut().insert((command.name.clone(), id));
        let fail = fail_once || (entry.text == "fail-audit!" && command.service_name.ends_with(".Auditor"));
        if entry.text == "crash!" && self.crash_on_event {
            eprintln!("massa-example-fn: crashing on a consumed event");
            std::process::exit(3);
        }
        Ok(ActionResponse {
            response: Some(if fail {
                Response::Failure(Failure { command_id: 0, description: format!("refusing {}", entry.text), restart: false })
            } else {
                Response::Reply(empty_reply())
            }),
            side_effects: Vec::new(),
        })
    }
}

fn empty_reply() -> Reply {
    Reply { payload: Some(any("google.protobuf.Empty", &Empty {})), metadata: None }
}

/// A string metadata entry of the command, or "".
fn metadata(command: &ActionCommand, key: &str) -> String {
    let entries = command.metadata.iter().flat_map(|m| &m.entries);
    entries
        .filter(|e| e.key == key)
        .find_map(|e| match &e.value {
            Some(Value::StringValue(v)) => Some(v.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

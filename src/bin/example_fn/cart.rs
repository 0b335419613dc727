//! The shopping cart (spec §10) as an event-sourced entity
//! (`com.example.shoppingcart.ShoppingCart`) and as a value entity
//! (`com.example.valueentity.shoppingcart.ShoppingCart`). Both packages'
//! messages are wire-identical, so one set of Rust types decodes both; only
//! the type URLs differ.
//!
//! Fault switches for tests, by `product_id` of `AddItem`: `crash!` exits
//! the process mid-command, `restart!` fails the command with
//! `restart=true`, `bad-id!` answers with a wrong command id, `extra!`
//! answers and then sends a second, unsolicited reply, `stop!` sends a
//! top-level failure. An item named `notify` adds a synchronous side
//! effect `example.echo.Echo/Record` with text `added <product> to <user>`;
//! one named `slow` takes 300 ms. Activations and stream ends are logged
//! to stderr so tests can see what the proxy sent.

use bytes::Bytes;
use prost::Message;

use massa::grpc::{Code, MessageReader, Responder, Status};
use massa::proto::cloudstate::{
    client_action::Action,
    eventsourced::{event_sourced_stream_in, event_sourced_stream_out, EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut},
    valueentity::{
        value_entity_action, value_entity_stream_in, value_entity_stream_out, ValueEntityAction, ValueEntityReply,
        ValueEntityStreamIn, ValueEntityStreamOut, ValueEntityUpdate,
    },
    ClientAction, Command, Failure, Reply, SideEffect,
};
use massa::proto::com::example::shoppingcart::{persistence as domain, AddLineItem, Cart, GetShoppingCart, LineItem, RemoveLineItem};
use massa::proto::example::echo::EchoRequest;
use massa::proto::google::protobuf::{Any, Empty};

use super::{any, bad, send};

pub const EVENT_SOURCED: &str = "com.example.shoppingcart.ShoppingCart";
pub const VALUE_ENTITY: &str = "com.example.valueentity.shoppingcart.ShoppingCart";

/// What one command decided, before it is wrapped for the entity kind.
struct Decided {
    action: Action,
    side_effects: Vec<SideEffect>,
    /// Event-sourced: the event to persist.
    event: Option<Any>,
    /// A fault switch asked for an abnormal answer.
    fault: Option<Fault>,
}

enum Fault {
    Restart,
    BadId,
    Extra,
    Stop,
}

fn apply_add(cart: &mut domain::Cart, item: domain::LineItem) {
    match cart.items.iter_mut().find(|i| i.product_id == item.product_id) {
        Some(existing) => existing.quantity += item.quantity,
        None => cart.items.push(item),
    }
}

fn apply_remove(cart: &mut domain::Cart, product_id: &str) {
    cart.items.retain(|i| i.product_id != product_id);
}

fn apply_event(cart: &mut domain::Cart, event: &Any) -> Result<(), Status> {
    match event.type_url.rsplit('/').next() {
        Some("com.example.shoppingcart.persistence.ItemAdded") => {
            let added = domain::ItemAdded::decode(event.value.clone()).map_err(bad)?;
            apply_add(cart, added.item.unwrap_or_default());
        }
        Some("com.example.shoppingcart.persistence.ItemRemoved") => {
            apply_remove(cart, &domain::ItemRemoved::decode(event.value.clone()).map_err(bad)?.product_id);
        }
        other => return Err(Status::new(Code::InvalidArgument, format!("unknown event type {other:?}"))),
    }
    Ok(())
}

/// Runs one command against `cart` (applying its effect, if any).
fn decide(cart: &mut domain::Cart, command: &Command, api_package: &str) -> Result<Decided, Status> {
    let payload = command.payload.as_ref().map(|p| p.value.clone()).unwrap_or_default();
    let failure = |description: String| Decided {
        action: Action::Failure(Failure { command_id: command.id, description, restart: false }),
        side_effects: Vec::new(),
        event: None,
        fault: None,
    };
    let ok = |event: Option<Any>, side_effects: Vec<SideEffect>| Decided {
        action: Action::Reply(Reply { payload: Some(any("google.protobuf.Empty", &Empty {})), metadata: None }),
        side_effects,
        event,
        fault: None,
    };
    Ok(match command.name.as_str() {
        "AddItem" => {
            let add = AddLineItem::decode(payload).map_err(bad)?;
            let fault = match add.product_id.as_str() {
                "crash!" => {
                    eprintln!("massa-example-fn: crashing on request");
                    std::process::exit(3);
                }
                "restart!" => Some(Fault::Restart),
                "bad-id!" => Some(Fault::BadId),
                "extra!" => Some(Fault::Extra),
                "stop!" => Some(Fault::Stop),
                _ => None,
            };
            if fault.is_none() && add.quantity <= 0 {
                return Ok(failure(format!("Cannot add negative quantity of to item {}", add.product_id)));
            }
            let side_effects = if add.name == "notify" {
                let text = format!("added {} to {}", add.product_id, add.user_id);
                vec![SideEffect {
                    service_name: "example.echo.Echo".into(),
                    command_name: "Record".into(),
                    payload: Some(any("example.echo.EchoRequest", &EchoRequest { text, ..Default::default() })),
                    synchronous: true,
                    metadata: None,
                }]
            } else {
                Vec::new()
            };
            let item = domain::LineItem { product_id: add.product_id, name: add.name, quantity: add.quantity };
            let event = any("com.example.shoppingcart.persistence.ItemAdded", &domain::ItemAdded { item: Some(item.clone()) });
            if fault.is_none() {
                apply_add(cart, item);
            }
            Decided { fault, ..ok(Some(event), side_effects) }
        }
        "RemoveItem" => {
            let remove = RemoveLineItem::decode(payload).map_err(bad)?;
            if !cart.items.iter().any(|i| i.product_id == remove.product_id) {
                return Ok(failure(format!("Cannot remove item {} because it is not in the cart.", remove.product_id)));
            }
            apply_remove(cart, &remove.product_id);
            ok(Some(any("com.example.shoppingcart.persistence.ItemRemoved", &domain::ItemRemoved { product_id: remove.product_id })), Vec::new())
        }
        "GetCart" => {
            GetShoppingCart::decode(payload).map_err(bad)?;
            let items = cart.items.iter().map(|i| LineItem { product_id: i.product_id.clone(), name: i.name.clone(), quantity: i.quantity });
            let reply = Cart { items: items.collect() };
            Decided {
                action: Action::Reply(Reply { payload: Some(any(&format!("{api_package}.Cart"), &reply)), metadata: None }),
                ..ok(None, Vec::new())
            }
        }
        "RemoveCart" => {
            cart.items.clear();
            ok(None, Vec::new())
        }
        other => failure(format!("unknown command {other}")),
    })
}

/// `cloudstate.eventsourced.EventSourced/handle` for the cart, from its
/// `first` message (already read to tell carts from ledgers).
pub async fn event_sourced(first: Bytes, mut reader: MessageReader, responder: &mut Responder, snapshot_every: u64) -> Result<(), Status> {
    let mut cart = domain::Cart::default();
    let mut since_snapshot = 0u64;
    let (mut entity, mut snapshot_seq, mut replayed, mut reported) = (String::new(), None, 0, false);
    let mut next = Some(first);
    loop {
        let m = match next.take() {
            Some(m) => m,
            None => match reader.message().await.map_err(|e| e.into_client_status())? {
                Some(m) => m,
                None => break,
            },
        };
        let message = EventSourcedStreamIn::decode(m).map_err(bad)?.message;
        match message {
            Some(event_sourced_stream_in::Message::Init(init)) => {
                entity = init.entity_id;
                if let Some(snapshot) = init.snapshot {
                    snapshot_seq = Some(snapshot.snapshot_sequence);
                    cart = domain::Cart::decode(snapshot.snapshot.unwrap_or_default().value).map_err(bad)?;
                }
            }
            Some(event_sourced_stream_in::Message::Event(event)) => {
                apply_event(&mut cart, &event.payload.unwrap_or_default())?;
                since_snapshot += 1;
                replayed += 1;
            }
            Some(event_sourced_stream_in::Message::Command(command)) => {
                if !std::mem::replace(&mut reported, true) {
                    eprintln!("cart {entity} activated: snapshot {snapshot_seq:?}, replayed {replayed}, first command id {}", command.id);
                }
                pause(&command).await;
                let d = decide(&mut cart, &command, "com.example.shoppingcart")?;
                let out = match d.fault {
                    Some(Fault::Stop) => event_sourced_stream_out::Message::Failure(Failure {
                        command_id: command.id,
                        description: "entity stopped on request".into(),
                        restart: false,
                    }),
                    fault => {
                        let (action, events) = match fault {
                            Some(Fault::Restart) => (
                                Action::Failure(Failure { command_id: command.id, description: "restarting on request".into(), restart: true }),
                                Vec::new(),
                            ),
                            _ => (d.action, d.event.into_iter().collect::<Vec<_>>()),
                        };
                        since_snapshot += events.len() as u64;
                        let snapshot = (snapshot_every > 0 && !events.is_empty() && since_snapshot >= snapshot_every).then(|| {
                            since_snapshot = 0;
                            any("com.example.shoppingcart.persistence.Cart", &cart)
                        });
                        let command_id = if matches!(fault, Some(Fault::BadId)) { command.id + 1000 } else { command.id };
                        let reply = EventSourcedReply {
                            command_id,
                            client_action: Some(ClientAction { action: Some(action) }),
                            side_effects: d.side_effects,
                            events,
                            snapshot,
                        };
                        if matches!(fault, Some(Fault::Extra)) {
                            let extra = event_sourced_stream_out::Message::Reply(reply.clone());
                            send(responder, &EventSourcedStreamOut { message: Some(extra) }).await?;
                        }
                        event_sourced_stream_out::Message::Reply(reply)
                    }
                };
                send(responder, &EventSourcedStreamOut { message: Some(out) }).await?;
            }
            None => return Err(Status::new(Code::InvalidArgument, "empty EventSourcedStreamIn")),
        }
    }
    eprintln!("cart {entity} stream closed by the proxy");
    Ok(())
}

/// The `slow` and `hang` switches: an `AddItem` named `slow` takes 300 ms,
/// one named `hang` is never answered (an hour).
async fn pause(command: &Command) {
    let payload = command.payload.as_ref().map(|p| p.value.clone()).unwrap_or_default();
    let name = if command.name == "AddItem" { AddLineItem::decode(payload).map(|a| a.name).unwrap_or_default() } else { String::new() };
    match name.as_str() {
        "slow" => monoio::time::sleep(std::time::Duration::from_millis(300)).await,
        "hang" => monoio::time::sleep(std::time::Duration::from_secs(3600)).await,
        _ => {}
    }
}

/// `cloudstate.valueentity.ValueEntity/handle` for the cart.
pub async fn value_entity(mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let mut cart = domain::Cart::default();
    while let Some(m) = reader.message().await.map_err(|e| e.into_client_status())? {
        match ValueEntityStreamIn::decode(m).map_err(bad)?.message {
            Some(value_entity_stream_in::Message::Init(init)) => {
                let state = init.state.ok_or_else(|| Status::new(Code::InvalidArgument, "init without state"))?;
                if let Some(value) = state.value {
                    cart = domain::Cart::decode(value.value).map_err(bad)?;
                }
            }
            Some(value_entity_stream_in::Message::Command(command)) => {
                pause(&command).await;
                let d = decide(&mut cart, &command, "com.example.valueentity.shoppingcart")?;
                let failed = matches!(d.action, Action::Failure(_));
                let state_action = match command.name.as_str() {
                    _ if failed => None,
                    "RemoveCart" => Some(value_entity_action::Action::Delete(Default::default())),
                    "AddItem" | "RemoveItem" => Some(value_entity_action::Action::Update(ValueEntityUpdate {
                        value: Some(any("com.example.valueentity.shoppingcart.persistence.Cart", &cart)),
                    })),
                    _ => None,
                };
                let reply = ValueEntityReply {
                    command_id: command.id,
                    client_action: Some(ClientAction { action: Some(d.action) }),
                    side_effects: d.side_effects,
                    state_action: state_action.map(|a| ValueEntityAction { action: Some(a) }),
                };
                let out = ValueEntityStreamOut { message: Some(value_entity_stream_out::Message::Reply(reply)) };
                send(responder, &out).await?;
            }
            None => return Err(Status::new(Code::InvalidArgument, "empty ValueEntityStreamIn")),
        }
    }
    Ok(())
}

//! `massa-example-fn`: a Cloudstate user function serving the Action service
//! `example.echo.Echo` (proto/example/echo/echo.proto) and the shopping cart
//! as an event-sourced and as a value entity ([`cart`]). It is the function
//! the README starts next to Massa and the one the integration tests drive.
//! Each echo request carries its own instructions (fail, forward, side
//! effects, delay), and a few texts trigger faults: `crash!` exits the
//! process mid-call, `cancel!` resets the stream. With `--eventing` it also
//! declares event-sourced ledgers and event-log consumers ([`ledger`]).

mod cart;
mod ledger;

use std::{cell::RefCell, rc::Rc, time::Duration};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use massa::http2::{server::Incoming, Reason};
use prost::Message;

use massa::config::IoDriver;
use massa::discovery::routes::{ACTION_PROTOCOL, EVENT_SOURCED_PROTOCOL, LEGACY_FUNCTION_PROTOCOL, VALUE_ENTITY_PROTOCOL};
use massa::grpc::{Code, MessageReader, Responder, Status};
use massa::proto::cloudstate::{
    action::{action_response::Response, ActionCommand, ActionResponse},
    eventsourced::{event_sourced_stream_in, EventSourcedStreamIn},
    metadata_entry::Value,
    entity_passivation_strategy::Strategy,
    Entity, EntityPassivationStrategy, EntitySpec, Failure, Forward, Metadata, MetadataEntry, ProxyInfo, Reply, ServiceInfo, SideEffect,
    TimeoutPassivationStrategy, UserFunctionError,
};
use massa::proto::example::echo::{EchoReply, EchoRequest};
use massa::proto::google::protobuf::{Any, Empty};
use massa::runtime::{self, Notify};
use massa::grpc::budget::Budget;
use massa::server::{serve_h2, H2Options, Service};

const SERVICE: &str = "example.echo.Echo";
/// Largest message this function accepts.
const MAX_MESSAGE: usize = 64 << 20;

/// An example Cloudstate user function (Action service example.echo.Echo).
#[derive(Parser, Debug)]
#[command(name = "massa-example-fn", version)]
struct Args {
    /// I/O driver (as the proxy's `--io-driver`).
    #[arg(long, value_enum, default_value_t = IoDriver::Auto)]
    io_driver: IoDriver,
    /// Interface to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (the proxy's USER_FUNCTION_PORT).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Listen on this Unix socket instead of TCP.
    #[arg(long)]
    uds: Option<std::path::PathBuf>,
    /// Declare the pre-0.2 entity type `cloudstate.function.StatelessFunction`.
    #[arg(long)]
    legacy: bool,
    /// Protocol version to report, e.g. 0.2 or 0.0.
    #[arg(long, default_value = "0.2")]
    protocol: String,
    /// Report a spec naming a service that is not in the descriptors.
    #[arg(long)]
    invalid_spec: bool,
    /// Event-sourced cart: attach a snapshot every N events (0: never).
    #[arg(long, default_value_t = 5)]
    snapshot_every: u64,
    /// Ask the proxy to passivate idle carts after this many ms.
    #[arg(long)]
    passivation_ms: Option<i64>,
    /// Advertise this HTTP/2 MAX_CONCURRENT_STREAMS (default: no practical limit).
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
    /// Also declare the ledgers and their event-log consumers.
    #[arg(long)]
    eventing: bool,
    /// Consumers exit the process on an entry `crash!` (else they accept it).
    #[arg(long)]
    crash_on_event: bool,
}

struct EchoFn {
    args: Args,
    protocol_prefix: String,
    recorded: RefCell<Vec<String>>,
    consumers: ledger::Consumers,
}

fn main() {
    let args = Args::parse();
    let prefix = format!("/{}/", if args.legacy { LEGACY_FUNCTION_PROTOCOL } else { ACTION_PROTOCOL });
    let args_crash = args.crash_on_event;
    let echo = Rc::new(EchoFn { args, protocol_prefix: prefix, recorded: RefCell::new(Vec::new()), consumers: ledger::Consumers::new(args_crash) });
    let h2 = H2Options::user_function(echo.args.max_concurrent_streams);
    let echo_driver = echo.args.io_driver;
    let serve = async move {
        let shutdown = Notify::new();
        if let Some(path) = &echo.args.uds {
            let _ = std::fs::remove_file(path);
            // Bound through std: monoio's own bind sets SO_REUSEADDR, which
            // AF_UNIX sockets refuse with EOPNOTSUPP.
            let std_listener = std::os::unix::net::UnixListener::bind(path).expect("binding the Unix socket");
            let listener = monoio::net::UnixListener::from_std(std_listener).expect("registering the Unix socket");
            eprintln!("massa-example-fn listening on unix:{}", path.display());
            while let Ok((stream, _)) = listener.accept().await {
                monoio::spawn(serve_h2(stream, BytesMut::new(), echo.clone(), shutdown.clone(), h2, Budget::unlimited()));
            }
        } else {
            let addr = format!("{}:{}", echo.args.host, echo.args.port);
            let listener = monoio::net::TcpListener::bind(addr.as_str()).expect("binding the port");
            eprintln!("massa-example-fn listening on {addr}");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                monoio::spawn(serve_h2(stream, BytesMut::new(), echo.clone(), shutdown.clone(), h2, Budget::unlimited()));
            }
        }
    };
    let driver = echo_driver;
    runtime::block_on(driver, serve).expect("runtime");
}

impl Service for EchoFn {
    async fn call(self: Rc<Self>, request: Incoming, _budget: Rc<Budget>) {
        let path = request.head.get_str(b":path").unwrap_or("").to_owned();
        let mut responder = Responder::new(request.send);
        let reader = MessageReader::new(request.recv, MAX_MESSAGE);
        let status = match path.strip_prefix(self.protocol_prefix.as_str()) {
            Some("handleUnary") => self.unary(reader, &mut responder).await,
            Some("handleStreamedOut") => self.streamed_out(reader, &mut responder).await,
            Some("handleStreamedIn") | Some("handleStreamed") => self.streamed(reader, &mut responder).await,
            _ => match path.as_str() {
                "/cloudstate.eventsourced.EventSourced/handle" => self.event_sourced(reader, &mut responder).await,
                "/cloudstate.valueentity.ValueEntity/handle" => cart::value_entity(reader, &mut responder).await,
                "/cloudstate.EntityDiscovery/discover" => self.discover(reader, &mut responder).await,
                "/cloudstate.EntityDiscovery/reportError" => report_error(reader, &mut responder).await,
                _ => Err(Status::new(Code::Unimplemented, format!("no such method {path}"))),
            },
        };
        match status {
            Ok(()) => responder.finish(&Status::ok()),
            Err(s) if s.code == Code::Cancelled => responder.reset(Reason::CANCEL),
            Err(s) => responder.finish(&s),
        }
    }
}

impl EchoFn {
    async fn discover(&self, reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let info = ProxyInfo::decode(reader.single().await?).map_err(bad)?;
        eprintln!(
            "discover: proxy {} {} protocol {}.{} supports {:?}",
            info.proxy_name,
            info.proxy_version,
            info.protocol_major_version,
            info.protocol_minor_version,
            info.supported_entity_types
        );
        let (major, minor) = self.args.protocol.split_once('.').unwrap_or(("0", "2"));
        let descriptors = if self.args.eventing { massa::proto::EXAMPLE_EVENTING_DESCRIPTORS } else { massa::proto::EXAMPLE_DESCRIPTORS };
        let mut spec = EntitySpec {
            proto: Bytes::from_static(descriptors),
            entities: vec![
                Entity {
                    entity_type: if self.args.legacy { LEGACY_FUNCTION_PROTOCOL } else { ACTION_PROTOCOL }.to_owned(),
                    service_name: if self.args.invalid_spec { "example.echo.Missing" } else { SERVICE }.to_owned(),
                    persistence_id: "echo".to_owned(),
                    passivation_strategy: None,
                },
                self.cart_entity(EVENT_SOURCED_PROTOCOL, cart::EVENT_SOURCED, "shopping-cart"),
                self.cart_entity(VALUE_ENTITY_PROTOCOL, cart::VALUE_ENTITY, "value-shopping-cart"),
            ],
            service_info: Some(ServiceInfo {
                service_name: "massa-example-fn".to_owned(),
                service_version: env!("CARGO_PKG_VERSION").to_owned(),
                service_runtime: "rust".to_owned(),
                support_library_name: "massa".to_owned(),
                support_library_version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol_major_version: major.parse().unwrap_or(0),
                protocol_minor_version: minor.parse().unwrap_or(2),
            }),
        };
        if self.args.eventing {
            spec.entities.extend(ledger::entities());
        }
        send(responder, &spec).await
    }

    /// An event-sourced stream: the init says whether it is a cart or a ledger.
    async fn event_sourced(&self, mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let Some(first) = reader.message().await.map_err(|e| e.into_client_status())? else { return Ok(()) };
        match EventSourcedStreamIn::decode(first.clone()).map_err(bad)?.message {
            Some(event_sourced_stream_in::Message::Init(init)) if ledger::serves(&init.service_name) => {
                ledger::event_sourced(reader, responder).await
            }
            _ => cart::event_sourced(first, reader, responder, self.args.snapshot_every).await,
        }
    }

    fn cart_entity(&self, entity_type: &str, service: &str, persistence_id: &str) -> Entity {
        Entity {
            entity_type: entity_type.to_owned(),
            service_name: service.to_owned(),
            persistence_id: persistence_id.to_owned(),
            passivation_strategy: self.args.passivation_ms.map(|timeout| EntityPassivationStrategy {
                strategy: Some(Strategy::Timeout(TimeoutPassivationStrategy { timeout })),
            }),
        }
    }

    async fn unary(&self, reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let command = ActionCommand::decode(reader.single().await?).map_err(bad)?;
        if ledger::serves(&command.service_name) {
            if ledger::Consumers::is_slow(&command) {
                monoio::time::sleep(Duration::from_millis(300)).await;
            }
            return send(responder, &self.consumers.consume(&command)?).await;
        }
        let request = echo_request(&command)?;
        self.pause(&request, responder).await?;
        let response = self.answer(&command.name, request, command.metadata.as_ref());
        send(responder, &response).await
    }

    /// `Split` answers once per word; other methods answer once.
    async fn streamed_out(&self, reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let command = ActionCommand::decode(reader.single().await?).map_err(bad)?;
        let request = echo_request(&command)?;
        self.pause(&request, responder).await?;
        if command.name != "Split" {
            return send(responder, &self.answer(&command.name, request, command.metadata.as_ref())).await;
        }
        for word in request.text.split_whitespace() {
            send(responder, &reply(word.to_owned(), "Split", None)).await?;
        }
        if !request.fail.is_empty() {
            send(responder, &failure(&request.fail)).await?;
        }
        Ok(())
    }

    /// Streamed-in and bidi: the first command names the method. `Collect`
    /// answers once at the end; everything else answers each message.
    async fn streamed(&self, mut reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
        let first = match reader.message().await.map_err(|e| e.into_client_status())? {
            Some(m) => ActionCommand::decode(m).map_err(bad)?,
            None => return Err(Status::new(Code::InvalidArgument, "stream without a first command")),
        };
        if first.payload.is_some() || first.name.is_empty() {
            return Err(Status::new(Code::InvalidArgument, "the first streamed command must name the method only"));
        }
        let mut texts = Vec::new();
        while let Some(m) = reader.message().await.map_err(|e| e.into_client_status())? {
            let command = ActionCommand::decode(m).map_err(bad)?;
            let request = echo_request(&command)?;
            if first.name == "Collect" {
                if !request.fail.is_empty() {
                    return send(responder, &failure(&request.fail)).await;
                }
                texts.push(request.text);
            } else {
                self.pause(&request, responder).await?;
                send(responder, &self.answer(&first.name, request, command.metadata.as_ref())).await?;
            }
        }
        if first.name == "Collect" {
            send(responder, &reply(texts.join(" "), "Collect", None)).await?;
        }
        Ok(())
    }

    /// Honours `delay_ms` and the fault texts (`slow:…` takes 300 ms, so a
    /// side effect can be made to last). A cancel by the proxy while
    /// waiting is recorded, so tests can see it arrived.
    async fn pause(&self, request: &EchoRequest, responder: &mut Responder) -> Result<(), Status> {
        if request.text.starts_with("slow:") {
            monoio::time::sleep(Duration::from_millis(300)).await;
        }
        match request.text.as_str() {
            "crash!" => {
                eprintln!("massa-example-fn: crashing on request");
                std::process::exit(3);
            }
            "cancel!" => return Err(Status::new(Code::Cancelled, "cancelled by the function")),
            _ => {}
        }
        if request.delay_ms > 0 {
            monoio::select! {
                _ = monoio::time::sleep(Duration::from_millis(request.delay_ms.into())) => {}
                _ = responder.reset_by_client() => {
                    self.recorded.borrow_mut().push(format!("cancelled:{}", request.text));
                    return Err(Status::new(Code::Cancelled, "caller cancelled"));
                }
            }
        }
        Ok(())
    }

    fn answer(&self, method: &str, request: EchoRequest, metadata: Option<&Metadata>) -> ActionResponse {
        let side_effects = request
            .side_effects
            .iter()
            .map(|text| SideEffect {
                service_name: SERVICE.to_owned(),
                command_name: "Record".to_owned(),
                payload: Some(any("example.echo.EchoRequest", &EchoRequest { text: text.clone(), ..Default::default() })),
                synchronous: request.synchronous,
                metadata: None,
            })
            .collect();
        let mut response = if !request.fail.is_empty() {
            failure(&request.fail)
        } else if !request.forward_to.is_empty() {
            let forwarded = EchoRequest { forward_to: String::new(), side_effects: Vec::new(), ..request.clone() };
            // `Method` forwards within Echo; `pkg.Service/Method` anywhere
            // (the EchoRequest bytes then stand for the target's input:
            // field 1 is the text, e.g. a cart's `user_id`).
            let (service, method) = request.forward_to.split_once('/').unwrap_or((SERVICE, request.forward_to.as_str()));
            ActionResponse {
                response: Some(Response::Forward(Forward {
                    service_name: service.to_owned(),
                    command_name: method.to_owned(),
                    payload: Some(any("example.echo.EchoRequest", &forwarded)),
                    metadata: None,
                })),
                side_effects: Vec::new(),
            }
        } else {
            let text = match method {
                "Upper" => request.text.to_uppercase(),
                "Record" => {
                    self.recorded.borrow_mut().push(request.text.clone());
                    request.text
                }
                "Recorded" => self.recorded.borrow().join(","),
                _ => request.text,
            };
            reply(text, method, metadata)
        };
        response.side_effects = side_effects;
        response
    }
}

async fn report_error(reader: MessageReader, responder: &mut Responder) -> Result<(), Status> {
    let error = UserFunctionError::decode(reader.single().await?).map_err(bad)?;
    eprintln!("reportError: {}", error.message);
    send(responder, &Empty {}).await
}

fn echo_request(command: &ActionCommand) -> Result<EchoRequest, Status> {
    let payload = command.payload.as_ref().ok_or_else(|| Status::new(Code::InvalidArgument, "command without payload"))?;
    if payload.type_url != "type.googleapis.com/example.echo.EchoRequest" {
        return Err(Status::new(Code::InvalidArgument, format!("unexpected payload type {}", payload.type_url)));
    }
    EchoRequest::decode(payload.value.clone()).map_err(bad)
}

/// Command metadata a reply echoes back as `<key>-seen`: a test's own, and
/// the client identity Massa adds on mTLS connections.
const ECHOED_METADATA: [&str; 2] = ["x-echo-request", "x-forwarded-client-cert"];

/// A reply whose metadata names the method and echoes [`ECHOED_METADATA`].
fn reply(text: String, method: &str, metadata: Option<&Metadata>) -> ActionResponse {
    let mut entries = vec![string_entry("x-echo-method", method)];
    for entry in metadata.into_iter().flat_map(|m| &m.entries) {
        if let (true, Some(Value::StringValue(v))) = (ECHOED_METADATA.contains(&entry.key.as_str()), &entry.value) {
            entries.push(string_entry(&format!("{}-seen", entry.key), v));
        }
    }
    ActionResponse {
        response: Some(Response::Reply(Reply {
            payload: Some(any("example.echo.EchoReply", &EchoReply { text })),
            metadata: Some(Metadata { entries }),
        })),
        side_effects: Vec::new(),
    }
}

fn failure(description: &str) -> ActionResponse {
    ActionResponse {
        response: Some(Response::Failure(Failure { command_id: 0, description: description.to_owned(), restart: false })),
        side_effects: Vec::new(),
    }
}

fn string_entry(key: &str, value: &str) -> MetadataEntry {
    MetadataEntry { key: key.to_owned(), value: Some(Value::StringValue(value.to_owned())) }
}

fn any(type_name: &str, message: &impl Message) -> Any {
    Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec().into() }
}

fn bad(e: prost::DecodeError) -> Status {
    Status::new(Code::InvalidArgument, format!("undecodable message: {e}"))
}

async fn send(responder: &mut Responder, message: &impl Message) -> Result<(), Status> {
    responder
        .send(message.encode_to_vec().into())
        .await
        .map_err(|e| Status::new(Code::Cancelled, format!("proxy went away: {e}")))
}

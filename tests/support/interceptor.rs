//! The recording interceptor of the TCK, ours: a gRPC pass-through between
//! the proxy and the user function that records every protocol message in
//! both directions, so tests can assert exact message sequences.
//!
//! Every call through it becomes a [`Connection`] when it starts, in one
//! global order. Each connection keeps what the proxy sent (`input`) and
//! what the function answered (`output`), each ended by `Complete` on a
//! clean end or `Error` otherwise.

use std::{
    rc::Rc,
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use massa::http2::{server::Incoming, Headers, Reason};

use massa::config::IoDriver;
use massa::grpc::{Code, MessageReader, Responder, Status};
use massa::runtime::Notify;
use massa::grpc::budget::Budget;
use massa::server::{serve_h2, H2Options, Service};
use massa::userfn::{CallResponse, Pool, Target};

const MAX: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Message(Bytes),
    Complete,
    Error(String),
}

#[derive(Debug, Default, Clone)]
pub struct Connection {
    pub path: String,
    pub input: Vec<Event>,
    pub output: Vec<Event>,
}

#[derive(Default)]
pub struct Recorder {
    connections: Mutex<Vec<Connection>>,
    changed: Condvar,
}

impl Recorder {
    fn update(&self, f: impl FnOnce(&mut Vec<Connection>)) {
        f(&mut self.connections.lock().unwrap());
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for `ready` to hold over the recorded calls.
    pub fn wait<T>(&self, timeout: Duration, mut ready: impl FnMut(&[Connection]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.connections.lock().unwrap();
        loop {
            if let Some(v) = ready(&guard) {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self.changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn snapshot(&self) -> Vec<Connection> {
        self.connections.lock().unwrap().clone()
    }
}

/// A running interceptor; stops with the test process.
pub struct Interceptor {
    pub port: u16,
    pub recorder: Arc<Recorder>,
}

impl Interceptor {
    /// Listens on a free port and forwards to the function on `upstream`.
    pub fn start(upstream: u16) -> Interceptor {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let recorder = Arc::new(Recorder::default());
        let rec = recorder.clone();
        std::thread::spawn(move || {
            let serve = async move {
                listener.set_nonblocking(true).unwrap();
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                let pool = Rc::new(Pool::new(Target::Tcp { host: "127.0.0.1".into(), port: upstream }, 1));
                let service = Rc::new(Forwarder { pool, recorder: rec });
                let shutdown = Notify::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let options = H2Options::user_function(None);
                    monoio::spawn(serve_h2(stream, BytesMut::new(), service.clone(), shutdown.clone(), options, Budget::unlimited()));
                }
            };
            massa::runtime::block_on(IoDriver::Epoll, serve).unwrap();
        });
        Interceptor { port, recorder }
    }
}

struct Forwarder {
    pool: Rc<Pool>,
    recorder: Arc<Recorder>,
}

/// Headers a gRPC layer sets itself; everything else is call metadata.
fn metadata(headers: &Headers) -> Headers {
    let mut out = Headers::new();
    for (name, v) in headers.regular() {
        if name != b"content-type" && name != b"te" && !name.starts_with(b"grpc-") {
            out.push(name, v);
        }
    }
    out
}

impl Service for Forwarder {
    async fn call(self: Rc<Self>, request: Incoming, _budget: Rc<Budget>) {
        let Incoming { head, recv: body, send: respond } = request;
        let path = head.get_str(b":path").unwrap_or("").to_owned();
        let mut index = 0;
        self.recorder.update(|c| {
            index = c.len();
            c.push(Connection { path: path.clone(), ..Default::default() });
        });
        let record = |input: bool, e: Event| {
            self.recorder.update(|c| if input { c[index].input.push(e) } else { c[index].output.push(e) })
        };
        let mut responder = Responder::new(respond);
        let (mut send, response) = match self.pool.open(&self.pool.endpoint(&path), Some(&metadata(&head))).await {
            Ok(call) => call,
            Err(status) => return responder.finish(&status),
        };
        let mut reader = MessageReader::new(body, MAX);
        let pump = async {
            loop {
                match reader.message().await {
                    Ok(Some(m)) => {
                        record(true, Event::Message(m.clone()));
                        let (head, tail) = massa::grpc::encode_message(m);
                        let _ = send.send_data(head, false);
                        if let Some(tail) = tail {
                            let _ = send.send_data(tail, false);
                        }
                    }
                    Ok(None) => {
                        record(true, Event::Complete);
                        let _ = send.send_data(Bytes::new(), true);
                        return;
                    }
                    Err(e) => {
                        record(true, Event::Error(e.into_client_status().to_string()));
                        send.send_reset(Reason::CANCEL);
                        return;
                    }
                }
            }
        };
        let relay = async {
            let mut upstream = match CallResponse::open(response, MAX).await {
                Ok(r) => r,
                Err(status) => {
                    record(false, Event::Error(status.to_string()));
                    return Err(status);
                }
            };
            let _ = responder.send_headers(Some(&metadata(upstream.headers())));
            loop {
                match upstream.message().await {
                    Ok(Some(m)) => {
                        record(false, Event::Message(m.clone()));
                        if responder.send(m).await.is_err() {
                            return Err(Status::new(Code::Cancelled, "proxy went away"));
                        }
                    }
                    Ok(None) => {
                        record(false, Event::Complete);
                        return Ok(());
                    }
                    Err(status) => {
                        record(false, Event::Error(status.to_string()));
                        return Err(status);
                    }
                }
            }
        };
        let result = {
            let mut pump = std::pin::pin!(pump);
            let mut relay = std::pin::pin!(relay);
            let mut pumping = true;
            loop {
                monoio::select! {
                    _ = &mut pump, if pumping => pumping = false,
                    r = &mut relay => break r,
                }
            }
        };
        match result {
            Ok(()) => responder.finish(&Status::ok()),
            Err(status) => responder.finish(&status),
        }
    }
}

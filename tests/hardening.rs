//! Hostile clients and failing functions against the real binary: each
//! attack from issue 9 reproduced over real sockets (raw bytes, raw h2
//! frames with our own windows), asserting the bound it must respect and
//! that the proxy keeps serving everyone else.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use http::{HeaderValue, Method, Request};
use massa::grpc::{encode_prost, Code, Status};
use massa::proto::com::example::shoppingcart::{AddLineItem, Cart, GetShoppingCart};
use massa::proto::example::echo::EchoRequest;
use massa::store::{RocksStore, Store};
use prost::Message;
use support::*;

const CART: &str = "com.example.shoppingcart.ShoppingCart";

async fn unary(c: &Client, method: &str, request: &impl Message) -> Result<Vec<u8>, Status> {
    let (_, msgs, status) = c.call(&format!("/{CART}/{method}"), None, vec![encode_prost(request)]).await;
    status?;
    Ok(msgs.into_iter().next().map(|m| m.to_vec()).unwrap_or_default())
}

async fn add(c: &Client, user: &str, product: &str, name: &str) -> Result<(), Status> {
    unary(c, "AddItem", &AddLineItem { user_id: user.into(), product_id: product.into(), name: name.into(), quantity: 1 }).await.map(drop)
}

async fn cart(c: &Client, user: &str) -> Result<Vec<String>, Status> {
    let bytes = unary(c, "GetCart", &GetShoppingCart { user_id: user.into() }).await?;
    Ok(Cart::decode(bytes.as_slice()).unwrap().items.into_iter().map(|i| i.product_id).collect())
}

/// Resident memory of a process, in KiB.
/// The gRPC status in headers the `h2` crate (our independent peer) read.
fn h2_status(headers: &http::HeaderMap) -> Option<Status> {
    let mut h = massa::http2::Headers::new();
    for (k, v) in headers {
        h.push(k.as_str().as_bytes(), v.as_bytes());
    }
    Status::from_headers(&h)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An h2 connection of our own whose stream window we choose (0: the proxy
/// may send headers but no data), driven on the current runtime.
async fn raw_h2(port: u16, window: u32) -> SendRequest<Bytes> {
    let tcp = monoio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let io = tcp.try_into_poll_io().map_err(|(e, _)| e).unwrap();
    let (send, conn) = h2::client::Builder::new().initial_window_size(window).handshake::<_, Bytes>(io).await.unwrap();
    monoio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Starts a gRPC call on a raw connection; the caller decides whether to
/// ever read the answer.
async fn start_call(h2: &SendRequest<Bytes>, path: &str, framed: Bytes) -> (ResponseFuture, h2::SendStream<Bytes>) {
    let mut ready = h2.clone().ready().await.unwrap();
    let (response, mut send) = ready.send_request(grpc_request(path), false).unwrap();
    send.send_data(framed, true).unwrap();
    (response, send)
}

/// The head of a gRPC call to `path`.
fn grpc_request(path: &str) -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = format!("http://127.0.0.1{path}").parse().unwrap();
    req.headers_mut().insert("content-type", HeaderValue::from_static("application/grpc"));
    req.headers_mut().insert("te", HeaderValue::from_static("trailers"));
    req
}

/// A raw TCP connection that reports whether the proxy closed it.
fn closed_within(mut s: TcpStream, patience: Duration) -> bool {
    s.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < patience {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn entity_ids_with_nul_never_reach_another_entitys_journal() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--snapshot-every", "0"]);
    let data = TempDir::new("nul-ids");
    let flags = ["--data-dir", data.path(), "--durability", "async", "--workers", "1"];
    let m = start_massa(fn_port, &flags);
    run(async {
        let c = Client::new(m.port);
        for i in 0..3 {
            add(&c, "V\u{0}Z", &format!("foreign-{i}"), "x").await.unwrap();
        }
        // More events under NUL-extended ids than one scan step (4096) holds,
        // in parallel so the test stays short.
        let writers = (0..32).map(|w| {
            let c = Client::new(m.port);
            async move {
                for i in 0..130 {
                    add(&c, &format!("V\u{0}{w}"), &format!("p{i}"), "x").await.unwrap();
                }
            }
        });
        futures_join_all(writers).await;
    });
    drop(m);
    let m = start_massa(fn_port, &flags);
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, "V").await.unwrap(), Vec::<String>::new(), "V never saw its neighbours' events");
        assert_eq!(cart(&c, "V\u{0}Z").await.unwrap(), ["foreign-0", "foreign-1", "foreign-2"]);
        assert_eq!(cart(&c, "V\u{0}7").await.unwrap().len(), 130);
    });
}

/// Runs futures concurrently on the current task.
async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        handles.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if handles.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Format-1 keys (`j 0 pid 0 eid 0 seq`) as the previous release wrote them.
fn format_one_event(pid: &str, eid: &str, seq: u64, event: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let key = [b"j\0", pid.as_bytes(), b"\0", eid.as_bytes(), b"\0", &seq.to_be_bytes()].concat();
    (key, event.to_vec())
}

#[test]
fn a_format_one_data_directory_is_migrated_and_a_foreign_one_refused() {
    use massa::proto::com::example::shoppingcart::persistence::ItemAdded;
    use massa::proto::com::example::shoppingcart::persistence::LineItem;
    use massa::proto::google::protobuf::Any;
    let data = TempDir::new("format-one");
    {
        let kv = RocksStore::open(&data.0).unwrap();
        let mut ops = Vec::new();
        for (eid, seq, product) in [("V", 1, "mine"), ("V\0Z", 1, "foreign")] {
            let added = ItemAdded { item: Some(LineItem { product_id: product.into(), name: product.into(), quantity: 1 }) };
            let any = Any { type_url: "type.googleapis.com/com.example.shoppingcart.persistence.ItemAdded".into(), value: added.encode_to_vec().into() };
            let (k, v) = format_one_event("shopping-cart", eid, seq, &any.encode_to_vec());
            ops.push(massa::store::Op::Put(k, v));
        }
        ops.push(massa::store::Op::Put(b"o".to_vec(), 2u64.to_be_bytes().to_vec()));
        kv.commit(ops, &[], true).unwrap();
    }
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--snapshot-every", "0"]);
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    m.proc.must_log("data directory migrated to format 2");
    run(async {
        let c = Client::new(m.port);
        assert_eq!(cart(&c, "V").await.unwrap(), ["mine"]);
        assert_eq!(cart(&c, "V\0Z").await.unwrap(), ["foreign"]);
    });
    drop(m);

    let foreign = TempDir::new("foreign-dir");
    RocksStore::open(&foreign.0).unwrap().commit(vec![massa::store::Op::Put(b"hello".to_vec(), b"x".to_vec())], &[], true).unwrap();
    let mut m = spawn_massa(fn_port, &["--data-dir", foreign.path()]);
    assert_ne!(m.proc.must_exit(), 0);
    assert!(m.proc.log().contains("not Massa's"), "{}", m.proc.log());
}

#[test]
fn zero_window_readers_cannot_pin_replies_in_the_proxy() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &["--snapshot-every", "0"]);
    let flags = ["--store", "memory", "--workers", "1", "--connection-buffer", "4MiB", "--send-stall-timeout", "3s"];
    let m = start_massa(fn_port, &flags);
    let pid = m.proc.child.id();
    run(async {
        let c = Client::new(m.port);
        add(&c, "big", "blob", &"x".repeat(1 << 20)).await.unwrap();
        assert_eq!(cart(&c, "big").await.unwrap(), ["blob"]);
        let before = rss_kib(pid);
        // Three connections that never open their windows, 256 GetCart of
        // the 1 MiB cart each (the attack that once held 3.5 GiB).
        let (mut pinned, mut connections) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let h2 = raw_h2(m.port, 0).await;
            for _ in 0..256 {
                pinned.push(start_call(&h2, &format!("/{CART}/GetCart"), encode_prost(&GetShoppingCart { user_id: "big".into() })).await);
            }
            connections.push(h2);
        }
        monoio::time::sleep(Duration::from_secs(2)).await;
        let during = rss_kib(pid);
        // A well-behaved client is served meanwhile.
        assert_eq!(cart(&c, "big").await.unwrap(), ["blob"]);
        assert_eq!(c.say("still here").await.unwrap(), "still here");
        let grown = during.saturating_sub(before);
        assert!(grown < 48 * 1024, "proxy grew by {grown} KiB under 768 unread 1 MiB replies (bound: 3 × 4 MiB buffers)");
        drop((pinned, connections));
    });
}

#[test]
fn a_stalled_streaming_reader_only_hurts_itself() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--workers", "1", "--send-stall-timeout", "2s"]);
    run(async {
        // 10 MiB of replies, more than the function connection's stream
        // window, to a client that reads none of it.
        let words = vec!["w".repeat(1024); 10 * 1024].join(" ");
        let h2 = raw_h2(m.port, 0).await;
        let (response, _send) = start_call(&h2, "/example.echo.Echo/Split", encode_prost(&EchoRequest { text: words, ..Default::default() })).await;
        let response = response.await.unwrap();
        let c = Client::new(m.port);
        for i in 0..200 {
            assert_eq!(c.say(&format!("bystander {i}")).await.unwrap(), format!("bystander {i}"));
        }
        let splits = c.echo("Split", &[text_req("a b c")]).await.unwrap();
        assert_eq!(splits, ["a", "b", "c"], "other streams on the same function connection still flow");
        // The stalled call is reset after the stall timeout.
        let mut body = response.into_body();
        let ended = monoio::time::timeout(PATIENCE, async {
            loop {
                match body.data().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return e.reason(),
                    None => return None,
                }
            }
        })
        .await
        .expect("the stalled stream was never reset");
        assert_eq!(ended, Some(h2::Reason::CANCEL));
        assert_eq!(c.say("after").await.unwrap(), "after");
    });
}

#[test]
fn silent_partial_and_idle_connections_and_half_sent_bodies_time_out() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--handshake-timeout", "1s", "--idle-timeout", "1s", "--body-timeout", "1s"]);
    let connect = || TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    // Nothing sent; half a preface; half an HTTP/1.1 head.
    let silent = connect();
    let mut partial = connect();
    partial.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    let mut head = connect();
    head.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    for (what, s) in [("silent", silent), ("partial preface", partial), ("partial head", head)] {
        assert!(closed_within(s, Duration::from_secs(10)), "{what} connection was not closed");
    }
    run(async {
        // An idle h2 connection gets GOAWAY and goes away.
        let h2 = raw_h2(m.port, 65535).await;
        assert_eq!(Client::new(m.port).say("warm").await.unwrap(), "warm");
        monoio::time::sleep(Duration::from_secs(4)).await;
        assert!(!answers(&h2).await, "idle connection still accepts streams");
        // A unary request whose body stops half way fails in time.
        let h2 = raw_h2(m.port, 65535).await;
        let (response, mut send) = h2.clone().ready().await.unwrap().send_request(grpc_request("/example.echo.Echo/Say"), false).unwrap();
        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2]), false).unwrap();
        let response = monoio::time::timeout(Duration::from_secs(10), response).await.expect("no answer to a half body").unwrap();
        let status = h2_status(response.headers()).expect("trailers-only status");
        assert_eq!(status.code, Code::DeadlineExceeded, "{status}");
        drop(send);
    });
}

#[test]
fn connections_over_the_limit_get_a_clear_refusal_in_their_protocol() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--max-connections", "20", "--handshake-timeout", "30s"]);
    let connect = || TcpStream::connect(("127.0.0.1", m.port)).unwrap();
    let held: Vec<_> = (0..20).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = connect();
    extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("connection limit reached"), "{answer:?}");
    let mut extra = connect();
    extra.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    let mut frames = Vec::new();
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = extra.read_to_end(&mut frames);
    // SETTINGS (9 bytes), then a GOAWAY frame (type 7) with the reason.
    assert_eq!(frames.get(12), Some(&0x7), "{frames:?}");
    assert!(frames.ends_with(b"connection limit reached"), "{frames:?}");
    m.proc.must_log("connection limit reached; refusing");
    drop(held);
    // Once connections close, new clients are served again.
    let served = serves_again(m.port);
    assert!(served);
}

/// Whether a fresh stream on `h2` still gets an answer.
async fn answers(h2: &SendRequest<Bytes>) -> bool {
    let Ok(mut ready) = h2.clone().ready().await else { return false };
    let Ok((response, mut send)) = ready.send_request(grpc_request("/example.echo.Echo/Say"), false) else { return false };
    if send.send_data(encode_prost(&text_req("x")), true).is_err() {
        return false;
    }
    matches!(monoio::time::timeout(Duration::from_secs(2), response).await, Ok(Ok(_)))
}

#[test]
fn a_burst_of_new_keys_never_exceeds_the_active_entity_cap() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--workers", "1", "--max-active-entities-per-core", "20"]);
    let admin = m.admin;
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        for _ in 0..100 {
            peak = peak.max(metric(admin, "massa_active_entities"));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    run(async {
        let burst = (0..8).map(|w| {
            let c = Client::new(m.port);
            async move {
                for i in 0..40 {
                    match add(&c, &format!("k{w}-{i}"), "p", "x").await {
                        Ok(()) => {}
                        Err(s) => assert_eq!(s.code, Code::ResourceExhausted, "{s}"),
                    }
                }
            }
        });
        futures_join_all(burst).await;
    });
    let peak = sampler.join().unwrap();
    assert!(peak <= 20, "{peak} entities active with a cap of 20");
    assert!(metric(m.admin, "massa_active_entities") <= 20);
    assert!(metric(m.admin, "massa_entity_activations_total") >= 300, "the burst was served, not refused wholesale");
    run(async { assert_eq!(Client::new(m.port).say("after").await.unwrap(), "after") });
}

#[test]
fn a_call_abandoned_while_connecting_does_not_wedge_the_connection_slot() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let gate = Gate::start(fn_port);
    let m = start_massa(gate.port, &["--store", "memory", "--workers", "1", "--user-function-connections", "1"]);
    run(async { assert_eq!(Client::new(m.port).say("up").await.unwrap(), "up") });
    // The function's connection drops and a new TCP connect hangs, so the
    // proxy's reconnect is under way when the client's deadline drops the
    // call.
    gate.black_hole();
    run(async {
        let c = Client::new(m.port);
        let (_, _, status) = c.call("/example.echo.Echo/Say", Some(&header("grpc-timeout", "300m")), vec![encode_prost(&text_req("x"))]).await;
        assert_eq!(status.unwrap_err().code, Code::DeadlineExceeded);
    });
    gate.open();
    run(async {
        let c = Client::new(m.port);
        let answered = monoio::time::timeout(PATIENCE, c.say("again")).await.expect("the slot stayed wedged");
        assert_eq!(answered.unwrap(), "again");
    });
}

/// A TCP forwarder in front of the function that can turn into a black
/// hole: connections cut, new connects left hanging (full accept queue).
struct Gate {
    port: u16,
    listener: std::net::TcpListener,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<TcpStream>>>,
    queued: Mutex<Vec<TcpStream>>,
}

impl Gate {
    fn start(target: u16) -> Gate {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: listening again on our own socket only changes its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, links) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::<TcpStream>::new())));
        let (accepting, is_open, conns) = (listener.try_clone().unwrap(), open.clone(), links.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                let accepted = if is_open.load(Ordering::SeqCst) { accepting.accept().ok() } else { None };
                let Some((client, _)) = accepted else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let pairs = [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream.try_clone().unwrap(), client.try_clone().unwrap())];
                for (mut from, mut to) in pairs {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                conns.lock().unwrap().extend([client, upstream]);
            }
        });
        Gate { port, listener, open, links, queued: Mutex::default() }
    }

    fn black_hole(&self) {
        self.open.store(false, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        for link in self.links.lock().unwrap().drain(..) {
            let _ = link.shutdown(std::net::Shutdown::Both);
        }
        // Fill the accept queue so the next SYN goes unanswered.
        let mut queued = self.queued.lock().unwrap();
        for _ in 0..2 {
            if let Ok(s) = TcpStream::connect_timeout(&self.listener.local_addr().unwrap(), Duration::from_millis(200)) {
                queued.push(s);
            }
        }
    }

    fn open(&self) {
        self.queued.lock().unwrap().clear();
        self.open.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_function_that_never_answers_fails_the_command_and_the_entity_restarts() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--entity-command-timeout", "1s"]);
    run(async {
        let c = Client::new(m.port);
        add(&c, "hung", "before", "x").await.unwrap();
        let err = add(&c, "hung", "never", "hang").await.unwrap_err();
        assert_eq!(err.code, Code::DeadlineExceeded, "{err}");
        assert!(err.message.contains("did not answer"), "{err}");
        add(&c, "hung", "after", "x").await.unwrap();
        assert_eq!(cart(&c, "hung").await.unwrap(), ["before", "after"]);
        add(&c, "other", "fine", "x").await.unwrap();
    });
}

#[test]
fn a_function_with_four_streams_gets_more_connections_instead_of_a_hang() {
    let fn_port = free_port();
    let f = start_example_fn(fn_port, &["--max-concurrent-streams", "4"]);
    let m = start_massa(fn_port, &["--store", "memory", "--workers", "1", "--user-function-connections", "1"]);
    run(async {
        let c = Client::new(m.port);
        // Each active entity holds one stream for as long as it lives.
        for i in 0..12 {
            let added = monoio::time::timeout(PATIENCE, add(&c, &format!("s{i}"), "p", "x")).await.expect("hung at the stream limit");
            added.unwrap();
        }
        assert_eq!(c.say("actions too").await.unwrap(), "actions too");
    });
    assert!(m.proc.log().contains("opening another"), "{}", m.proc.log());
    drop(f);
}

#[test]
fn streams_per_connection_are_capped() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--max-concurrent-streams", "2", "--entity-command-timeout", "5s"]);
    run(async {
        let h2 = raw_h2(m.port, 65535).await;
        assert!(answers(&h2).await);
        assert_eq!(h2.current_max_send_streams(), 2, "the proxy's SETTINGS_MAX_CONCURRENT_STREAMS");
        // Two calls that hang hold both streams; a third waits for one.
        let hang = |user: &str| encode_prost(&AddLineItem { user_id: user.into(), product_id: "p".into(), name: "hang".into(), quantity: 1 });
        let a = start_call(&h2, &format!("/{CART}/AddItem"), hang("a")).await;
        let b = start_call(&h2, &format!("/{CART}/AddItem"), hang("b")).await;
        let waiting = monoio::time::timeout(Duration::from_secs(1), h2.clone().ready()).await;
        assert!(waiting.is_err() || !answers(&h2).await, "a third stream was served with two in flight");
        drop((a, b));
    });
}

#[test]
fn request_bytes_a_connection_makes_the_proxy_hold_are_bounded() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let flags = ["--store", "memory", "--connection-buffer", "2MiB", "--entity-command-timeout", "20s", "--body-timeout", "3s"];
    // RSS should show what the proxy holds, not the pages mimalloc keeps
    // cached after the calls' transient copies are freed (measured: 31–35
    // MiB with the default purge delay, 8–15 MiB held). nextest runs each
    // test in its own process, so setting it here touches no other test.
    std::env::set_var("MIMALLOC_PURGE_DELAY", "0");
    let m = start_massa(fn_port, &flags);
    let pid = m.proc.child.id();
    run(async {
        let before = rss_kib(pid);
        let h2 = raw_h2(m.port, 65535).await;
        // Complete requests held by calls that hang: 600 KiB each, so the
        // fourth passes the 2 MiB connection buffer.
        let mut held = Vec::new();
        for i in 0..3 {
            let request = AddLineItem { user_id: format!("h{i}"), product_id: "x".repeat(600 << 10), name: "hang".into(), quantity: 1 };
            held.push(start_call(&h2, &format!("/{CART}/AddItem"), encode_prost(&request)).await);
        }
        monoio::time::sleep(Duration::from_millis(500)).await;
        let request = AddLineItem { user_id: "h3".into(), product_id: "x".repeat(600 << 10), name: "hang".into(), quantity: 1 };
        let (response, _send) = start_call(&h2, &format!("/{CART}/AddItem"), encode_prost(&request)).await;
        let response = monoio::time::timeout(PATIENCE, response).await.expect("no answer").unwrap();
        let status = h2_status(response.headers()).expect("trailers-only status");
        assert_eq!(status.code, Code::ResourceExhausted, "{status}");
        // Half-sent messages on fresh streams are refused the same way.
        let h2b = raw_h2(m.port, 65535).await;
        let mut partial = Vec::new();
        let mut refused = 0;
        for _ in 0..8 {
            let (response, mut send) = h2b.clone().ready().await.unwrap().send_request(grpc_request("/example.echo.Echo/Say"), false).unwrap();
            let mut head = vec![0u8];
            head.extend_from_slice(&(4u32 << 20).to_be_bytes());
            send.send_data(Bytes::from(head), false).unwrap();
            send.send_data(Bytes::from(vec![b'y'; 512 << 10]), false).unwrap();
            partial.push((response, send));
        }
        // Each ends: refused at once, or (the first few, within the buffer)
        // after the body timeout.
        let mut timed_out = 0;
        for (response, _) in partial.iter_mut() {
            let r = monoio::time::timeout(PATIENCE, response).await.expect("a half-sent message was never answered").unwrap();
            match h2_status(r.headers()).map(|s| s.code) {
                Some(Code::ResourceExhausted) => refused += 1,
                Some(Code::DeadlineExceeded) => timed_out += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(refused >= 4, "only {refused} of 8 half-sent 4 MiB messages were refused with a 2 MiB buffer ({timed_out} timed out)");
        let grown = rss_kib(pid).saturating_sub(before);
        assert!(grown < 32 * 1024, "proxy grew by {grown} KiB");
        // Bystanders are fine.
        assert_eq!(Client::new(m.port).say("fine").await.unwrap(), "fine");
        drop((held, partial));
    });
}

#[test]
fn running_out_of_file_descriptors_backs_off_quietly_and_recovers() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    // prlimit (util-linux) caps the proxy's descriptors; the connection
    // limit is set above it so accept itself fails with EMFILE.
    let m = spawn_massa_under(&["prlimit", "--nofile=96:96"], fn_port, &["--store", "memory", "--workers", "1", "--max-connections", "1000"]);
    m.must_be_ready();
    let flood: Vec<_> = (0..150).filter_map(|_| TcpStream::connect(("127.0.0.1", m.port)).ok()).collect();
    std::thread::sleep(Duration::from_secs(3));
    let log = m.proc.log();
    let warnings = log.matches("accept failed; backing off").count();
    assert!(warnings >= 1, "EMFILE never happened (raise the flood); log:\n{log}");
    assert!(warnings <= 2, "{warnings} accept warnings in 3 s: not rate-limited");
    drop(flood);
    let served = serves_again(m.port);
    assert!(served, "never served again after the flood; log:\n{}", m.proc.log());
}

#[test]
fn corrupt_stored_data_is_data_loss_and_shutdown_closes_the_store() {
    let data = TempDir::new("corrupt");
    {
        let kv = RocksStore::open(&data.0).unwrap();
        massa::store::EntityStore::open(Box::new(kv), None).unwrap();
    }
    {
        // An event key one byte short of its sequence number.
        let kv = RocksStore::open(&data.0).unwrap();
        let mut key = massa::store::keys::events_of("shopping-cart", "broken");
        key.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1]);
        kv.commit(vec![massa::store::Op::Put(key, b"junk".to_vec())], &[], true).unwrap();
    }
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--data-dir", data.path()]);
    run(async {
        let c = Client::new(m.port);
        let err = cart(&c, "broken").await.unwrap_err();
        assert_eq!(err.code, Code::DataLoss, "{err}");
        add(&c, "fine", "p", "x").await.unwrap();
    });
    m.proc.signal(libc::SIGTERM);
    let mut m = m;
    assert_eq!(m.proc.must_exit(), 0);
    assert!(m.proc.log().contains("entity store closed"), "{}", m.proc.log());
}

#[test]
fn asynchronous_side_effects_beyond_the_core_limit_run_before_the_reply() {
    let fn_port = free_port();
    let _f = start_example_fn(fn_port, &[]);
    let m = start_massa(fn_port, &["--store", "memory", "--workers", "1", "--max-async-side-effects", "2"]);
    run(async {
        let c = Client::new(m.port);
        // Ten asynchronous side effects of 300 ms each: two may run on
        // their own, the other eight must have finished when the reply
        // arrives (unbounded, none would have).
        let effects: Vec<String> = (0..10).map(|i| format!("slow:{i}")).collect();
        let request = EchoRequest { text: "burst".into(), side_effects: effects, synchronous: false, ..Default::default() };
        assert_eq!(c.echo("Say", &[request]).await.unwrap(), ["burst"]);
        let recorded = c.say_method("Recorded").await;
        let done = recorded.split(',').filter(|t| t.starts_with("slow:")).count();
        assert!(done >= 8, "only {done} of 10 side effects done at the reply: {recorded:?}");
        // The two that ran on their own finish too.
        let all = eventually("all ten side effects", || async {
            let r = c.say_method("Recorded").await;
            (r.split(',').filter(|t| t.starts_with("slow:")).count() == 10).then_some(r)
        })
        .await;
        assert_eq!(all.split(',').count(), 10);
    });
}

impl Client {
    /// Calls an Echo method that takes no text and returns the reply text.
    async fn say_method(&self, method: &str) -> String {
        self.echo(method, &[EchoRequest::default()]).await.unwrap().remove(0)
    }
}

//! Both roles of our HTTP/2 against each other over a real socket pair.

use std::{future::poll_fn, rc::Rc};

use bytes::{Bytes, BytesMut};

use super::client::{self, grpc_request_head};
use super::server::{Connection, GRPC_HEAD};
use super::{Config, Headers};

fn config(window: u32) -> Config {
    Config { max_concurrent_streams: 100, stream_window: window, connection_window: window * 4, max_header_list_size: 16 << 10 }
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    crate::runtime::block_on(crate::config::IoDriver::Epoll, f).expect("runtime");
}

fn pair() -> (monoio::net::UnixStream, monoio::net::UnixStream) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (monoio::net::UnixStream::from_std(a).unwrap(), monoio::net::UnixStream::from_std(b).unwrap())
}

/// An echo server: each request's body comes back whole, then trailers.
fn echo_server(socket: monoio::net::UnixStream, window: u32) {
    monoio::spawn(async move {
        let conn = Rc::new(Connection::new(config(window)));
        conn.run(socket, BytesMut::new(), |mut incoming| {
            monoio::spawn(async move {
                let mut body = Vec::new();
                while let Some(chunk) = incoming.recv.data().await {
                    let chunk = chunk.unwrap();
                    incoming.recv.release_capacity(chunk.len());
                    body.extend_from_slice(&chunk);
                }
                let send = &mut incoming.send;
                send.send_head(&GRPC_HEAD, None, false).unwrap();
                let mut body = Bytes::from(body);
                while !body.is_empty() {
                    let cap = poll_fn(|cx| send.poll_capacity(cx)).await.unwrap();
                    send.send_data(body.split_to(cap.min(body.len())), false).unwrap();
                }
                let mut trailers = Headers::new();
                trailers.push(b"grpc-status", b"0");
                send.send_trailers(trailers).unwrap();
            });
        })
        .await;
    });
}

async fn round_trip(c: &client::Client, body: Bytes) -> (Bytes, Headers) {
    let head = grpc_request_head("/a.B/C", "localhost");
    let (mut send, response) = c.send_request(&head, None, false).unwrap();
    send.send_data(body, true).unwrap();
    let mut response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut got = Vec::new();
    while let Some(chunk) = response.body.data().await {
        let chunk = chunk.unwrap();
        response.body.release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    let trailers = response.body.trailers().await.unwrap().unwrap();
    (got.into(), trailers)
}

#[test]
fn bodies_larger_than_every_window_pass_both_ways() {
    run(async {
        let (a, b) = pair();
        echo_server(a, 64 * 1024);
        let c = client::connect(b, config(64 * 1024));
        let body: Bytes = (0..3 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
        let (got, trailers) = round_trip(&c, body.clone()).await;
        assert_eq!(got.len(), body.len());
        assert!(got == body);
        assert_eq!(trailers.get(b"grpc-status"), Some(&b"0"[..]));
    });
}

#[test]
fn many_concurrent_streams_share_one_connection() {
    run(async {
        let (a, b) = pair();
        echo_server(a, 1 << 20);
        let c = Rc::new(client::connect(b, config(1 << 20)));
        let tasks: Vec<_> = (0..50u32)
            .map(|i| {
                let c = c.clone();
                monoio::spawn(async move {
                    let body = Bytes::from(vec![i as u8; 1000 + i as usize * 997]);
                    let (got, _) = round_trip(&c, body.clone()).await;
                    assert!(got == body, "stream {i}");
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        assert_eq!(c.num_active_streams(), 0);
    });
}

//! The public port: one SO_REUSEPORT listener per core, protocol detection
//! on each connection (h2c gRPC, HTTP/1.1, or garbage), and the h2 server.

mod h2conn;
pub mod http1;
mod sniff;

use std::{cell::Cell, net::SocketAddr, rc::Rc, time::Duration};

use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use tracing::{debug, warn};

pub use h2conn::{serve_h2, Service};
pub use sniff::{classify, sniff, Prefixed, Protocol};

use crate::runtime::Notify;

/// Pending connections per core's listener.
const BACKLOG: i32 = 4096;

/// Binds this core's listener on the shared port.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind_with_config(addr, &ListenerOpts::new().reuse_port(true).reuse_addr(true).backlog(BACKLOG))
}

/// Counts live connections so a draining core knows when it is done.
#[derive(Clone, Default)]
pub struct Connections(Rc<Cell<usize>>);

impl Connections {
    pub fn live(&self) -> usize {
        self.0.get()
    }

    fn enter(&self) -> ConnectionGuard {
        self.0.set(self.0.get() + 1);
        ConnectionGuard(self.clone())
    }
}

struct ConnectionGuard(Connections);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let c = &(self.0).0;
        c.set(c.get() - 1);
    }
}

/// Accepts until `shutdown` fires, handing each connection to `service`.
pub async fn accept_loop<S: Service>(listener: TcpListener, service: Rc<S>, shutdown: Notify, connections: Connections) {
    loop {
        let accepted = monoio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let guard = connections.enter();
                let service = service.clone();
                let shutdown = shutdown.clone();
                monoio::spawn(async move {
                    handle(stream, peer, service, shutdown).await;
                    drop(guard);
                });
            }
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                warn!(error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn handle<S: Service>(stream: TcpStream, peer: SocketAddr, service: Rc<S>, shutdown: Notify) {
    let _ = stream.set_nodelay(true);
    let mut io = match stream.try_into_poll_io() {
        Ok(io) => io,
        Err((e, _)) => return warn!(error = %e, "cannot poll connection"),
    };
    match sniff(&mut io).await {
        Ok((Protocol::H2, prefix)) => serve_h2(Prefixed::new(prefix, io), service, shutdown).await,
        Ok((Protocol::Http1, prefix)) => http1::answer_public(Prefixed::new(prefix, io)).await,
        Ok((Protocol::Unknown, _)) => debug!(%peer, "closing connection that speaks neither HTTP/2 nor HTTP/1.1"),
        Err(e) => debug!(%peer, error = %e, "connection closed before its protocol was known"),
    }
}

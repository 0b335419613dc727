//! TLS on the public port: certificates from PEM files (reloaded when they
//! change or on SIGHUP), TLS 1.2 and 1.3 with ALPN `h2` and `http/1.1`,
//! and optionally required client certificates (mTLS) whose subject reaches
//! the function with every request.

mod identity;
mod stream;

use std::{
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    rc::Rc,
    sync::{Arc, PoisonError, RwLock},
    thread,
    time::Duration,
};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig, ServerConnection,
};
use tracing::{debug, error, info, warn};

pub use identity::{forward_client_cert, CLIENT_CERT_HEADER};
pub use stream::{HandshakeError, TlsStream};

use super::http::{HttpRequest, HttpService, ResponseWriter};
use super::Service;
use crate::grpc::budget::Budget;
use crate::http2::server::Incoming;

/// How often the certificate files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The PEM files of the TLS configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    /// Certificate chain, end entity first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates that sign the clients' certificates; `None`: no
    /// client certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Pem { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{}: no certificate in it", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: {source}", path.display())]
    Rejected { path: PathBuf, source: rustls::Error },
    #[error("client CA {}: {source}", path.display())]
    ClientCa { path: PathBuf, source: rustls::server::VerifierBuilderError },
}

/// Hands each new connection the current configuration; a reload swaps
/// it, and connections already open keep the one they started with.
pub struct Acceptor {
    files: Files,
    current: RwLock<Arc<ServerConfig>>,
}

impl Acceptor {
    pub fn load(files: Files) -> Result<Acceptor, LoadError> {
        let config = server_config(&files)?;
        Ok(Acceptor { files, current: RwLock::new(Arc::new(config)) })
    }

    /// Handshakes on `tcp` within `timeout`. `None` when it failed (logged:
    /// a refused client certificate as a warning, the rest at debug).
    pub async fn accept(&self, tcp: monoio::net::TcpStream, peer: SocketAddr, timeout: Duration) -> Option<Accepted> {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        let session = ServerConnection::new(config).map_err(|e| warn!(%peer, error = %e, "cannot start a TLS session")).ok()?;
        let stream = match crate::runtime::timeout(timeout, TlsStream::accept(tcp, session)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(HandshakeError::Tls(e @ (rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)))) => {
                warn!(%peer, error = %e, "TLS handshake refused: client certificate not accepted");
                return None;
            }
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed; closing");
                return None;
            }
            Err(_) => {
                debug!(%peer, "TLS handshake not done in time; closing");
                return None;
            }
        };
        let client_cert = stream.with_session(|s| s.peer_certificates().and_then(|c| c.first()).and_then(|c| identity::header_value(c)));
        if self.files.client_ca.is_some() && client_cert.is_none() {
            // rustls verified it, so only an unreadable subject gets here.
            warn!(%peer, "client certificate subject unreadable; closing");
            return None;
        }
        Some(Accepted { stream, client_cert: client_cert.map(|v| Rc::from(v.into_bytes())) })
    }

    /// Loads the files again; on error the current configuration stays.
    fn reload(&self) -> Result<(), LoadError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// Reloads on SIGHUP and when a file's identity, size or mtime changes
    /// (checked every [`WATCH_EVERY`] by a thread of its own), logging the
    /// outcome.
    pub fn watch(self: &Arc<Acceptor>) -> Result<(), String> {
        let mut hangups = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])
            .map_err(|e| format!("installing the SIGHUP handler: {e}"))?;
        let (tx, rx) = flume::unbounded();
        thread::Builder::new()
            .name("massa-sighup".to_owned())
            .spawn(move || {
                for _ in hangups.forever() {
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let acceptor = self.clone();
        thread::Builder::new()
            .name("massa-tls-watch".to_owned())
            .spawn(move || {
                let mut seen = acceptor.files.fingerprint();
                loop {
                    let trigger = match rx.recv_timeout(WATCH_EVERY) {
                        Ok(()) => "SIGHUP",
                        Err(flume::RecvTimeoutError::Timeout) => "files changed",
                        Err(flume::RecvTimeoutError::Disconnected) => return,
                    };
                    let now = acceptor.files.fingerprint();
                    if trigger != "SIGHUP" && now == seen {
                        continue;
                    }
                    seen = now;
                    match acceptor.reload() {
                        Ok(()) => info!(trigger, cert = %acceptor.files.cert.display(), "reloaded TLS certificate"),
                        Err(e) => error!(trigger, error = %e, "TLS certificate reload failed; keeping the previous one"),
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A connection after its handshake.
pub struct Accepted {
    pub stream: TlsStream,
    /// `x-forwarded-client-cert` for its requests (mTLS).
    pub client_cert: Option<Rc<[u8]>>,
}

/// A file's device, inode, mtime (s, ns) and size.
type Stamp = (u64, u64, i64, i64, u64);

impl Files {
    /// What tells a replaced or rewritten file apart.
    fn fingerprint(&self) -> Vec<Option<Stamp>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size())))
            .collect()
    }
}

/// The service of a TLS connection: each request carries the client's
/// certificate subject, or no `x-forwarded-client-cert` at all.
pub struct Identified<S> {
    pub service: Rc<S>,
    pub client_cert: Option<Rc<[u8]>>,
}

impl<S: Service> Service for Identified<S> {
    fn call(self: Rc<Self>, mut request: Incoming, budget: Rc<Budget>) -> impl std::future::Future<Output = ()> + 'static {
        forward_client_cert(&mut request.head, self.client_cert.as_deref());
        self.service.clone().call(request, budget)
    }
}

impl<S: HttpService> HttpService for Identified<S> {
    fn serve_http<'a, W: ResponseWriter + 'a>(
        self: &'a Rc<Self>,
        mut request: HttpRequest,
        writer: &'a mut W,
        budget: &'a Rc<Budget>,
    ) -> impl std::future::Future<Output = ()> + 'a {
        forward_client_cert(&mut request.head, self.client_cert.as_deref());
        self.service.serve_http(request, writer, budget)
    }
}

fn server_config(files: &Files) -> Result<ServerConfig, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    fn rejected(path: &Path) -> impl FnOnce(rustls::Error) -> LoadError + '_ {
        move |source| LoadError::Rejected { path: path.to_owned(), source }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rejected(&files.cert))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(rejected(path))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| LoadError::ClientCa { path: path.clone(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|source| LoadError::Pem { path: files.key.clone(), source })?;
    let mut config = builder.with_single_cert(certificates(&files.cert)?, key).map_err(rejected(&files.key))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let pem = |source| LoadError::Pem { path: path.to_owned(), source };
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if certs.is_empty() {
        return Err(LoadError::NoCertificate(path.to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
    use rustls::{pki_types::ServerName, ClientConfig, ClientConnection};

    use super::*;
    use crate::config::IoDriver;

    /// A directory with a self-signed `localhost` certificate and its key;
    /// removed on drop.
    struct Certs {
        dir: PathBuf,
        files: Files,
        der: CertificateDer<'static>,
    }

    impl Certs {
        fn new(tag: &str) -> Certs {
            let dir = std::env::temp_dir().join(format!("massa-tls-unit-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let files = Files { cert: dir.join("cert.pem"), key: dir.join("key.pem"), client_ca: None };
            let der = Certs::issue(&files);
            Certs { dir, files, der }
        }

        /// Writes a new certificate and key into `files`.
        fn issue(files: &Files) -> CertificateDer<'static> {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            std::fs::write(&files.cert, made.cert.pem()).unwrap();
            std::fs::write(&files.key, made.key_pair.serialize_pem()).unwrap();
            made.cert.der().clone()
        }
    }

    impl Drop for Certs {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn current(acceptor: &Acceptor) -> Arc<ServerConfig> {
        acceptor.current.read().unwrap().clone()
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let certs = Certs::new("load");
        let missing = Files { cert: certs.dir.join("nope.pem"), ..certs.files.clone() };
        let err = Acceptor::load(missing).err().unwrap().to_string();
        assert!(err.contains("nope.pem"), "{err}");

        let empty = certs.dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let err = Acceptor::load(Files { cert: empty, ..certs.files.clone() }).err().unwrap().to_string();
        assert!(err.contains("empty.pem: no certificate"), "{err}");

        // The key of another certificate.
        let other = Files { cert: certs.dir.join("other.pem"), key: certs.dir.join("other-key.pem"), client_ca: None };
        Certs::issue(&other);
        let err = Acceptor::load(Files { key: other.key.clone(), ..certs.files.clone() }).err().unwrap();
        assert!(matches!(err, LoadError::Rejected { .. }), "{err}");

        let err = Acceptor::load(Files { client_ca: Some(certs.dir.join("no-ca.pem")), ..certs.files.clone() }).err().unwrap();
        assert!(err.to_string().contains("no-ca.pem"), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_configuration_and_a_good_one_swaps_it() {
        let certs = Certs::new("reload");
        let acceptor = Acceptor::load(certs.files.clone()).unwrap();
        let first = current(&acceptor);
        std::fs::write(&certs.files.key, "garbage").unwrap();
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&first, &current(&acceptor)));
        Certs::issue(&certs.files);
        acceptor.reload().unwrap();
        assert!(!Arc::ptr_eq(&first, &current(&acceptor)));
    }

    #[test]
    fn fingerprint_sees_a_rewritten_file() {
        let certs = Certs::new("watch");
        let before = certs.files.fingerprint();
        assert_eq!(before, certs.files.fingerprint());
        Certs::issue(&certs.files);
        assert_ne!(before, certs.files.fingerprint());
    }

    /// A client sends 4 MiB while the server echoes it back through the
    /// split halves at the same time (reads and writes interleaved), then
    /// both close with close_notify.
    #[test]
    fn split_stream_echoes_while_reading_and_writing_at_once() {
        let certs = Certs::new("echo");
        let acceptor = Acceptor::load(certs.files.clone()).unwrap();
        let der = certs.der.clone();
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let server = async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut roots = RootCertStore::empty();
                roots.add(der).unwrap();
                let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec()];
                let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap();
                let tcp = std::net::TcpStream::connect(addr).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                tls.write_all(&sent).unwrap();
                tls.conn.send_close_notify();
                tls.flush().unwrap();
                let mut back = Vec::new();
                tls.read_to_end(&mut back).unwrap();
                back
            });
            let (tcp, peer) = listener.accept().await.unwrap();
            let accepted = acceptor.accept(tcp, peer, Duration::from_secs(10)).await.expect("handshake");
            assert_eq!(accepted.stream.with_session(|s| s.alpn_protocol().map(<[u8]>::to_vec)), Some(b"h2".to_vec()));
            assert!(accepted.client_cert.is_none());
            let (mut reader, mut writer) = accepted.stream.into_split();
            let (tx, rx) = flume::unbounded::<Vec<u8>>();
            monoio::spawn(async move {
                loop {
                    let (n, buf) = reader.read(Vec::with_capacity(8192)).await;
                    if n.unwrap() == 0 {
                        break;
                    }
                    tx.send(buf).unwrap();
                }
            });
            while let Ok(chunk) = rx.recv_async().await {
                writer.write_all(chunk).await.0.unwrap();
            }
            writer.shutdown().await.unwrap();
            client
        };
        let client = crate::runtime::block_on(IoDriver::Auto, server).unwrap().0;
        let back = client.join().unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data, "echo differs");
    }
}

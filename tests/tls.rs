//! TLS and mTLS on the public port, exercised by clients that are not ours
//! (grpcurl, Python grpcio, curl, openssl s_client), with certificates made
//! at test time. `tests/run` provides grpcurl (`MASSA_GRPCURL`) and a
//! Python with grpcio (`MASSA_SDK_PYTHON`); curl and openssl come from the
//! system.

mod support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use support::*;

/// What the function sees of the test clients' certificate.
const CLIENT_SUBJECT: &str = r#"Subject="CN=client-1,O=Massa tests""#;
const REFUSED: &str = "TLS handshake refused: client certificate not accepted";
const RELOADED: &str = "reloaded TLS certificate";

/// A certificate authority in a temporary directory, issuing PEM files
/// there as `<name>.pem` and `<name>-key.pem`.
struct Ca {
    dir: TempDir,
    name: &'static str,
    cert: rcgen::Certificate,
    key: KeyPair,
}

#[derive(Clone, Copy, PartialEq)]
enum Use {
    Server,
    Client,
    ExpiredClient,
}

impl Ca {
    fn new(dir: TempDir, name: &'static str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, format!("Massa test {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.0.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca { dir, name, cert, key }
    }

    /// This CA's certificate file.
    fn file(&self) -> String {
        self.path(&format!("{}.pem", self.name))
    }

    fn path(&self, file: &str) -> String {
        format!("{}/{file}", self.dir.path())
    }

    /// Issues `<name>.pem` and `<name>-key.pem`: a server certificate for
    /// localhost and 127.0.0.1 with common name `cn`, or a client one
    /// (`CN=cn,O=Massa tests`).
    fn issue(&self, name: &str, cn: &str, usage: Use) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        if usage != Use::Server {
            dn.push(DnType::OrganizationName, "Massa tests");
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.extended_key_usages =
            vec![if usage == Use::Server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        if usage == Use::ExpiredClient {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

/// The example function behind a Massa with TLS and required client
/// certificates; `ca` signs the server's and the clients' certificates.
struct Setup {
    ca: Ca,
    _function: Proc,
    massa: Massa,
    /// `--tls-cert`, `--tls-key`.
    server: (String, String),
    /// A certificate and key `ca` signed for the clients.
    client: (String, String),
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let ca = Ca::new(TempDir::new(tag), "ca");
        let server = ca.issue("server", "massa-1", Use::Server);
        let client = ca.issue("client", "client-1", Use::Client);
        let fn_port = free_port();
        let function = start_example_fn(fn_port, &[]);
        let tls = ["--tls-cert", &server.0, "--tls-key", &server.1, "--tls-client-ca", &ca.file()];
        let massa = start_massa(fn_port, &tls);
        massa.proc.must_log("TLS on the public port");
        Setup { ca, _function: function, massa, server, client }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.massa.port)
    }

    /// curl over TLS with `args`, trusting the CA.
    fn curl(&self, args: &[&str]) -> Output {
        let out = Command::new("curl").args(["-sS", "-v", "--max-time", "20", "--cacert", &self.ca.file()]).args(args).output();
        out.expect("curl runs (apt-get install curl)")
    }

    /// `openssl s_client` with `args`, trusting the CA and presenting the
    /// client certificate; output and error text.
    fn s_client(&self, args: &[&str]) -> String {
        let (cert, key) = &self.client;
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &self.addr(), "-servername", "localhost", "-CAfile", &self.ca.file()])
            .args(["-cert", cert, "-key", key])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs (apt-get install openssl)");
        text(&out)
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn grpcurl_calls_with_a_client_certificate_and_the_function_sees_its_subject() {
    let how = "run tests/run, which installs grpcurl and sets it (or point it at a grpcurl binary)";
    let grpcurl = require_env("MASSA_GRPCURL", how);
    let s = Setup::new("tls-grpcurl");
    let (cert, key) = &s.client;
    let run = |args: &[&str]| {
        let out = Command::new(&grpcurl).args(["-cacert", &s.ca.file(), "-cert", cert, "-key", key]).args(args).output().unwrap();
        assert!(out.status.success(), "grpcurl {args:?} failed:\n{}", text(&out));
        text(&out)
    };
    let list = run(&[&s.addr(), "list"]);
    assert!(list.lines().any(|l| l == "example.echo.Echo"), "reflection over TLS: {list}");
    // The client's own copy of the header is dropped: only Massa names
    // the caller.
    let spoof = r#"x-forwarded-client-cert: Subject="CN=admin""#;
    let reply = run(&["-v", "-H", spoof, "-d", r#"{"text":"over mtls"}"#, &s.addr(), "example.echo.Echo/Say"]);
    assert!(reply.contains(r#""text": "over mtls""#), "{reply}");
    let seen: Vec<&str> = reply.lines().filter(|l| l.starts_with("x-forwarded-client-cert-seen:")).collect();
    assert_eq!(seen, vec![format!("x-forwarded-client-cert-seen: {CLIENT_SUBJECT}")], "{reply}");
}

/// A Python grpcio client (`MASSA_SDK_PYTHON`'s interpreter): `once` calls
/// Say on a secure channel and prints the reply and the subject the
/// function saw; `reload` calls once, waits for a line on stdin, calls
/// again on the same channel, then tries a new channel.
const GRPCIO_CLIENT: &str = r#"
import sys, grpc
ca, cert, key, addr, mode = sys.argv[1:6]
read = lambda path: open(path, "rb").read()
creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))

def say(channel, text):
    call = channel.unary_unary("/example.echo.Echo/Say")
    body = text.encode()
    spoof = (("x-forwarded-client-cert", 'Subject="CN=admin"'),)
    reply, info = call.with_call(bytes([10, len(body)]) + body, metadata=spoof, timeout=10)
    seen = [v for k, v in info.initial_metadata() if k == "x-forwarded-client-cert-seen"]
    return reply[2:].decode() + " " + "|".join(seen)

channel = grpc.secure_channel(addr, creds)
print("first", say(channel, "one"), flush=True)
if mode == "reload":
    sys.stdin.readline()
    print("second", say(channel, "two"), flush=True)
    try:
        say(grpc.secure_channel(addr, creds), "three")
        print("new ok", flush=True)
    except grpc.RpcError as e:
        print("new", e.code().name, flush=True)
"#;

fn grpcio_client(s: &Setup, ca: &str, mode: &str) -> std::process::Child {
    let how = "run tests/run, which prepares a Python with grpcio and sets it";
    let python = format!("{}/bin/python", require_env("MASSA_SDK_PYTHON", how));
    let (cert, key) = &s.client;
    Command::new(python)
        .args(["-c", GRPCIO_CLIENT, ca, cert, key, &s.addr(), mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs")
}

#[test]
fn python_grpcio_calls_on_a_secure_channel() {
    let s = Setup::new("tls-grpcio");
    let out = grpcio_client(&s, &s.ca.file(), "once").wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("first one {CLIENT_SUBJECT}"), "{}", text(&out));
}

#[test]
fn curl_and_openssl_negotiate_h2_or_http1_by_alpn() {
    let s = Setup::new("tls-alpn");
    let (cert, key) = &s.client;
    let url = format!("https://{}/", s.addr());
    let h2 = s.curl(&["--http2", "--cert", cert, "--key", key, &url]);
    assert!(text(&h2).contains("ALPN: server accepted h2"), "{}", text(&h2));
    assert!(text(&h2).contains("< HTTP/2 "), "an HTTP/2 response: {}", text(&h2));
    let h1 = s.curl(&["--http1.1", "--cert", cert, "--key", key, &url]);
    assert!(text(&h1).contains("ALPN: server accepted http/1.1"), "{}", text(&h1));
    assert!(String::from_utf8_lossy(&h1.stdout).contains("this port serves gRPC, gRPC-Web and HTTP/JSON"), "{}", text(&h1));
    let probe = s.curl(&["--http1.1", "--cert", cert, "--key", key, "-H", "K-Network-Probe: queue", &url]);
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "queue", "{}", text(&probe));

    for alpn in ["h2", "http/1.1"] {
        let out = s.s_client(&["-alpn", alpn]);
        assert!(out.contains(&format!("ALPN protocol: {alpn}")), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    }
    assert!(s.s_client(&["-alpn", "h2"]).contains("TLSv1.3"));
    let tls12 = s.s_client(&["-tls1_2", "-alpn", "h2"]);
    assert!(tls12.contains("Protocol  : TLSv1.2") && tls12.contains("ALPN protocol: h2"), "{tls12}");
}

#[test]
fn wrong_expired_or_missing_client_certificates_are_refused_and_logged() {
    let s = Setup::new("tls-refused");
    let url = format!("https://{}/", s.addr());
    let other = Ca::new(TempDir::new("tls-other-ca"), "other");
    let stranger = other.issue("stranger", "client-1", Use::Client);
    let expired = s.ca.issue("expired", "client-1", Use::ExpiredClient);
    let cases = [(Some(&stranger), "UnknownIssuer"), (Some(&expired), "certificate expired"), (None, "peer sent no certificates")];
    for (n, (client, reason)) in cases.into_iter().enumerate() {
        let mut args = vec!["--http2"];
        if let Some((cert, key)) = client {
            args.extend(["--cert", cert.as_str(), "--key", key.as_str()]);
        }
        args.push(&url);
        let out = s.curl(&args);
        assert!(!out.status.success(), "{reason}: curl got through: {}", text(&out));
        s.massa.proc.must_log(reason);
        let refusals = s.massa.proc.log().matches(REFUSED).count();
        assert_eq!(refusals, n + 1, "one refusal line per client; log:\n{}", s.massa.proc.log());
    }
    let (cert, key) = &s.client;
    assert!(s.curl(&["--http2", "--cert", cert, "--key", key, &url]).status.success(), "the CA's client still gets in");
}

#[test]
fn plaintext_on_the_tls_port_is_closed_cleanly() {
    let s = Setup::new("tls-plaintext");
    for hello in [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let mut tcp = std::net::TcpStream::connect(s.addr()).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        tcp.write_all(hello).unwrap();
        let mut answer = Vec::new();
        // A FIN, no bytes: neither an alert nor a reset.
        tcp.read_to_end(&mut answer).expect("a clean close, not a reset");
        assert!(answer.is_empty(), "{answer:?}");
    }
    let out = s.s_client(&["-alpn", "h2"]);
    assert!(out.contains("ALPN protocol: h2"), "TLS still served: {out}");
}

#[test]
fn new_certificates_reach_new_connections_and_old_connections_keep_working() {
    let s = Setup::new("tls-reload");
    let mut client = grpcio_client(&s, &s.ca.file(), "reload");
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next_line(), format!("first one {CLIENT_SUBJECT}"));

    // A server certificate from a CA the running client does not trust:
    // any new connection of its would fail, so its next call succeeding
    // proves the old connection carried it. Written aside and renamed in,
    // as a secret volume swaps files.
    let new_ca = Ca::new(TempDir::new("tls-new-ca"), "new-ca");
    let (cert, key) = new_ca.issue("server-2", "massa-2", Use::Server);
    std::fs::rename(&key, &s.server.1).unwrap();
    std::fs::rename(&cert, &s.server.0).unwrap();
    s.massa.proc.must_log(RELOADED);

    let out = Command::new("openssl")
        .args(["s_client", "-connect", &s.addr(), "-CAfile", &new_ca.file(), "-cert", &s.client.0, "-key", &s.client.1])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = text(&out);
    assert!(out.contains("CN = massa-2") && out.contains("Verify return code: 0 (ok)"), "a new connection gets the new certificate: {out}");

    writeln!(client.stdin.as_mut().unwrap(), "go").unwrap();
    assert_eq!(next_line(), format!("second two {CLIENT_SUBJECT}"), "the old connection still works");
    assert_eq!(next_line(), "new UNAVAILABLE", "a new connection is not trusted by the old CA");
    assert!(client.wait().unwrap().success());

    // SIGHUP reloads too, whether or not the files changed.
    let reloads = s.massa.proc.log().matches(RELOADED).count();
    s.massa.proc.signal(libc::SIGHUP);
    logs_once_more(&s.massa.proc, RELOADED, reloads);
    assert!(s.massa.proc.log().contains("SIGHUP"));

    // A bad file is refused with the reason, and the certificate in use
    // stays.
    let failed = "TLS certificate reload failed; keeping the previous one";
    let failures = s.massa.proc.log().matches(failed).count();
    std::fs::write(&s.server.0, "not a certificate\n").unwrap();
    logs_once_more(&s.massa.proc, failed, failures);
    let out = s.s_client(&["-alpn", "h2"]);
    assert!(out.contains("CN = massa-2"), "{out}");
}

/// Waits until `needle` has been logged more than `before` times.
fn logs_once_more(proc: &Proc, needle: &str, before: usize) {
    let start = Instant::now();
    while proc.log().matches(needle).count() <= before {
        assert!(start.elapsed() < PATIENCE, "never logged {needle:?} again; log:\n{}", proc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

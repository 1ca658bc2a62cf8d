//! Certificate files reload without a restart and without dropping connections: the real
//! binary, its files replaced, then SIGHUP (or, with `watch`, nothing at all); new handshakes
//! see the new certificate while a connection opened before keeps working.

mod common;

use common::{Killed, free_port};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// Bounds every wait: a hang is a failure.
const DEADLINE: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = common::scratch("reload", name);
    std::fs::create_dir_all(dir.join("gallery")).unwrap();
    std::fs::write(dir.join("gallery/index.html"), "<h1>The Crown</h1>\n").unwrap();
    dir
}

/// A fresh self-signed certificate for localhost, written to `cert.pem` and `key.pem`.
fn write_certificate(dir: &Path) -> CertificateDer<'static> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    // Key first, then the certificate by rename: what a careful renewal tool does.
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("cert.pem.new"), certified.cert.pem()).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    certified.cert.der().clone()
}

/// The binary, killed when dropped.
struct Lenscap {
    child: Killed,
    addr: SocketAddr,
}

impl Lenscap {
    fn start(dir: &Path, watch: bool) -> Lenscap {
        let port = free_port();
        std::fs::write(
            dir.join("lenscap.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin = \"off\"\nroot = \"gallery\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nwatch = {watch}\nreload_settle_time = \"50ms\"\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("lenscap.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lenscap"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(dir.join("lenscap.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < DEADLINE, "lenscap did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Lenscap {
            child: Killed(child),
            addr,
        }
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.0.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A client that trusts exactly `certs` (self-signed, so each is its own root).
fn client(certs: &[&CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add((*cert).clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A resumed session reports the certificate of the session it resumes: every handshake
    // here is a full one, so it shows what the server presents now.
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A kept-alive HTTP/1.1 connection and the certificate its handshake saw.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    leaf: CertificateDer<'static>,
}

async fn connect(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> Connection {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(DEADLINE, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    Connection { sender, leaf }
}

impl Connection {
    /// `GET /` on this connection: the status and body.
    async fn get(&mut self) -> (u16, String) {
        let request = http::Request::get("/")
            .header("host", "localhost")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .header("accept", "text/html")
            .header("accept-language", "en")
            .body(Empty::new())
            .unwrap();
        let response = tokio::time::timeout(DEADLINE, self.sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Opens connections until one sees `wanted` (a reload is asynchronous).
async fn wait_for_certificate(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    wanted: &CertificateDer<'static>,
) -> Connection {
    let started = Instant::now();
    loop {
        let connection = connect(addr, connector).await;
        if connection.leaf == *wanted {
            return connection;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the replaced certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn replaced_certificate_is_served(watch: bool) {
    let dir = scratch(if watch { "watch" } else { "hup" });
    let first = write_certificate(&dir);
    let server = Lenscap::start(&dir, watch);
    let mut old = connect(server.addr, &client(&[&first])).await;
    assert_eq!(old.leaf, first);
    assert_eq!(old.get().await.0, 200);

    let second = write_certificate(&dir);
    if !watch {
        server.hangup();
    }
    let both = client(&[&first, &second]);
    let mut new = wait_for_certificate(server.addr, &both, &second).await;
    let (status, body) = new.get().await;
    assert_eq!(status, 200);
    assert!(body.contains("The Crown"), "{body}");
    // The connection opened under the first certificate is still served.
    let (status, body) = old.get().await;
    assert_eq!(status, 200);
    assert!(body.contains("The Crown"), "{body}");
    let log = std::fs::read_to_string(dir.join("lenscap.log")).unwrap();
    assert!(log.contains("certificate files reloaded"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_after_sighup() {
    replaced_certificate_is_served(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_once_written_when_watched() {
    replaced_certificate_is_served(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_written_pair_keeps_the_running_certificate() {
    let dir = scratch("half");
    let first = write_certificate(&dir);
    let server = Lenscap::start(&dir, false);
    // A new key without its certificate: the pair does not match.
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join("key.pem"), other.serialize_pem()).unwrap();
    server.hangup();
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("lenscap.log")).unwrap();
        if log.contains("certificate files not reloaded") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no refusal logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut connection = connect(server.addr, &client(&[&first])).await;
    assert_eq!(connection.leaf, first);
    assert_eq!(connection.get().await.0, 200);
}

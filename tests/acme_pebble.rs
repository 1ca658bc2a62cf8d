//! Automatic HTTPS end to end: Lenscap orders a certificate from a real Pebble (the ACME test
//! server, Debian package `pebble`) on loopback, serves it for its SNI name, and after a
//! restart serves the cached one without ordering again.
//!
//! Pebble runs with `PEBBLE_VA_ALWAYS_VALID=1` (no DNS, no validation connection) and its
//! own HTTPS certificate from a test CA, which Lenscap trusts through `directory_ca`. The
//! test fails, never skips, when `pebble` is not installed (`scripts/test.sh` installs it).

mod common;

use common::{Killed, free_port};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lenscap::server::{Overrides, ServeOptions, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

const NAME: &str = "shop.lenscap.test";
/// Bounds every wait (Pebble's order, a handshake): a hang is a failure, not a stuck suite.
/// Long enough for a failed first order and its retry (10 s later) on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    common::scratch("acme", name)
}

fn pebble_binary() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pebble"))
            .find(|candidate| candidate.is_file())
    });
    found.expect(
        "pebble is not installed: `apt-get install pebble` (scripts/test.sh installs it); this test does not skip",
    )
}

/// Pebble, killed when dropped.
struct Pebble {
    _child: Killed,
    directory: String,
    management: SocketAddr,
    ca: PathBuf,
}

/// Where Pebble validates for real: its DNS (pebble-challtestsrv, answering 127.0.0.1 for
/// every name) and the ports it connects to for TLS-ALPN-01 and HTTP-01.
struct Validation {
    dns: SocketAddr,
    tls_port: u16,
    http_port: u16,
    _dns_server: Killed,
}

fn start_dns(dir: &Path, tls_port: u16, http_port: u16) -> Validation {
    let binary = pebble_binary().with_file_name("pebble-challtestsrv");
    assert!(
        binary.is_file(),
        "{} is missing (package pebble)",
        binary.display()
    );
    let dns: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let management = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("challtestsrv.log")).unwrap();
    let child = Command::new(binary)
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &dns.to_string(), "-management", &management])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting pebble-challtestsrv");
    let started = Instant::now();
    // Its TCP DNS listener up means the UDP one is too.
    while std::net::TcpStream::connect(dns).is_err() {
        assert!(
            started.elapsed() < DEADLINE,
            "pebble-challtestsrv did not listen on {dns}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Validation {
        dns,
        tls_port,
        http_port,
        _dns_server: Killed(child),
    }
}

/// Starts Pebble on loopback with an HTTPS certificate from a fresh test CA (`ca.pem`):
/// every authorization valid at once, or, with `validation`, checked for real.
fn start_pebble(dir: &Path, validation: Option<&Validation>) -> Pebble {
    start_pebble_issuing(dir, validation, 157_766_400)
}

/// As [`start_pebble`], issuing certificates valid for `validity_s` seconds.
fn start_pebble_issuing(dir: &Path, validation: Option<&Validation>, validity_s: u64) -> Pebble {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Lenscap test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.as_ref().pem()).unwrap();
    std::fs::write(dir.join("pebble.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), leaf_key.serialize_pem()).unwrap();

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.join("pebble.crt"),
            "privateKey": dir.join("pebble.key"),
            "httpPort": validation.map_or_else(free_port, |v| v.http_port),
            "tlsPort": validation.map_or_else(free_port, |v| v.tls_port),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_s
        }
    });
    let config_path = dir.join("pebble.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let mut command = Command::new(pebble_binary());
    command.arg("-config").arg(&config_path);
    match validation {
        Some(validation) => {
            command.arg("-dnsserver").arg(validation.dns.to_string());
        }
        None => {
            command.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
    }
    let child = command
        .env("PEBBLE_VA_NOSLEEP", "1")
        // Pebble refuses 5% of nonces by default to exercise clients; the client's own retry
        // is not what this test is about.
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting pebble");
    let pebble = Pebble {
        _child: Killed(child),
        directory: format!("https://{listen}/dir"),
        management,
        ca: ca_path,
    };
    let started = Instant::now();
    for addr in [listen, management] {
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < DEADLINE,
                "pebble did not listen on {addr}; see {}",
                dir.join("pebble.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    pebble
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.0 GET over TLS; the whole reply.
async fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
    path: &str,
) -> std::io::Result<(Vec<u8>, CertificateDer<'static>)> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await?;
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: {name}\r\nuser-agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\naccept: text/html\r\naccept-language: en\r\n\r\n").as_bytes())
        .await?;
    let mut reply = Vec::new();
    // A peer that closes without close_notify still gave its answer.
    let _ = stream.read_to_end(&mut reply).await;
    Ok((reply, leaf))
}

/// Pebble's current root, from its management interface.
async fn pebble_root(pebble: &Pebble) -> rustls::RootCertStore {
    let mut test_ca = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pebble.ca).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        test_ca.add(cert.unwrap()).unwrap();
    }
    let (reply, _) = https_get(
        pebble.management,
        client_config(test_ca),
        "localhost",
        "/roots/0",
    )
    .await
    .expect("fetching pebble's root");
    let reply = String::from_utf8(reply).unwrap();
    let body = reply.split_once("\r\n\r\n").expect("an HTTP reply").1;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(body.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    assert!(!roots.is_empty(), "no root in {body}");
    roots
}

/// Handshakes with `name` until one verifies against `roots` (the certificate is ordered in
/// the background), then returns the reply to `GET /` and the leaf certificate.
async fn served_certificate(
    addr: SocketAddr,
    roots: &rustls::RootCertStore,
    name: &str,
) -> (String, CertificateDer<'static>) {
    let started = Instant::now();
    loop {
        match https_get(addr, client_config(roots.clone()), name, "/").await {
            Ok((reply, leaf)) => return (String::from_utf8_lossy(&reply).into_owned(), leaf),
            Err(error) => assert!(
                started.elapsed() < DEADLINE,
                "no certificate for {name} verified by Pebble's root: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_from_pebble_served_by_sni_and_kept_across_restarts() {
    // Lenscap's own log, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lenscap=info")
        .with_test_writer()
        .try_init();
    let dir = scratch("pebble");
    let pebble = start_pebble(&dir, None);
    let gallery = dir.join("gallery");
    std::fs::create_dir_all(&gallery).unwrap();
    std::fs::write(gallery.join("index.html"), "<h1>The Crown</h1>\n").unwrap();
    let config = dir.join("lenscap.toml");
    std::fs::write(
        &config,
        format!(
            // The test's client is rustls under a Firefox User-Agent: not a transport to judge.
            "[signals]\ntransport-mismatch = 0\n[server]\nlisten = \"127.0.0.1:0\"\nadmin = \"off\"\n\n[server.acme]\ndirectory = {:?}\ndirectory_ca = \"ca.pem\"\ncontact = \"mailto:owner@lenscap.test\"\ncache = \"acme-cache\"\n\n[[site]]\nname = \"shop\"\nhosts = [{NAME:?}]\nroot = \"gallery\"\n",
            pebble.directory
        ),
    )
    .unwrap();
    let options = ServeOptions {
        config: Some(config.clone()),
        overrides: Overrides::default(),
    };
    let server = Server::bind(options.clone()).await.unwrap();
    let roots = pebble_root(&pebble).await;
    let (reply, leaf) = served_certificate(server.local_addr(), &roots, NAME).await;
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    assert!(reply.contains("The Crown"), "{reply}");
    // The leaf names the site and was saved, with its key, in the cache.
    assert!(
        leaf.as_ref()
            .windows(NAME.len())
            .any(|w| w == NAME.as_bytes())
    );
    let cache = dir.join("acme-cache");
    for file in [
        format!("{NAME}.crt"),
        format!("{NAME}.key"),
        "account.json".into(),
    ] {
        assert!(cache.join(&file).is_file(), "{file} missing from the cache");
    }
    server.shutdown().await;

    // A restart serves the cached certificate from its first handshake: Pebble would sign a
    // new order with a new serial, so the same bytes mean no new order.
    let server = Server::bind(options).await.unwrap();
    let (reply, again) = https_get(server.local_addr(), client_config(roots.clone()), NAME, "/")
        .await
        .expect("the cached certificate is served at once");
    assert!(
        reply.starts_with(b"HTTP/1."),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(again, leaf);
    server.shutdown().await;
    drop(pebble);
}

/// Writes a gallery and a config for one site named `name`, served on `listen` with
/// `server_extra` and `acme_extra` added to their tables.
fn site_config(
    dir: &Path,
    pebble: &Pebble,
    name: &str,
    server_extra: &str,
    acme_extra: &str,
) -> PathBuf {
    let gallery = dir.join("gallery");
    std::fs::create_dir_all(&gallery).unwrap();
    std::fs::write(gallery.join("index.html"), "<h1>The Crown</h1>\n").unwrap();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            // Report-only: the polling below is machine-regular, and the policy is not under test.
            "mode = \"report-only\"\n[server]\nadmin = \"off\"\n{server_extra}\n[server.acme]\ndirectory = {:?}\ndirectory_ca = \"ca.pem\"\ncache = \"cache-{name}\"\n{acme_extra}\n\n[[site]]\nname = \"shop\"\nhosts = [{name:?}]\nroot = \"gallery\"\n",
            pebble.directory
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_validates_tls_alpn_01_and_http_01_for_real() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lenscap=info")
        .with_test_writer()
        .try_init();
    let dir = scratch("validate");
    let (tls_port, http_port) = (free_port(), free_port());
    let validation = start_dns(&dir, tls_port, http_port);
    let pebble = start_pebble(&dir, Some(&validation));
    let roots = pebble_root(&pebble).await;

    // TLS-ALPN-01: Pebble connects to the TLS listener offering only acme-tls/1.
    let name = "alpn.lenscap.test";
    let config = site_config(
        &dir,
        &pebble,
        name,
        &format!("listen = \"127.0.0.1:{tls_port}\""),
        "challenge = \"tls-alpn-01\"",
    );
    let server = Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides::default(),
    })
    .await
    .unwrap();
    let (reply, _) = served_certificate(server.local_addr(), &roots, name).await;
    assert!(reply.contains("The Crown"), "{reply}");
    server.shutdown().await;

    // HTTP-01: Pebble fetches the token from the plain listener, which redirects the rest.
    let name = "http.lenscap.test";
    let config = site_config(
        &dir,
        &pebble,
        name,
        &format!("listen = \"127.0.0.1:{tls_port}\"\nredirect_http = \"127.0.0.1:{http_port}\""),
        "challenge = \"http-01\"",
    );
    let server = Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides::default(),
    })
    .await
    .unwrap();
    let (reply, _) = served_certificate(server.local_addr(), &roots, name).await;
    assert!(reply.contains("The Crown"), "{reply}");
    let mut plain = TcpStream::connect(("127.0.0.1", http_port)).await.unwrap();
    plain
        .write_all(
            format!("GET /photos/?page=2 HTTP/1.1\r\nhost: {name}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut redirect = Vec::new();
    tokio::time::timeout(DEADLINE, plain.read_to_end(&mut redirect))
        .await
        .unwrap()
        .unwrap();
    let redirect = String::from_utf8_lossy(&redirect).to_ascii_lowercase();
    assert!(redirect.starts_with("http/1.1 308"), "{redirect}");
    assert!(
        redirect.contains(&format!(
            "location: https://{name}:{tls_port}/photos/?page=2\r\n"
        )),
        "{redirect}"
    );
    server.shutdown().await;
    drop(pebble);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_renewed_before_it_expires() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("lenscap=info")
        .with_test_writer()
        .try_init();
    let dir = scratch("renew");
    // Twelve-second certificates: renewed a third of their life ahead, 8 s after issue.
    let pebble = start_pebble_issuing(&dir, None, 12);
    let roots = pebble_root(&pebble).await;
    let name = "renew.lenscap.test";
    let config = site_config(&dir, &pebble, name, "listen = \"127.0.0.1:0\"", "");
    let server = Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides::default(),
    })
    .await
    .unwrap();
    let (_, first) = served_certificate(server.local_addr(), &roots, name).await;
    let started = Instant::now();
    loop {
        let (reply, leaf) = served_certificate(server.local_addr(), &roots, name).await;
        if leaf != first {
            assert!(reply.contains("The Crown"), "{reply}");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the certificate was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cached = std::fs::read(dir.join(format!("cache-{name}/{name}.crt"))).unwrap();
    let cached: Vec<CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_slice_iter(&cached)
            .collect::<Result<_, _>>()
            .unwrap();
    assert_ne!(
        cached[0], first,
        "the renewed certificate is the one cached"
    );
    server.shutdown().await;
    drop(pebble);
}

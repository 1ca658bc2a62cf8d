//! TLS with rustls: one [`Certificates`] resolver behind the listener, so certificates change
//! without a restart and without touching open connections (a handshake reads the resolver
//! once; a connection keeps the certificate it started with).
//!
//! The resolver answers, in order: an ACME TLS-ALPN-01 challenge (a client offering only
//! `acme-tls/1` gets the challenge certificate for its SNI name, RFC 8737), the ACME
//! certificate for the SNI name, then the certificate files (`server.tls_cert`, `tls_key`).
//! The files are read again on SIGHUP and, with `server.watch`, when they change on disk; a
//! pair that does not load (a key not yet written beside its new certificate) keeps the
//! running one and is tried again on the next change.
//!
//! The listener keeps a copy of each ClientHello ([`HelloRecorder`]) for its JA4
//! fingerprint, which the connection's requests carry to the layer.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use notify::Watcher as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::ServerError;
use super::connection::{ReadTap, Tap};
use crate::signals::transport::{ClientHelloFacts, TlsFingerprint, is_grease};

/// The ALPN protocol of the TLS-ALPN-01 challenge.
pub(super) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The crypto provider of every TLS config the server builds.
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trusted roots (those that cannot be read are skipped).
pub(super) fn native_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// A client config trusting `roots`, for the server's own HTTPS requests.
pub(super) fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A certificate chain and private key from PEM files, checked to belong together.
pub(super) fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, ServerError> {
    let certs = read_chain(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error(key, e.to_string()))?;
    certified_key(certs, key_der).map_err(|message| tls_error(key, message))
}

/// A chain and key from PEM text (the ACME cache), checked to belong together.
pub(super) fn pair_from_pem(chain: &str, key: &str) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| e.to_string())?;
    certified_key(certs, key)
}

fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("certificate and key do not match: {e}"))
}

fn read_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_error(cert, "no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn tls_error(path: &Path, message: String) -> ServerError {
    ServerError::Tls {
        path: path.to_path_buf(),
        message,
    }
}

/// The acceptor for the TLS listener: ALPN h2 and http/1.1, plus `acme-tls/1` with ACME.
pub(super) fn acceptor(
    certificates: Arc<Certificates>,
    acme: bool,
) -> Result<TlsAcceptor, ServerError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(Path::new("(TLS config)"), e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}

// === impl Certificates ===

/// Every certificate the TLS listener can present. Swapped piece by piece, read lock-free.
#[derive(Default)]
pub(crate) struct Certificates {
    /// `server.tls_cert` / `tls_key`: the default for any name.
    files: ArcSwapOption<CertifiedKey>,
    /// The files in use, to read again on reload.
    file_paths: Mutex<Option<(PathBuf, PathBuf)>>,
    /// ACME certificates by lower-case SNI name.
    by_name: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// TLS-ALPN-01 challenge certificates by lower-case SNI name, while an order is open.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files.load().is_some())
            .field("names", &self.by_name.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the certificate files (an error here stops the start-up).
    pub(super) fn with_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        let certificates = Certificates::default();
        certificates.load_files(cert, key)?;
        Ok(certificates)
    }

    /// Reads the files and swaps them in; on error the running pair stays.
    pub(super) fn load_files(&self, cert: &Path, key: &Path) -> Result<(), ServerError> {
        let pair = load_pair(cert, key)?;
        self.files.store(Some(Arc::new(pair)));
        *self.file_paths.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((cert.to_path_buf(), key.to_path_buf()));
        Ok(())
    }

    /// The certificate files in use.
    pub(super) fn file_paths(&self) -> Option<(PathBuf, PathBuf)> {
        self.file_paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs the ACME certificate for `name`.
    pub(super) fn set_named(&self, name: &str, key: CertifiedKey) {
        let key = Arc::new(key);
        self.by_name.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(name.to_owned(), key.clone());
            map
        });
    }

    /// Answers TLS-ALPN-01 for `name` with `key` until [`clear_challenge`](Self::clear_challenge).
    pub(super) fn set_challenge(&self, name: &str, key: CertifiedKey) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), Arc::new(key));
    }

    pub(super) fn clear_challenge(&self, name: &str) {
        self.challenges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        let acme_only = hello.alpn().is_some_and(|mut protocols| {
            protocols.next() == Some(ACME_TLS_ALPN) && protocols.all(|p| p == ACME_TLS_ALPN)
        });
        if acme_only {
            // A validation probe: the challenge certificate, or nothing at all.
            return self
                .challenges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name.as_deref()?)
                .cloned();
        }
        if let Some(name) = &name
            && let Some(key) = self.by_name.load().get(name)
        {
            return Some(key.clone());
        }
        if let Some(key) = self.files.load_full() {
            return Some(key);
        }
        // No SNI (an IP address) and no files: any ACME certificate beats a failed handshake.
        self.by_name.load().values().next().cloned()
    }
}

// === impl file watching ===

/// Reads the certificate files again whenever either changes on disk, once they have been
/// quiet for `settle`. `None` when the folders cannot be watched (SIGHUP still reloads).
pub(super) fn watch_files(
    certificates: Arc<Certificates>,
    settle: Duration,
) -> Option<JoinHandle<()>> {
    let (cert, key) = certificates.file_paths()?;
    let names: Vec<_> = [&cert, &key]
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            // Reading the files (as a reload does) is an access event: not a change.
            if let Ok(event) = event
                && !matches!(event.kind, notify::EventKind::Access(_))
                && event.paths.iter().any(|p| {
                    p.file_name()
                        .is_some_and(|n| names.iter().any(|m| m.as_os_str() == n))
                })
            {
                let _ = tx.send(());
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(target: "lenscap::reload", %error, "cannot watch the certificate files; reload them with SIGHUP");
            return None;
        }
    };
    let mut folders: Vec<PathBuf> = [&cert, &key]
        .iter()
        .map(|p| match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    folders.dedup();
    for folder in &folders {
        if let Err(error) = watcher.watch(folder, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(target: "lenscap::reload", folder = %folder.display(), %error, "cannot watch the certificate folder; reload with SIGHUP");
            return None;
        }
    }
    let settle = settle.max(Duration::from_millis(50));
    Some(tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // Quiet for `settle`: both files of a renewal written.
            while let Ok(Some(())) = tokio::time::timeout(settle, rx.recv()).await {}
            reload_files(&certificates);
        }
    }))
}

/// Reads the certificate files in use again and logs the outcome.
pub(super) fn reload_files(certificates: &Certificates) {
    let Some((cert, key)) = certificates.file_paths() else {
        return;
    };
    match certificates.load_files(&cert, &key) {
        Ok(()) => tracing::info!(
            target: "lenscap::reload",
            cert = %cert.display(),
            "certificate files reloaded"
        ),
        Err(error) => tracing::error!(
            target: "lenscap::reload",
            %error,
            "certificate files not reloaded; the running certificate stays"
        ),
    }
}

// === impl HelloRecorder ===

/// Most bytes kept while waiting for a ClientHello (a browser's is under 2 KiB; a record
/// holds at most 16 KiB).
const HELLO_BOUND: usize = 16 * 1024 + 5;

/// The socket under rustls, keeping a copy of what the client sends until the handshake is
/// done: rustls does not expose the ClientHello's extension order, which JA4 needs.
pub(super) type HelloRecorder<IO> = ReadTap<IO, HelloCopy>;

/// The bytes a client sent before its handshake was done, up to [`HELLO_BOUND`].
pub(super) struct HelloCopy(Vec<u8>);

impl HelloCopy {
    /// `io` with its ClientHello kept.
    pub(super) fn on<IO>(io: IO) -> HelloRecorder<IO> {
        ReadTap::new(io, Some(HelloCopy(Vec::with_capacity(2048))))
    }
}

impl Tap for HelloCopy {
    fn saw(&mut self, bytes: &[u8]) -> bool {
        let room = HELLO_BOUND.saturating_sub(self.0.len());
        self.0.extend_from_slice(&bytes[..bytes.len().min(room)]);
        true
    }
}

impl<IO> HelloRecorder<IO> {
    /// The fingerprint of the ClientHello read so far; recording stops here.
    pub(super) fn take_fingerprint(&mut self) -> Option<TlsFingerprint> {
        hello_fingerprint(&self.take_tap()?.0)
    }
}

/// The JA4 fingerprint and stack traits of the ClientHello at the start of `bytes` (one TLS
/// record); `None` when it is not a ClientHello that parses.
pub(super) fn hello_fingerprint(bytes: &[u8]) -> Option<TlsFingerprint> {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let (_, record) = tls_parser::parse_tls_plaintext(bytes).ok()?;
    let hello = record.msg.iter().find_map(|message| match message {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => Some(hello),
        _ => None,
    })?;
    let extensions = match hello.ext {
        Some(raw) => tls_parser::parse_tls_client_hello_extensions(raw).ok()?.1,
        None => Vec::new(),
    };
    let mut ids = Vec::with_capacity(extensions.len());
    let mut algorithms = Vec::new();
    let mut version = hello.version.0;
    let mut sni = false;
    let mut alpn = None;
    for extension in &extensions {
        ids.push(match extension {
            TlsExtension::Grease(value, _) => *value,
            other => tls_parser::TlsExtensionType::from(other).0,
        });
        match extension {
            TlsExtension::SNI(_) => sni = true,
            TlsExtension::ALPN(protocols) => alpn = protocols.first().copied(),
            TlsExtension::SignatureAlgorithms(list) => algorithms.clone_from(list),
            TlsExtension::SupportedVersions(versions) => {
                if let Some(highest) = versions
                    .iter()
                    .map(|v| v.0)
                    .filter(|&v| !is_grease(v))
                    .max()
                {
                    version = highest;
                }
            }
            _ => {}
        }
    }
    let ciphers: Vec<u16> = hello.ciphers.iter().map(|c| c.0).collect();
    Some(TlsFingerprint::from_hello(&ClientHelloFacts {
        version,
        sni,
        ciphers: &ciphers,
        extensions: &ids,
        signature_algorithms: &algorithms,
        alpn,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::transport::TlsStack;

    /// curl 7.88.1 (OpenSSL 3.0) as captured on loopback; several public fingerprint
    /// services report exactly this JA4 for curl.
    const CURL: &[u8] = include_bytes!("../../tests/data/clienthello-curl-7.88.1.bin");
    /// Headless Chromium 156 (post-quantum key share: a 2 KiB hello).
    const CHROMIUM: &[u8] = include_bytes!("../../tests/data/clienthello-chromium-156.bin");

    #[test]
    fn ja4_of_captured_client_hellos() {
        let curl = hello_fingerprint(CURL).expect("curl's hello parses");
        assert_eq!(curl.ja4(), "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6");
        assert_eq!(curl.stack(), TlsStack::OpenSsl);
        let chromium = hello_fingerprint(CHROMIUM).expect("Chromium's hello parses");
        // Chrome's cipher hash as published with the JA4 specification.
        assert!(
            chromium.ja4().starts_with("t13d151")
                && chromium.ja4()[8..].starts_with("h2_8daaf6152771_"),
            "{}",
            chromium.ja4()
        );
        assert_eq!(chromium.stack(), TlsStack::Chromium);
    }

    #[test]
    fn anything_but_a_whole_client_hello_has_no_fingerprint() {
        assert_eq!(hello_fingerprint(b""), None);
        assert_eq!(hello_fingerprint(b"GET / HTTP/1.1\r\n\r\n"), None);
        for end in [5, 40, CURL.len() - 1] {
            assert_eq!(hello_fingerprint(&CURL[..end]), None, "first {end} bytes");
        }
    }
}

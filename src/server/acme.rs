//! Automatic HTTPS: certificates from an ACME directory (Let's Encrypt by default) for every
//! name in `[server.acme] domains`, one certificate per SNI name, answered through the TLS
//! listener's resolver ([`Certificates`]).
//!
//! Challenges: TLS-ALPN-01 on the TLS listener itself (the default), or HTTP-01 on the plain
//! `server.redirect_http` listener (`acme_http`). State lives in the cache folder — the
//! account's credentials (`account.json`, per directory) and each name's chain and key
//! (`NAME.crt`, `NAME.key`) — so a restart serves the cached certificate and orders nothing.
//! A certificate is renewed `renew_before` ahead of its expiry (or a third of its lifetime
//! ahead, when that is sooner); a failed order is retried with a doubling back-off, and the
//! running certificate stays in use meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, Identifier,
    NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

use super::ServerError;
use super::tls::{self, Certificates};
use crate::settings::ConfigError;

/// Let's Encrypt's production directory: the default `server.acme.directory`.
pub(crate) const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The first wait after a failed order; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The longest sleep between two looks at the clock (a suspended machine wakes late).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// How the directory checks that this server answers for a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 on the TLS listener (port 443 for a public directory).
    TlsAlpn01,
    /// HTTP-01 on the `server.redirect_http` listener (port 80 for a public directory).
    Http01,
}

/// `[server.acme]`, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The names to hold certificates for (lower case).
    pub domains: Vec<String>,
    /// The directory URL.
    pub directory: String,
    /// Root certificates (PEM) trusted for the directory besides the system's.
    pub directory_ca: Option<PathBuf>,
    /// Contact URLs for the account (`mailto:…`).
    pub contact: Vec<String>,
    /// Where the account and the certificates are kept.
    pub cache: PathBuf,
    /// The challenge answered.
    pub challenge: Challenge,
    /// How long before expiry a certificate is renewed.
    pub renew_before: Duration,
}

/// HTTP-01 answers by token, while an order is open (served by the plain listener).
#[derive(Debug, Default)]
pub(crate) struct Http01Answers(Mutex<HashMap<String, String>>);

impl Http01Answers {
    /// The key authorization for `token`.
    pub(super) fn get(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn set(&self, token: &str, answer: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), answer.to_owned());
    }

    fn clear(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

/// One name's certificate: when it is next due.
#[derive(Debug)]
struct Name {
    name: String,
    /// When to order (now, for a name without a usable certificate).
    due: SystemTime,
    /// When a failed order may be tried again.
    retry_at: SystemTime,
    backoff: Duration,
}

impl Name {
    /// Records a failed order at `now`: the next try waits the current back-off, which then
    /// doubles (up to [`MAX_BACKOFF`]). Returns the wait.
    fn failed(&mut self, now: SystemTime) -> Duration {
        let wait = self.backoff;
        self.retry_at = now + wait;
        self.backoff = (wait * 2).min(MAX_BACKOFF);
        wait
    }
}

/// The ACME client of one server.
#[derive(Debug)]
pub(super) struct Acme {
    settings: AcmeSettings,
    certificates: Arc<Certificates>,
    answers: Arc<Http01Answers>,
    names: Vec<Name>,
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl Acme {
    /// Creates the cache folder and installs every cached certificate still valid, so the
    /// listener presents them from its first handshake.
    pub(super) fn new(
        settings: AcmeSettings,
        certificates: Arc<Certificates>,
        answers: Arc<Http01Answers>,
    ) -> Result<Acme, ServerError> {
        create_private_dir(&settings.cache).map_err(|e| {
            ServerError::Config(ConfigError::Invalid {
                source_name: settings.cache.display().to_string(),
                message: format!("server.acme.cache: cannot create the folder: {e}"),
            })
        })?;
        let now = SystemTime::now();
        let mut names = Vec::with_capacity(settings.domains.len());
        for name in &settings.domains {
            let due = match load_cached(&settings.cache, name) {
                Some((key, not_before, not_after)) if not_after > now => {
                    certificates.set_named(name, key);
                    tracing::info!(
                        target: "lenscap::acme",
                        %name,
                        valid_until = %unix_seconds(not_after),
                        "certificate from the cache"
                    );
                    renewal_time(not_before, not_after, settings.renew_before)
                }
                _ => UNIX_EPOCH,
            };
            names.push(Name {
                name: name.clone(),
                due,
                retry_at: UNIX_EPOCH,
                backoff: FIRST_BACKOFF,
            });
        }
        Ok(Acme {
            settings,
            certificates,
            answers,
            names,
        })
    }

    /// Orders and renews in the background until `stop` changes.
    pub(super) fn spawn(mut self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut account = None;
            loop {
                self.run_due(&mut account).await;
                let now = SystemTime::now();
                let next = self
                    .names
                    .iter()
                    .map(|n| n.due.max(n.retry_at))
                    .min()
                    .unwrap_or(now + MAX_SLEEP);
                let wait = next
                    .duration_since(now)
                    .unwrap_or_default()
                    .clamp(Duration::from_secs(1), MAX_SLEEP);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    }

    async fn run_due(&mut self, account: &mut Option<Account>) {
        for index in 0..self.names.len() {
            let now = SystemTime::now();
            let entry = &self.names[index];
            if entry.due > now || entry.retry_at > now {
                continue;
            }
            let name = entry.name.clone();
            tracing::info!(target: "lenscap::acme", %name, directory = %self.settings.directory, "ordering a certificate");
            let outcome = match account {
                Some(account) => self.obtain(account, &name).await,
                None => match self.account().await {
                    Ok(created) => {
                        let outcome = self.obtain(&created, &name).await;
                        *account = Some(created);
                        outcome
                    }
                    Err(error) => Err(error),
                },
            };
            let entry = &mut self.names[index];
            match outcome {
                Ok((not_before, not_after)) => {
                    entry.due = renewal_time(not_before, not_after, self.settings.renew_before);
                    entry.backoff = FIRST_BACKOFF;
                    tracing::info!(
                        target: "lenscap::acme",
                        %name,
                        valid_until = %unix_seconds(not_after),
                        renew_at = %unix_seconds(entry.due),
                        "certificate obtained and in use"
                    );
                }
                Err(error) => {
                    let wait = entry.failed(SystemTime::now());
                    tracing::warn!(
                        target: "lenscap::acme",
                        %name,
                        %error,
                        retry_in_s = wait.as_secs(),
                        "ordering a certificate failed; the running certificate stays"
                    );
                }
            }
        }
    }

    /// The account: from the cache when it was made with this directory, else a new one.
    async fn account(&self) -> Result<Account, String> {
        let path = self.settings.cache.join("account.json");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(stored) = serde_json::from_str::<StoredAccount>(&text)
            && stored.directory == self.settings.directory
        {
            return Account::builder_with_http(self.http_client()?)
                .from_credentials(stored.credentials)
                .await
                .map_err(|e| format!("restoring the account from {}: {e}", path.display()));
        }
        let contact: Vec<&str> = self.settings.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(self.http_client()?)
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await
            .map_err(|e| format!("creating an account at {}: {e}", self.settings.directory))?;
        let stored = StoredAccount {
            directory: self.settings.directory.clone(),
            credentials,
        };
        let text = serde_json::to_string_pretty(&stored).map_err(|e| e.to_string())?;
        write_private(&path, text.as_bytes())
            .map_err(|e| format!("saving the account to {}: {e}", path.display()))?;
        tracing::info!(target: "lenscap::acme", id = %account.id(), "account created");
        Ok(account)
    }

    /// HTTPS to the directory, trusting the system's roots and `directory_ca`.
    fn http_client(&self) -> Result<Box<dyn instant_acme::HttpClient>, String> {
        let mut roots = tls::native_roots();
        if let Some(ca) = &self.settings.directory_ca {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("server.acme.directory_ca {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "server.acme.directory_ca {}: no PEM certificate",
                    ca.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("server.acme.directory_ca {}: {e}", ca.display()))?;
            }
        }
        let config = tls::client_config(roots)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, BodyWrapper<Bytes>>(connector);
        Ok(Box::new(client))
    }

    /// One order for `name`: answer the challenge, finalize, save, install. Returns the new
    /// certificate's validity.
    async fn obtain(
        &self,
        account: &Account,
        name: &str,
    ) -> Result<(SystemTime, SystemTime), String> {
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut tokens = Vec::new();
        let answered = self.answer_challenges(&mut order, name, &mut tokens).await;
        let ready = match answered {
            Ok(()) => order
                .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(120)))
                .await
                .map_err(|e| format!("waiting for validation: {e}")),
            Err(error) => Err(error),
        };
        // The directory has looked (or given up): the answers are no longer needed.
        self.certificates.clear_challenge(name);
        for token in &tokens {
            self.answers.clear(token);
        }
        match ready? {
            OrderStatus::Ready => {}
            status => return Err(format!("the order is {status:?}, not ready")),
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(120)))
            .await
            .map_err(|e| format!("downloading the certificate: {e}"))?;
        let key = tls::pair_from_pem(&chain_pem, &key_pem)?;
        let (not_before, not_after) = leaf_validity(&key)
            .ok_or_else(|| "the certificate's validity cannot be read".to_owned())?;
        let (crt, key_path) = cache_paths(&self.settings.cache, name);
        write_private(&key_path, key_pem.as_bytes())
            .and_then(|()| write_private(&crt, chain_pem.as_bytes()))
            .map_err(|e| format!("saving to {}: {e}", self.settings.cache.display()))?;
        self.certificates.set_named(name, key);
        Ok((not_before, not_after))
    }

    async fn answer_challenges(
        &self,
        order: &mut instant_acme::Order,
        name: &str,
        tokens: &mut Vec<String>,
    ) -> Result<(), String> {
        let kind = match self.settings.challenge {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| format!("authorization: {e}"))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                status => return Err(format!("authorization is {status:?}")),
            }
            let mut challenge = authorization
                .challenge(kind.clone())
                .ok_or_else(|| format!("the directory offers no {kind:?} challenge"))?;
            let key_authorization = challenge.key_authorization();
            match self.settings.challenge {
                Challenge::TlsAlpn01 => {
                    let cert = challenge_certificate(name, key_authorization.digest().as_ref())
                        .map_err(|e| format!("the TLS-ALPN-01 certificate: {e}"))?;
                    self.certificates.set_challenge(name, cert);
                }
                Challenge::Http01 => {
                    self.answers
                        .set(&challenge.token, key_authorization.as_str());
                    tokens.push(challenge.token.clone());
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        Ok(())
    }
}

/// The self-signed TLS-ALPN-01 certificate for `name` (RFC 8737: the name as its only SAN,
/// the key authorization's digest in the critical acmeIdentifier extension).
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<rustls::sign::CertifiedKey, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension; the pair is ours, made just above.
    let signing_key = tls::provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| format!("the challenge key: {e}"))?;
    Ok(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    ))
}

fn cache_paths(cache: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        cache.join(format!("{name}.crt")),
        cache.join(format!("{name}.key")),
    )
}

/// A cached certificate for `name` that loads, with its validity.
fn load_cached(
    cache: &Path,
    name: &str,
) -> Option<(rustls::sign::CertifiedKey, SystemTime, SystemTime)> {
    let (crt, key) = cache_paths(cache, name);
    let chain = std::fs::read_to_string(&crt).ok()?;
    let key_pem = std::fs::read_to_string(&key).ok()?;
    match tls::pair_from_pem(&chain, &key_pem) {
        Ok(pair) => {
            let (not_before, not_after) = leaf_validity(&pair)?;
            Some((pair, not_before, not_after))
        }
        Err(error) => {
            tracing::warn!(target: "lenscap::acme", %name, %error, "cached certificate unusable; ordering a new one");
            None
        }
    }
}

fn leaf_validity(key: &rustls::sign::CertifiedKey) -> Option<(SystemTime, SystemTime)> {
    validity(key.cert.first()?.as_ref())
}

/// When to renew: `renew_before` ahead of expiry, or a third of the lifetime ahead when
/// that is sooner (short-lived certificates).
fn renewal_time(not_before: SystemTime, not_after: SystemTime, before: Duration) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let ahead = before.min(lifetime / 3);
    not_after.checked_sub(ahead).unwrap_or(not_before)
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed over it), readable
/// by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

// === impl validity ===

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// notBefore and notAfter of an X.509 certificate (RFC 5280 §4.1: the fifth element of
/// tbsCertificate once the optional version is skipped).
fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, certificate, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(certificate)? else {
        return None;
    };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == 0xa0 {
        // [0] version: the serial number follows.
        rest = element(rest)?.2;
    }
    let (_, _, rest) = element(rest)?; // signature algorithm
    let (_, _, rest) = element(rest)?; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else {
        return None;
    };
    let (tag_before, before, rest) = element(validity)?;
    let (tag_after, after, _) = element(rest)?;
    Some((der_time(tag_before, before)?, der_time(tag_after, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, bytes: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, years starting
/// in March so the leap day comes last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn validity_is_read_from_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 2);
        params.not_after = rcgen::date_time_ymd(2051, 6, 30);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (before, after) = validity(cert.der()).unwrap();
        // 2030-01-02 (UTCTime) and 2051-06-30 (GeneralizedTime: from 2050 on).
        assert_eq!(unix_seconds(before), 1_893_542_400);
        assert_eq!(unix_seconds(after), 2_571_696_000);
        assert_eq!(validity(&cert.der()[..40]), None);
    }

    #[test]
    fn renewal_comes_a_month_ahead_or_a_third_of_a_short_life() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let month = Duration::from_secs(30 * 86_400);
        let ninety = start + Duration::from_secs(90 * 86_400);
        assert_eq!(renewal_time(start, ninety, month), ninety - month);
        let six = start + Duration::from_secs(6 * 86_400);
        assert_eq!(
            renewal_time(start, six, month),
            six - Duration::from_secs(2 * 86_400)
        );
    }

    #[test]
    fn failed_orders_back_off_doubling_to_six_hours() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut name = Name {
            name: "a.example".into(),
            due: UNIX_EPOCH,
            retry_at: UNIX_EPOCH,
            backoff: FIRST_BACKOFF,
        };
        let waits: Vec<u64> = (0..13).map(|_| name.failed(now).as_secs()).collect();
        assert_eq!(
            waits,
            [
                10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 21600
            ]
        );
        assert_eq!(name.retry_at, now + MAX_BACKOFF);
    }

    #[test]
    fn the_challenge_certificate_names_the_host_and_carries_the_digest() {
        let key = challenge_certificate("shop.example", &[7; 32]).unwrap();
        let der = key.cert[0].as_ref();
        // The acmeIdentifier OID 1.3.6.1.5.5.7.1.31 and the digest as an OCTET STRING.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        assert!(der.windows(oid.len()).any(|w| w == oid));
        let mut digest = vec![0x04, 0x20];
        digest.extend([7; 32]);
        assert!(der.windows(digest.len()).any(|w| w == digest.as_slice()));
        assert!(der.windows(12).any(|w| w == b"shop.example"));
    }
}

//! Web Bot Auth: agents that prove who they are by signing their requests (HTTP Message
//! Signatures, RFC 9421, as the IETF webbotauth drafts profile them for automated traffic).
//!
//! A signing agent sends `Signature-Input` and `Signature` (one member tagged
//! `tag="web-bot-auth"`, Ed25519, `created` and `expires`, `keyid` = the RFC 7638 SHA-256
//! thumbprint of its JWK), and usually `Signature-Agent`, naming the origin whose
//! `/.well-known/http-message-signatures-directory` (a JWKS of Ed25519 keys) holds its key.
//! The signature must cover `@authority`, and `signature-agent` when that header is sent.
//! This module is the pure part: parse, rebuild the signature base, check the window, verify
//! against the keys held in [`AgentKeys`], remember nonces against replay. Fetching the
//! directories is the server's job (`lenscap serve`); a library user stores keys with
//! [`AgentKeys::set`].
//!
//! ```
//! use lenscap::signals::web_bot_auth::{AgentKey, parse_directory};
//!
//! let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! let keys = parse_directory(jwks).unwrap();
//! // The RFC 7638 thumbprint is the `keyid` a signature names (RFC 8037's example key).
//! assert_eq!(keys[0].thumbprint(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
//! assert!(parse_directory(b"{\"keys\":[]}").is_err());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method};
use serde::Deserialize;
use serde_spanned::Spanned;
use sfv::{BareItem, Dictionary, FieldType, InnerList, Item, List, ListEntry, Parser};

use crate::catalog::Catalog;
use crate::settings::{ConfigError, Source};
use crate::verdict::Reason;

/// Where an agent publishes its keys, under the origin its `Signature-Agent` names.
pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";
/// The media type of a key directory.
pub const DIRECTORY_MEDIA_TYPE: &str = "application/http-message-signatures-directory+json";
/// The `tag` a Web Bot Auth signature carries.
pub const TAG: &str = "web-bot-auth";
/// At most this many keys are read from one directory.
const MAX_KEYS: usize = 32;
/// At most this many unlisted directories wait to be fetched.
const MAX_WANTED: usize = 64;
/// Nonces remembered per generation (two generations are kept).
const REPLAY_GENERATION: usize = 32 * 1024;

// === Keys and directories ===

/// An Ed25519 public key from an agent's directory, named by its JWK thumbprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentKey {
    thumbprint: String,
    public: [u8; 32],
}

impl AgentKey {
    /// The key with these 32 public bytes.
    pub fn from_public_key(public: [u8; 32]) -> AgentKey {
        let x = URL_SAFE_NO_PAD.encode(public);
        // RFC 7638: the required members, in lexicographic order, without whitespace.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        AgentKey {
            thumbprint: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            public,
        }
    }

    /// The key of a JWK's `x` member (base64url, no padding).
    pub fn from_x(x: &str) -> Result<AgentKey, DirectoryError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(x.trim_end_matches('='))
            .map_err(|e| DirectoryError::BadKey(format!("x is not base64url: {e}")))?;
        let public: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            DirectoryError::BadKey(format!("x holds {} bytes, an Ed25519 key 32", b.len()))
        })?;
        Ok(AgentKey::from_public_key(public))
    }

    /// Its RFC 7638 SHA-256 thumbprint (base64url): the `keyid` of its signatures.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Its public JWK.
    pub fn to_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
        })
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

/// Why a key directory could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    /// Not a JSON object with a `keys` array.
    #[error("key directory is not a JWKS (a JSON object with a \"keys\" array): {0}")]
    NotJwks(String),
    /// An Ed25519 key that cannot be read.
    #[error("key directory has a bad Ed25519 key: {0}")]
    BadKey(String),
    /// No Ed25519 (`OKP`) key at all.
    #[error("key directory holds no Ed25519 (kty \"OKP\", crv \"Ed25519\") key")]
    NoKeys,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

/// The Ed25519 keys of a key directory (a JWKS); keys of other types are skipped, at most
/// 32 are read.
pub fn parse_directory(json: &[u8]) -> Result<Vec<AgentKey>, DirectoryError> {
    let jwks: Jwks =
        serde_json::from_slice(json).map_err(|e| DirectoryError::NotJwks(e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in jwks.keys.iter().take(MAX_KEYS) {
        let member = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
        if member("kty") != Some("OKP") || member("crv") != Some("Ed25519") {
            continue;
        }
        let x = member("x").ok_or_else(|| DirectoryError::BadKey("no \"x\" member".into()))?;
        keys.push(AgentKey::from_x(x)?);
    }
    if keys.is_empty() {
        return Err(DirectoryError::NoKeys);
    }
    Ok(keys)
}

/// The keys held for each agent directory (by origin), swapped whole when one is fetched,
/// and the nonces already seen. One per policy handle: a reloaded policy keeps them.
#[derive(Debug, Default)]
pub struct AgentKeys {
    directories: ArcSwap<HashMap<String, Arc<[AgentKey]>>>,
    replay: ReplayCache,
    wanted: Mutex<Vec<String>>,
}

impl AgentKeys {
    /// Holds `keys` as the directory of `origin` (`https://chatgpt.com`), replacing what was
    /// held for it.
    pub fn set(&self, origin: &str, keys: Vec<AgentKey>) {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let keys: Arc<[AgentKey]> = keys.into();
        self.directories.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(origin.clone(), keys.clone());
            next
        });
    }

    /// The keys held for `origin`.
    pub fn keys(&self, origin: &str) -> Option<Arc<[AgentKey]>> {
        self.directories.load().get(origin).cloned()
    }

    /// Directories requests named whose keys are not held (listed ones, and unlisted ones
    /// under `allow_unlisted`), waiting to be fetched off the request path; taking them
    /// empties the list.
    pub fn take_wanted(&self) -> Vec<String> {
        std::mem::take(&mut *self.wanted.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn want(&self, origin: &str) {
        let mut wanted = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        if wanted.len() < MAX_WANTED && !wanted.iter().any(|w| w == origin) {
            wanted.push(origin.to_owned());
        }
    }

    /// Finds the held key named `keyid`, in any directory: for a signature without
    /// `Signature-Agent`.
    fn find(&self, keyid: &str) -> Option<(String, AgentKey)> {
        self.directories.load().iter().find_map(|(origin, keys)| {
            keys.iter()
                .find(|k| k.thumbprint == keyid)
                .map(|k| (origin.clone(), k.clone()))
        })
    }

    /// Records the use of a verified signature: an error if its nonce (or, without one, the
    /// signature itself) was seen before.
    pub(crate) fn note_use(&self, signed: &Signed) -> Result<(), SignatureError> {
        if self.replay.first_use(signed.replay_key) {
            Ok(())
        } else {
            Err(SignatureError::Replayed)
        }
    }
}

/// Nonces seen, in two generations of bounded size: a full generation becomes the old one
/// and the older is dropped, so memory stays bounded under a flood of valid signatures, at
/// the price of forgetting a nonce after 32 768 newer ones (the `expires` window still
/// bounds how long a replay could be tried).
#[derive(Debug, Default)]
struct ReplayCache {
    generations: Mutex<[HashSet<u128>; 2]>,
}

impl ReplayCache {
    fn first_use(&self, key: u128) -> bool {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if generations[1].contains(&key) || !generations[0].insert(key) {
            return false;
        }
        if generations[0].len() >= REPLAY_GENERATION {
            generations.swap(0, 1);
            generations[0].clear();
        }
        true
    }
}

// === Config ===

/// `[web_bot_auth]`: which agent directories may vouch for requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct WebBotAuthConfig {
    /// Verify signatures at all.
    enabled: bool,
    /// Directory origin → the catalog agent it vouches for.
    directories: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Accept a valid signature from any directory as "signed, unknown agent".
    allow_unlisted: bool,
    /// Accept `http://` directories on loopback addresses (tests only).
    allow_insecure_loopback: bool,
    /// Directory origin → its keys (JWK `x` values), used instead of fetching it.
    pinned: BTreeMap<Spanned<String>, Vec<String>>,
    /// How far `created` and `expires` may be off the clock.
    clock_skew: Spanned<String>,
}

impl Default for WebBotAuthConfig {
    fn default() -> Self {
        WebBotAuthConfig {
            enabled: false,
            directories: BTreeMap::new(),
            allow_unlisted: false,
            allow_insecure_loopback: false,
            pinned: BTreeMap::new(),
            clock_skew: Spanned::new(0..0, "60s".to_owned()),
        }
    }
}

/// `[web_bot_auth]`, compiled against the catalog.
#[derive(Debug)]
pub(crate) struct WebBotAuth {
    /// Listed directory origins and the catalog agent each vouches for.
    listed: Vec<(String, usize)>,
    pinned: HashMap<String, Arc<[AgentKey]>>,
    allow_unlisted: bool,
    allow_insecure_loopback: bool,
    skew_secs: u64,
}

impl WebBotAuth {
    /// `None` when verification is off.
    pub(crate) fn compile(
        config: &WebBotAuthConfig,
        catalog: &Catalog,
        source: &Source<'_>,
    ) -> Result<Option<WebBotAuth>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        let skew = source.duration("web_bot_auth.clock_skew", &config.clock_skew)?;
        let origin_of = |key: &Spanned<String>, table: &str| {
            normalize_origin(key.get_ref(), config.allow_insecure_loopback).map_err(|e| {
                source.invalid(
                    Some(key.span()),
                    format!("web_bot_auth.{table}.{:?}: {e}", key.get_ref()),
                )
            })
        };
        let mut listed = Vec::new();
        for (origin, agent) in &config.directories {
            let origin = origin_of(origin, "directories")?;
            let index = catalog
                .agents()
                .iter()
                .position(|a| a.name().eq_ignore_ascii_case(agent.get_ref()))
                .ok_or_else(|| {
                    source.invalid(
                        Some(agent.span()),
                        format!(
                            "web_bot_auth.directories: no catalog agent is named {:?}",
                            agent.get_ref()
                        ),
                    )
                })?;
            listed.push((origin, index));
        }
        let mut pinned = HashMap::new();
        for (origin, xs) in &config.pinned {
            let normalized = origin_of(origin, "pinned")?;
            let keys = xs
                .iter()
                .map(|x| AgentKey::from_x(x))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    source.invalid(
                        Some(origin.span()),
                        format!("web_bot_auth.pinned.{:?}: {e}", origin.get_ref()),
                    )
                })?;
            pinned.insert(normalized, keys.into());
        }
        Ok(Some(WebBotAuth {
            listed,
            pinned,
            allow_unlisted: config.allow_unlisted,
            allow_insecure_loopback: config.allow_insecure_loopback,
            skew_secs: skew.as_secs(),
        }))
    }

    #[cfg(feature = "cli")]
    /// The directories to fetch: the listed ones that are not pinned.
    pub(crate) fn directories_to_fetch(&self) -> impl Iterator<Item = &str> {
        self.listed
            .iter()
            .map(|(origin, _)| origin.as_str())
            .filter(|o| !self.pinned.contains_key(*o))
    }

    #[cfg(feature = "cli")]
    /// Whether `http://` loopback directories are accepted.
    pub(crate) fn insecure_loopback_allowed(&self) -> bool {
        self.allow_insecure_loopback
    }

    fn agent_of(&self, origin: &str) -> Option<usize> {
        self.listed
            .iter()
            .find(|(o, _)| o == origin)
            .map(|(_, index)| *index)
    }
}

/// `https://Example.com/` → `https://example.com`; an `http://` origin only on loopback and
/// when allowed; the directory's own path may be given.
pub(crate) fn normalize_origin(
    value: &str,
    allow_insecure_loopback: bool,
) -> Result<String, String> {
    let value = value.trim();
    let value = value.strip_suffix(DIRECTORY_PATH).unwrap_or(value);
    let value = value.trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| format!("{value:?} is not an https:// origin"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{value:?} is not an origin (scheme://host[:port], no path)"
        ));
    }
    match scheme {
        "https" => Ok(value),
        "http" if allow_insecure_loopback && is_loopback_host(rest) => Ok(value),
        "http" => Err(format!(
            "{value:?} is plain http: directories must be https:// (allow_insecure_loopback \
             accepts http:// on 127.0.0.0/8 and ::1, for tests)"
        )),
        _ => Err(format!("{value:?} is not an https:// origin")),
    }
}

fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// === Verification ===

/// The parts of a request a signature can cover.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignedParts<'a> {
    pub(crate) method: &'a Method,
    /// `https` or `http`.
    pub(crate) scheme: &'a str,
    /// The URI's authority, or the `Host` header.
    pub(crate) authority: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
}

/// A signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The directory that vouches for the key (`https://chatgpt.com`).
    pub origin: String,
    /// The catalog agent the directory is listed for (none: an unlisted directory).
    pub(crate) agent: Option<usize>,
    /// The components covered, by name (`@authority`, `signature-agent`, …).
    pub covered: Vec<String>,
    replay_key: u128,
}

impl Signed {
    /// Whether the signature covers the component or header `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.covered.iter().any(|c| c == name)
    }
}

/// Why a signed request did not verify. Each maps to a named [`Reason`].
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The headers cannot be read as a Web Bot Auth signature.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// `expires` has passed.
    #[error("signature expired at {expires} (now {now}, unix seconds)")]
    Expired {
        /// The signature's `expires`.
        expires: u64,
        /// The clock.
        now: u64,
    },
    /// `created` is in the future.
    #[error("signature created in the future at {created} (now {now}, unix seconds)")]
    NotYetValid {
        /// The signature's `created`.
        created: u64,
        /// The clock.
        now: u64,
    },
    /// The directory is not listed (and `allow_unlisted` is off), or not https.
    #[error("signature agent {0} is not a directory this site accepts")]
    Unlisted(String),
    /// No held key of the directory has this thumbprint.
    #[error("no key {keyid:?} in the directory of {origin}")]
    UnknownKey {
        /// The signature's `keyid`.
        keyid: String,
        /// The directory.
        origin: String,
    },
    /// The directory's keys have not been fetched (yet).
    #[error("the key directory of {0} has not been fetched (yet)")]
    KeysNotFetched(String),
    /// The Ed25519 signature does not match the request.
    #[error("signature does not verify with key {0:?}")]
    Invalid(String),
    /// The nonce (or the signature) was seen before.
    #[error("signature replayed: its nonce was used before")]
    Replayed,
}

impl SignatureError {
    /// The named signal the failure raises.
    pub fn reason(&self) -> Reason {
        match self {
            SignatureError::Malformed(_) => Reason::SignatureMalformed,
            SignatureError::Expired { .. } | SignatureError::NotYetValid { .. } => {
                Reason::SignatureExpired
            }
            SignatureError::Unlisted(_) => Reason::SignatureUnlisted,
            SignatureError::UnknownKey { .. } | SignatureError::KeysNotFetched(_) => {
                Reason::SignatureUnknownKey
            }
            SignatureError::Invalid(_) => Reason::SignatureInvalid,
            SignatureError::Replayed => Reason::SignatureReplayed,
        }
    }
}

fn malformed(message: impl Into<String>) -> SignatureError {
    SignatureError::Malformed(message.into())
}

/// One field's value: its lines joined as RFC 9110 combines them, or `None` when absent.
fn field(headers: &HeaderMap, name: &str) -> Result<Option<String>, SignatureError> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| malformed(format!("{name} is not ASCII")))?
            .trim();
        match &mut out {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    Ok(out)
}

fn dictionary(name: &str, text: &str) -> Result<Dictionary, SignatureError> {
    Parser::new(text)
        .parse::<Dictionary>()
        .map_err(|e| malformed(format!("{name} is not a structured-field dictionary: {e}")))
}

/// The Web Bot Auth member of `Signature-Input`: its label and its inner list.
fn web_bot_auth_member(input: &Dictionary) -> Result<(&str, &InnerList), SignatureError> {
    input
        .iter()
        .find_map(|(label, entry)| match entry {
            ListEntry::InnerList(list)
                if list
                    .params
                    .get("tag")
                    .and_then(BareItem::as_string)
                    .is_some_and(|t| t.as_str() == TAG) =>
            {
                Some((label.as_str(), list))
            }
            _ => None,
        })
        .ok_or_else(|| malformed(format!("Signature-Input has no member tagged {TAG:?}")))
}

/// The parameters a Web Bot Auth signature must carry.
struct Params<'a> {
    created: u64,
    expires: u64,
    keyid: &'a str,
    nonce: Option<&'a str>,
}

fn params(list: &InnerList) -> Result<Params<'_>, SignatureError> {
    let integer = |name: &str| -> Result<u64, SignatureError> {
        let value = list
            .params
            .get(name)
            .ok_or_else(|| malformed(format!("Signature-Input has no {name}")))?;
        value
            .as_integer()
            .and_then(|i| u64::try_from(i64::from(i)).ok())
            .ok_or_else(|| malformed(format!("Signature-Input {name} is not a unix time")))
    };
    let string = |name: &str| {
        list.params
            .get(name)
            .map(|v| v.as_string().map(|s| s.as_str()))
    };
    if let Some(alg) = string("alg")
        && alg != Some("ed25519")
    {
        return Err(malformed("Signature-Input alg is not \"ed25519\""));
    }
    let keyid = string("keyid")
        .flatten()
        .ok_or_else(|| malformed("Signature-Input has no keyid string"))?;
    let nonce = match string("nonce") {
        Some(Some(nonce)) => Some(nonce),
        Some(None) => return Err(malformed("Signature-Input nonce is not a string")),
        None => None,
    };
    Ok(Params {
        created: integer("created")?,
        expires: integer("expires")?,
        keyid,
        nonce,
    })
}

fn check_window(params: &Params<'_>, now: u64, skew: u64) -> Result<(), SignatureError> {
    if params.expires <= params.created {
        return Err(malformed("Signature-Input expires is not after created"));
    }
    if params.created > now.saturating_add(skew) {
        return Err(SignatureError::NotYetValid {
            created: params.created,
            now,
        });
    }
    if params.expires.saturating_add(skew) < now {
        return Err(SignatureError::Expired {
            expires: params.expires,
            now,
        });
    }
    Ok(())
}

/// The component's name and its `key` parameter (a dictionary member), checked.
fn component(item: &Item) -> Result<(&str, Option<&str>), SignatureError> {
    let name = item
        .bare_item
        .as_string()
        .ok_or_else(|| malformed("a covered component is not a string"))?
        .as_str();
    let mut key = None;
    for (param, value) in &item.params {
        match (param.as_str(), value.as_string()) {
            ("key", Some(k)) => key = Some(k.as_str()),
            _ => {
                return Err(malformed(format!(
                    "component {name:?} has the unsupported parameter {:?}",
                    param.as_str()
                )));
            }
        }
    }
    Ok((name, key))
}

/// The value of one covered component, as RFC 9421 section 2 derives it.
fn component_value(
    parts: &SignedParts<'_>,
    name: &str,
    key: Option<&str>,
) -> Result<String, SignatureError> {
    let derived = match name {
        "@method" => Some(parts.method.as_str().to_owned()),
        "@authority" => Some(authority(parts)?),
        "@scheme" => Some(parts.scheme.to_ascii_lowercase()),
        "@path" => Some(
            if parts.path.is_empty() {
                "/"
            } else {
                parts.path
            }
            .to_owned(),
        ),
        "@query" => Some(format!("?{}", parts.query.unwrap_or(""))),
        "@target-uri" => Some(format!(
            "{}://{}{}{}",
            parts.scheme,
            authority(parts)?,
            if parts.path.is_empty() {
                "/"
            } else {
                parts.path
            },
            parts.query.map(|q| format!("?{q}")).unwrap_or_default()
        )),
        _ if name.starts_with('@') => {
            return Err(malformed(format!("unsupported derived component {name:?}")));
        }
        _ => None,
    };
    if let Some(value) = derived {
        if key.is_some() {
            return Err(malformed(format!("{name:?} cannot take a key parameter")));
        }
        return Ok(value);
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(malformed(format!("component {name:?} is not lower case")));
    }
    let value = field(parts.headers, name)?
        .ok_or_else(|| malformed(format!("covered header {name:?} is missing")))?;
    match key {
        None => Ok(value),
        Some(key) => {
            let members = dictionary(name, &value)?;
            let member = members
                .get(key)
                .ok_or_else(|| malformed(format!("{name} has no member {key:?}")))?;
            serialize_entry(member)
        }
    }
}

/// `@authority`: the host (and a port that is not the scheme's default), lower case.
fn authority(parts: &SignedParts<'_>) -> Result<String, SignatureError> {
    let raw = parts
        .authority
        .ok_or_else(|| malformed("@authority is covered but the request names no host"))?;
    let lower = raw.trim().to_ascii_lowercase();
    let default_port = if parts.scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    Ok(lower
        .strip_suffix(default_port)
        .map(str::to_owned)
        .unwrap_or(lower))
}

fn serialize_entry(entry: &ListEntry) -> Result<String, SignatureError> {
    let list: List = vec![entry.clone()];
    list.serialize()
        .ok_or_else(|| malformed("a component value cannot be serialized"))
}

/// The RFC 9421 signature base of `list` over `parts`, and the components' names.
fn signature_base(
    parts: &SignedParts<'_>,
    list: &InnerList,
) -> Result<(String, Vec<String>), SignatureError> {
    let mut base = String::new();
    let mut covered: Vec<String> = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let (name, key) = component(item)?;
        let identifier = item.serialize();
        if covered.contains(&identifier) {
            return Err(malformed(format!(
                "component {identifier} is covered twice"
            )));
        }
        let value = component_value(parts, name, key)?;
        base.push_str(&identifier);
        base.push_str(": ");
        base.push_str(&value);
        base.push('\n');
        covered.push(identifier);
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&serialize_entry(&ListEntry::InnerList(list.clone()))?);
    let names = list
        .items
        .iter()
        .filter_map(|i| i.bare_item.as_string().map(|s| s.as_str().to_owned()))
        .collect();
    Ok((base, names))
}

/// The directory origin `Signature-Agent` names for the signature labelled `label`: an
/// RFC 8941 string (`"https://chatgpt.com"`, early drafts) or a dictionary keyed by label.
fn signature_agent(
    headers: &HeaderMap,
    label: &str,
    list: &InnerList,
) -> Result<Option<String>, SignatureError> {
    let Some(text) = field(headers, "signature-agent")? else {
        return Ok(None);
    };
    let covers = |key: Option<&str>| {
        list.items
            .iter()
            .any(|i| component(i).is_ok_and(|(name, k)| name == "signature-agent" && k == key))
    };
    let uri = if let Ok(item) = Parser::new(&text).parse::<Item>() {
        if !covers(None) {
            return Err(malformed(
                "Signature-Agent is sent but not covered by the signature",
            ));
        }
        item.bare_item
            .as_string()
            .map(|s| s.as_str().to_owned())
            .ok_or_else(|| malformed("Signature-Agent is not a string"))?
    } else {
        let members = dictionary("Signature-Agent", &text)?;
        let member = match members.get(label) {
            Some(ListEntry::Item(item)) => item,
            _ => {
                return Err(malformed(format!(
                    "Signature-Agent has no member {label:?}"
                )));
            }
        };
        if !covers(Some(label)) {
            return Err(malformed(
                "Signature-Agent is sent but not covered by the signature",
            ));
        }
        member
            .bare_item
            .as_string()
            .map(|s| s.as_str().to_owned())
            .ok_or_else(|| malformed("Signature-Agent member is not a string"))?
    };
    Ok(Some(uri))
}

/// The signature bytes of member `label` of `Signature`.
fn signature_bytes(text: &str, label: &str) -> Result<Vec<u8>, SignatureError> {
    let members = dictionary("Signature", text)?;
    match members.get(label) {
        Some(ListEntry::Item(item)) => item
            .bare_item
            .as_byte_sequence()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| malformed(format!("Signature {label} is not a byte sequence"))),
        _ => Err(malformed(format!("Signature has no member {label:?}"))),
    }
}

/// The directory and key for a signature: from `Signature-Agent`, or the held key by its id.
fn find_key(
    config: &WebBotAuth,
    keys: &AgentKeys,
    agent: Option<String>,
    keyid: &str,
) -> Result<(String, AgentKey), SignatureError> {
    let Some(agent) = agent else {
        return keys
            .find(keyid)
            .or_else(|| {
                config.pinned.iter().find_map(|(origin, held)| {
                    held.iter()
                        .find(|k| k.thumbprint == keyid)
                        .map(|k| (origin.clone(), k.clone()))
                })
            })
            .ok_or_else(|| SignatureError::UnknownKey {
                keyid: keyid.to_owned(),
                origin: "any held directory (no Signature-Agent)".into(),
            });
    };
    let origin = normalize_origin(&agent, config.allow_insecure_loopback)
        .map_err(|e| SignatureError::Unlisted(format!("{agent:?} ({e})")))?;
    if config.agent_of(&origin).is_none() && !config.allow_unlisted {
        return Err(SignatureError::Unlisted(origin));
    }
    let held = match config.pinned.get(&origin) {
        Some(pinned) => pinned.clone(),
        None => keys.keys(&origin).ok_or_else(|| {
            keys.want(&origin);
            SignatureError::KeysNotFetched(origin.clone())
        })?,
    };
    let key = held
        .iter()
        .find(|k| k.thumbprint == keyid)
        .cloned()
        .ok_or_else(|| SignatureError::UnknownKey {
            keyid: keyid.to_owned(),
            origin: origin.clone(),
        })?;
    Ok((origin, key))
}

/// Verifies a request's Web Bot Auth signature at unix time `now` (replay is checked apart,
/// with [`AgentKeys::note_use`]). `None`: the request is not signed.
pub(crate) fn verify(
    config: &WebBotAuth,
    keys: &AgentKeys,
    parts: &SignedParts<'_>,
    now: u64,
) -> Option<Result<Signed, SignatureError>> {
    let input = field(parts.headers, "signature-input");
    let signature = field(parts.headers, "signature");
    match (input, signature) {
        (Ok(None), Ok(None)) => None,
        (Ok(Some(input)), Ok(Some(signature))) => {
            Some(verify_fields(config, keys, parts, now, &input, &signature))
        }
        (Err(e), _) | (_, Err(e)) => Some(Err(e)),
        (Ok(Some(_)), Ok(None)) => Some(Err(malformed("Signature-Input without Signature"))),
        (Ok(None), Ok(Some(_))) => Some(Err(malformed("Signature without Signature-Input"))),
    }
}

fn verify_fields(
    config: &WebBotAuth,
    keys: &AgentKeys,
    parts: &SignedParts<'_>,
    now: u64,
    input: &str,
    signature: &str,
) -> Result<Signed, SignatureError> {
    let input = dictionary("Signature-Input", input)?;
    let (label, list) = web_bot_auth_member(&input)?;
    let params = params(list)?;
    let bytes = signature_bytes(signature, label)?;
    let agent = signature_agent(parts.headers, label, list)?;
    let (base, covered) = signature_base(parts, list)?;
    if !covered.iter().any(|c| c == "@authority") {
        return Err(malformed("the signature does not cover @authority"));
    }
    check_window(&params, now, config.skew_secs)?;
    let (origin, key) = find_key(config, keys, agent, params.keyid)?;
    if !key.verifies(base.as_bytes(), &bytes) {
        return Err(SignatureError::Invalid(params.keyid.to_owned()));
    }
    let replay_digest = ring::digest::digest(
        &ring::digest::SHA256,
        params.nonce.map_or(&bytes[..], str::as_bytes),
    );
    let mut replay_key = [0u8; 16];
    replay_key.copy_from_slice(&replay_digest.as_ref()[..16]);
    Ok(Signed {
        agent: config.agent_of(&origin),
        origin,
        covered,
        replay_key: u128::from_be_bytes(replay_key),
    })
}

// === Signing ===

/// What a [`Signer`] signs: the request's authority and the validity window, plus any
/// headers to cover (a price offer, say).
#[derive(Clone, Copy, Debug)]
pub struct Signing<'a> {
    /// The `@authority` (`host[:port]`).
    pub authority: &'a str,
    /// `created`, unix seconds.
    pub created: u64,
    /// `expires`, unix seconds.
    pub expires: u64,
    /// A fresh nonce (base64 of random bytes).
    pub nonce: Option<&'a str>,
    /// Headers the request carries that the signature covers (lower-case names).
    pub covered: &'a [(&'a str, &'a str)],
}

/// Signs requests as a Web Bot Auth agent: for the simulator and tests, and for anyone who
/// wants to see what a verifier expects.
#[derive(Debug)]
pub struct Signer {
    pair: ring::signature::Ed25519KeyPair,
    key: AgentKey,
    agent: Option<String>,
}

impl Signer {
    /// A signer with a new random key, naming `agent` (an origin) in `Signature-Agent`.
    pub fn generate(agent: Option<&str>) -> Result<Signer, String> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| "the system random generator failed".to_owned())?;
        Signer::from_pkcs8(pkcs8.as_ref(), agent)
    }

    /// A signer with an Ed25519 key in PKCS#8 (v1 or v2) form.
    pub fn from_pkcs8(pkcs8: &[u8], agent: Option<&str>) -> Result<Signer, String> {
        use ring::signature::KeyPair as _;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| "an Ed25519 public key is 32 bytes".to_owned())?;
        Ok(Signer {
            pair,
            key: AgentKey::from_public_key(public),
            agent: agent.map(str::to_owned),
        })
    }

    /// The public key (its thumbprint is the `keyid`).
    pub fn key(&self) -> &AgentKey {
        &self.key
    }

    /// The key directory to serve at [`DIRECTORY_PATH`]: a JWKS with the public key.
    pub fn directory(&self) -> String {
        serde_json::json!({ "keys": [self.key.to_jwk()] }).to_string()
    }

    /// The `Signature-Agent` (when set), `Signature-Input` and `Signature` headers for a
    /// request, label `sig1`.
    pub fn sign(&self, signing: &Signing<'_>) -> Result<Vec<(&'static str, String)>, String> {
        let mut headers = HeaderMap::new();
        let mut out = Vec::new();
        let mut items = vec![string_item("@authority")?];
        if let Some(agent) = &self.agent {
            let value = Item::new(
                sfv::StringRef::from_str(agent)
                    .map_err(|e| format!("{agent:?} cannot be a structured string: {e}"))?,
            )
            .serialize();
            insert_header(&mut headers, "signature-agent", &value)?;
            items.push(string_item("signature-agent")?);
            out.push(("signature-agent", value));
        }
        for (name, value) in signing.covered {
            insert_header(&mut headers, name, value)?;
            items.push(string_item(name)?);
        }
        let mut params = sfv::Parameters::new();
        let key = |k: &str| sfv::Key::from_string(k.to_owned()).map_err(|(e, _)| e.to_string());
        let int = |v: u64| {
            i64::try_from(v)
                .ok()
                .and_then(|v| sfv::Integer::try_from(v).ok())
                .ok_or_else(|| format!("{v} is out of range for a structured integer"))
        };
        let text = |v: &str| {
            sfv::String::from_string(v.to_owned())
                .map_err(|(e, _)| e.to_string())
                .map(BareItem::String)
        };
        params.insert(key("created")?, BareItem::Integer(int(signing.created)?));
        params.insert(key("expires")?, BareItem::Integer(int(signing.expires)?));
        params.insert(key("keyid")?, text(self.key.thumbprint())?);
        params.insert(key("alg")?, text("ed25519")?);
        if let Some(nonce) = signing.nonce {
            params.insert(key("nonce")?, text(nonce)?);
        }
        params.insert(key("tag")?, text(TAG)?);
        let list = InnerList::with_params(items, params);
        let parts = SignedParts {
            method: &Method::GET,
            scheme: "https",
            authority: Some(signing.authority),
            path: "/",
            query: None,
            headers: &headers,
        };
        let (base, _) = signature_base(&parts, &list).map_err(|e| e.to_string())?;
        let signature = self.pair.sign(base.as_bytes());
        let input = serialize_entry(&ListEntry::InnerList(list)).map_err(|e| e.to_string())?;
        out.push(("signature-input", format!("sig1={input}")));
        out.push((
            "signature",
            format!(
                "sig1=:{}:",
                base64::engine::general_purpose::STANDARD.encode(signature.as_ref())
            ),
        ));
        Ok(out)
    }
}

fn string_item(name: &str) -> Result<Item, String> {
    Ok(Item::new(
        sfv::StringRef::from_str(name).map_err(|e| format!("{name:?}: {e}"))?,
    ))
}

fn insert_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = http::HeaderName::try_from(name).map_err(|e| format!("{name:?}: {e}"))?;
    let value = http::HeaderValue::try_from(value).map_err(|e| format!("{value:?}: {e}"))?;
    headers.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_http_needs_loopback() {
        assert_eq!(
            normalize_origin("https://ChatGPT.com/", false).unwrap(),
            "https://chatgpt.com"
        );
        assert_eq!(
            normalize_origin(&format!("https://a.example{DIRECTORY_PATH}"), false).unwrap(),
            "https://a.example"
        );
        assert!(normalize_origin("http://127.0.0.1:8080", false).is_err());
        assert!(normalize_origin("http://127.0.0.1:8080", true).is_ok());
        assert!(normalize_origin("http://[::1]:8080", true).is_ok());
        assert!(normalize_origin("http://example.com", true).is_err());
        assert!(normalize_origin("https://a.example/path", false).is_err());
        assert!(normalize_origin("chatgpt.com", false).is_err());
    }

    #[test]
    fn replay_cache_refuses_a_second_use_and_stays_bounded() {
        let cache = ReplayCache::default();
        assert!(cache.first_use(1));
        assert!(!cache.first_use(1));
        for key in 2..(3 * REPLAY_GENERATION as u128) {
            assert!(cache.first_use(key));
        }
        let generations = cache.generations.lock().unwrap();
        assert!(generations[0].len() + generations[1].len() <= 2 * REPLAY_GENERATION);
    }

    #[test]
    fn directory_keys_other_than_ed25519_are_skipped() {
        let jwks = br#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"},{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        assert_eq!(parse_directory(jwks).unwrap().len(), 1);
        assert_eq!(
            parse_directory(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}"#),
            Err(DirectoryError::BadKey(
                "x holds 3 bytes, an Ed25519 key 32".into()
            ))
        );
        assert!(matches!(
            parse_directory(b"[]"),
            Err(DirectoryError::NotJwks(_))
        ));
    }
}

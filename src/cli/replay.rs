//! `lenscap replay`: run yesterday's traffic through a policy, in its own time.
//!
//! Every line goes through the same classifier, behaviour tracker and rate limiters as live
//! traffic, on a clock that follows the log's timestamps, so the summary shows what would
//! have been allowed, throttled, rate-limited or blocked, and when each scraper would have
//! been stopped.
//!
//! **Visitors.** Live, every browser keeps the visitor cookie its first page view is given,
//! so people behind one address are told apart. A log has no such cookies, so replay hands
//! the cookie Lenscap would have set to the next requests of the same visitor, and tells
//! visitors apart as well as the log allows: by address and User-Agent. Where one address
//! carried several User-Agents that is a guess (two people with the same phone look like
//! one; one script changing its User-Agent looks like several), and the summary says so.
//!
//! Formats:
//! - `--format jsonl` (default): one JSON object per line —
//!   `{"ip": "…", "method": "GET", "path": "/…", "scheme": "https", "headers": {"user-agent": "…"}, "t": 12.5}`,
//!   every field optional but `path`, header names case-insensitive, `t` in seconds; an
//!   optional `version` (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`); optional `ja4` with `tls_traits`
//!   and `h2`, the connection's fingerprints as the access log writes them. Other fields are
//!   ignored, so the server's access log (`[server] access_log`) replays as it is.
//! - `--format combined`: nginx/Apache combined access logs. They carry no `Accept*` headers:
//!   a page view is known by its path (`/`, no extension, `.html`/`.htm`/`.php`…) and
//!   replayed as a browser navigation, anything else with a neutral `Accept: */*`; the other
//!   `Accept*` signals are neutral. User-Agent, Referer, protocol, path and timing count.
//! - `--format vhost-combined` (or `vhost_combined`): Apache's `vhost_combined`, the same
//!   with `host:port` first (sent as the `Host`).
//!
//! The replay clock counts milliseconds from the UTC midnight before the first line, as the
//! server's clock does when it writes an access log, so the behaviour tracker's windows fall
//! on the same milliseconds as they did live.
//!
//! Output: a summary a person can read (default), `--json` for machines, or `--verdicts`: one
//! JSON verdict per input line, in order, `{"line": N, "error": "…"}` in place of an
//! unreadable line.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version, header};
use serde::{Deserialize, Serialize};

use crate::catalog::Category;
use crate::client::{PeerAddr, Tls};
use crate::layer::{Outcome, judge};
use crate::limit::{Limits, ManualClock, MemoryStore};
use crate::policy::Policy;
use crate::signals::transport::Transport;
use crate::verdict::Verdict;

mod plain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One JSON object per line.
    Jsonl,
    /// nginx/Apache combined access log.
    Combined,
    /// Apache `vhost_combined`: `host:port` then the combined fields.
    #[value(alias = "vhost_combined")]
    VhostCombined,
}

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Policy file (default: the embedded policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Input format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Print the summary as one JSON object.
    #[arg(long, conflicts_with = "verdicts")]
    json: bool,
    /// Print one JSON verdict per input line instead of a summary.
    #[arg(long)]
    verdicts: bool,
    /// How many clients the summary lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Log file, or `-` for standard input.
    input: PathBuf,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Line<'a> {
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    scheme: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    headers: Headers<'a>,
    #[serde(default)]
    t: Option<f64>,
    #[serde(borrow, default)]
    version: Option<Cow<'a, str>>,
    /// The access log's opaque id of the visitor cookie the request carried.
    #[serde(borrow, default)]
    visitor: Option<Cow<'a, str>>,
    /// The access log's opaque id of the visitor cookie the response set.
    #[serde(borrow, default)]
    set_visitor: Option<Cow<'a, str>>,
    /// The response's Content-Type, as the access log has it.
    #[serde(borrow, default)]
    content_type: Option<Cow<'a, str>>,
    /// The connection's JA4 fingerprint, its TLS traits and its HTTP/2 fingerprint, as the
    /// access log has them (TLS terminated by Lenscap).
    #[serde(borrow, default)]
    ja4: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tls_traits: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    h2: Option<Cow<'a, str>>,
}

impl Line<'_> {
    /// A line of nothing but an empty path (the plain reader fills it in).
    fn without_path() -> Self {
        Line {
            ip: None,
            method: None,
            path: Cow::Borrowed(""),
            scheme: None,
            headers: Headers::default(),
            t: None,
            version: None,
            visitor: None,
            set_visitor: None,
            content_type: None,
            ja4: None,
            tls_traits: None,
            h2: None,
        }
    }
}

/// A line's `headers` object, in the order a `BTreeMap` would give (by name, bytewise; of
/// names given twice, the last), read into a `Vec`: lines carry few headers, and a map
/// costs a node allocation and a search per field.
#[derive(Debug, Default, PartialEq)]
struct Headers<'a>(Vec<(Cow<'a, str>, HeaderField<'a>)>);

impl<'a> Headers<'a> {
    /// Adds a field in name order; a name given again replaces the earlier value.
    fn put(&mut self, name: Cow<'a, str>, value: HeaderField<'a>) {
        let fields = &mut self.0;
        match fields.binary_search_by(|(n, _)| n.as_ref().cmp(name.as_ref())) {
            Ok(at) => fields[at].1 = value,
            Err(at) => fields.insert(at, (name, value)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = Headers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of header names to values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut headers = Headers(Vec::with_capacity(8));
                while let Some((Name(name), value)) =
                    map.next_entry::<Name<'a>, HeaderField<'a>>()?
                {
                    headers.put(name, value);
                }
                Ok(headers)
            }
        }
        deserializer.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// A visitor's `visit_bool`, `visit_i64`, `visit_u64`, `visit_f64` and `visit_unit`, all
/// answering `$answer` (an expression in the error type `E`).
macro_rules! scalars_answer {
    ($answer:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            $answer
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            $answer
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            $answer
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            $answer
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            $answer
        }
    };
}

/// A visitor's `visit_borrowed_str`, `visit_str` and `visit_string`, each answering
/// `Ok($variant(cow))`: borrowed when the input lets it be, owned otherwise.
macro_rules! strings_answer {
    ($variant:path) => {
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok($variant(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($variant(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($variant(Cow::Owned(v)))
        }
    };
}

/// A header name, borrowed from the line when it has no escapes (serde's own `Cow<str>`
/// always copies).
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Text<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            strings_answer!(Name);
        }
        deserializer.deserialize_str(Text(std::marker::PhantomData))
    }
}

/// Reads a JSON object through to its end, keeping nothing.
fn skip_map<'de, M: serde::de::MapAccess<'de>>(mut map: M) -> Result<(), M::Error> {
    while map
        .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
        .is_some()
    {}
    Ok(())
}

/// One header's value or values. Read by hand rather than as an untagged enum, which
/// buffered every value before trying each variant (a tenth of a line's parsing).
#[derive(Debug, PartialEq)]
enum HeaderField<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

/// What an untagged `HeaderField` said of anything but a string or an array of strings
/// (replay's error messages stay as they were).
const NOT_A_HEADER_FIELD: &str = "data did not match any variant of untagged enum HeaderField";

impl<'de: 'a, 'a> Deserialize<'de> for HeaderField<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Field<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Field<'a> {
            type Value = HeaderField<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a header value or an array of them")
            }
            strings_answer!(HeaderField::One);
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                let mut values = Vec::new();
                let mut all_strings = true;
                // The whole array is read before an error, as the untagged enum read it.
                while let Some(item) = seq.next_element::<StrOrOther<'a>>()? {
                    match item {
                        StrOrOther::Str(v) => values.push(v),
                        StrOrOther::Other => all_strings = false,
                    }
                }
                if all_strings {
                    Ok(HeaderField::Many(values))
                } else {
                    Err(serde::de::Error::custom(NOT_A_HEADER_FIELD))
                }
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<Self::Value, M::Error> {
                skip_map(map)?;
                Err(serde::de::Error::custom(NOT_A_HEADER_FIELD))
            }
            scalars_answer!(Err(E::custom(NOT_A_HEADER_FIELD)));
        }
        deserializer.deserialize_any(Field(std::marker::PhantomData))
    }
}

/// An array item of a header field: a string, or anything else (read and dropped).
enum StrOrOther<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for StrOrOther<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Item<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Item<'a> {
            type Value = StrOrOther<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            strings_answer!(StrOrOther::Str);
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Self::Value, S::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(StrOrOther::Other)
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                map: M,
            ) -> Result<Self::Value, M::Error> {
                skip_map(map)?;
                Ok(StrOrOther::Other)
            }
            scalars_answer!(Ok(StrOrOther::Other));
        }
        deserializer.deserialize_any(Item(std::marker::PhantomData))
    }
}

/// Counts for a category or a client.
#[derive(Clone, Debug, Default, Serialize)]
struct Tally {
    requests: u64,
    images: u64,
    allowed: u64,
    throttled: u64,
    limited: u64,
    blocked: u64,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, image: bool) {
        self.requests += 1;
        self.images += u64::from(image);
        match outcome {
            Outcome::Allowed | Outcome::Licensed => self.allowed += 1,
            Outcome::Throttled => self.throttled += 1,
            Outcome::Limited => self.limited += 1,
            // A 402 refuses the request as a block does.
            Outcome::Blocked | Outcome::PaymentRequired => self.blocked += 1,
        }
    }
}

/// When a client was first refused.
#[derive(Clone, Debug, Serialize)]
struct Stop {
    line: usize,
    /// Seconds since the log's first timestamp.
    t: f64,
    outcome: &'static str,
    /// Images it had been served before.
    images_before: u64,
    reasons: Vec<&'static str>,
}

/// A visitor as the log shows it: an address and a User-Agent (hashed; 0 for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct VisitorKey {
    ip: IpAddr,
    user_agent: u64,
}

/// Replay's maps: keyed by addresses and hashes it computed itself, read once a line.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Most visitor cookies replay keeps at once (a log of millions of addresses stays bounded).
const MAX_JAR: usize = 1 << 20;

/// Most header names, values and (apart) request targets kept made at once.
const MAX_INTERNED: usize = 1 << 16;

/// Header names, values and request targets already made, by their text: a log repeats its
/// names, User-Agents, `Accept`s and paths, and making one copies and checks the bytes (a
/// name outside the standard ones, such as `sec-fetch-dest`, into a new allocation), where a
/// kept one is shared by a reference count.
#[derive(Default)]
struct Interned {
    names: HashMap<Box<str>, HeaderName>,
    values: HashMap<Box<[u8]>, Made>,
    targets: HashMap<Box<str>, Uri>,
}

/// A header value made once, and the hash of its bytes replay keys visitors with when it is a
/// User-Agent ([`user_agent_hash`]).
#[derive(Clone)]
struct Made {
    value: HeaderValue,
    hash: u64,
}

impl Interned {
    /// `HeaderName::from_bytes(name)`, kept.
    fn name(&mut self, name: &str) -> Result<HeaderName, String> {
        if let Some(made) = self.names.get(name) {
            return Ok(made.clone());
        }
        let made = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("bad header name {name:?}"))?;
        keep(&mut self.names, name.into(), made.clone());
        Ok(made)
    }

    /// `HeaderValue::from_str(text)`, kept, with the hash of its bytes.
    fn value(&mut self, text: &str) -> Result<Made, http::header::InvalidHeaderValue> {
        if let Some(made) = self.values.get(text.as_bytes()) {
            return Ok(made.clone());
        }
        let made = Made {
            value: HeaderValue::from_str(text)?,
            hash: user_agent_hash(text.as_bytes()),
        };
        keep(&mut self.values, text.as_bytes().into(), made.clone());
        Ok(made)
    }

    /// `Uri::try_from(target)`, kept.
    fn target(&mut self, target: &str) -> Result<Uri, String> {
        if let Some(uri) = self.targets.get(target) {
            return Ok(uri.clone());
        }
        let uri = Uri::try_from(target).map_err(|_| format!("bad path {target:?}"))?;
        keep(&mut self.targets, target.into(), uri.clone());
        Ok(uri)
    }
}

/// Keeps `made` under `text`, forgetting everything first once the map holds
/// [`MAX_INTERNED`].
fn keep<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>, text: K, made: V) {
    if map.len() >= MAX_INTERNED {
        map.clear();
    }
    map.insert(text, made);
}

#[derive(Clone, Debug, Default)]
struct ClientStats {
    /// The User-Agent, shortened, for the summary.
    user_agent: String,
    tally: Tally,
    images_served: u64,
    category: Option<Category>,
    agent: Option<String>,
    stopped: Option<Stop>,
}

/// The state of one replay: policy, limiter state on the log's clock, tallies.
struct Replay {
    policy: Policy,
    limits: Limits,
    clock: ManualClock,
    start: Option<f64>,
    last: f64,
    lines: usize,
    bad: usize,
    first_errors: Vec<String>,
    by_category: BTreeMap<Category, Tally>,
    clients: HashMap<VisitorKey, ClientStats>,
    /// The visitor cookie each visitor was given last, as its browser would send it
    /// (`name=value`).
    jar: HashMap<VisitorKey, HeaderValue>,
    /// Per address: the first User-Agent seen without a cookie, and whether another came.
    agents_by_address: HashMap<IpAddr, (u64, bool)>,
    total: Tally,
    /// Access-log visitor id → the `name=value` cookie replay's limiter set for it.
    visitors: HashMap<String, HeaderValue>,
}

/// What a log line says besides the request (which is read into a reused `Request`).
struct Parsed {
    t: Option<f64>,
    /// [`user_agent_hash`] of the request's User-Agent (0 for none).
    user_agent: u64,
    visitor: Option<String>,
    set_visitor: Option<String>,
    content_type: Option<HeaderValue>,
}

impl Replay {
    fn new(policy: Policy) -> Replay {
        let clock = ManualClock::new();
        Replay {
            policy,
            limits: Limits::new(MemoryStore::default(), clock.clone()).without_bodies(),
            clock,
            start: None,
            last: 0.0,
            lines: 0,
            bad: 0,
            first_errors: Vec::new(),
            by_category: BTreeMap::new(),
            clients: HashMap::default(),
            jar: HashMap::default(),
            agents_by_address: HashMap::default(),
            total: Tally::default(),
            visitors: HashMap::default(),
        }
    }

    /// Runs one parsed request in its own time.
    fn step(
        &mut self,
        line: usize,
        request: &mut Request<()>,
        parsed: Parsed,
    ) -> (Verdict, Outcome) {
        let t = parsed.t.unwrap_or(self.last);
        let start = *self.start.get_or_insert(t);
        self.last = t.max(self.last);
        // Milliseconds since the UTC midnight before the first line, rounded (not truncated):
        // a log written to the millisecond reads back to the same millisecond.
        let midnight = (start / 86_400.0).floor() * 86_400.0;
        let ms = ((self.last - midnight).max(0.0) * 1000.0).round();
        self.clock.set(Duration::from_millis(ms as u64));
        // Lenscap's own access log names each visitor: give it the cookie replay issued it.
        if let Some(cookie) = parsed.visitor.and_then(|v| self.visitors.get(&v)) {
            request.headers_mut().insert(header::COOKIE, cookie.clone());
        }
        let peer = peer_of(request);
        let user_agent = parsed.user_agent;
        let key = self.visitor(request, peer, user_agent);
        let (_client, verdict, outcome, image, set_cookie) = judge(
            &self.limits,
            &self.policy,
            request,
            parsed.content_type.as_ref(),
        );
        if let Some(set) = set_cookie {
            if let Some(id) = parsed.set_visitor {
                self.visitors.insert(id, cookie_pair(&set));
            } else if let Some(key) = key {
                if self.jar.len() >= MAX_JAR {
                    self.jar.clear();
                }
                self.jar.insert(key, cookie_pair(&set));
            }
        }
        self.total.add(outcome, image);
        self.by_category
            .entry(verdict.category)
            .or_default()
            .add(outcome, image);
        let key = key.unwrap_or(VisitorKey {
            ip: peer,
            user_agent,
        });
        let stats = self.clients.entry(key).or_insert_with(|| ClientStats {
            user_agent: short_user_agent(request),
            ..ClientStats::default()
        });
        stats.tally.add(outcome, image);
        stats.category.get_or_insert(verdict.category);
        if stats.agent.is_none() {
            stats.agent = verdict.agent.as_deref().map(str::to_owned);
        }
        if outcome != Outcome::Allowed && outcome != Outcome::Throttled {
            if stats.stopped.is_none() {
                stats.stopped = Some(Stop {
                    line,
                    t: self.last - start,
                    outcome: outcome.as_str(),
                    images_before: stats.images_served,
                    reasons: verdict.reasons.names().collect(),
                });
            }
        } else if image {
            stats.images_served += 1;
        }
        (verdict, outcome)
    }

    /// Who sent `request`, for a request without its own cookie: its address and
    /// User-Agent; the cookie this visitor was given earlier goes on the request, as a
    /// browser would send it. `None` when the line carries a cookie of its own.
    fn visitor(
        &mut self,
        request: &mut Request<()>,
        ip: IpAddr,
        user_agent: u64,
    ) -> Option<VisitorKey> {
        if request.headers().contains_key(header::COOKIE) {
            return None;
        }
        let key = VisitorKey { ip, user_agent };
        let seen = self
            .agents_by_address
            .entry(key.ip)
            .or_insert((key.user_agent, false));
        if seen.0 != key.user_agent {
            seen.1 = true;
        }
        if let Some(cookie) = self.jar.get(&key) {
            request.headers_mut().insert(header::COOKIE, cookie.clone());
        }
        Some(key)
    }

    /// Addresses where visitors were told apart by User-Agent alone (a guess).
    fn guessed_addresses(&self) -> usize {
        self.agents_by_address
            .values()
            .filter(|(_, many)| *many)
            .count()
    }

    fn error(&mut self, line: usize, error: &str) {
        self.bad += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(format!("line {line}: {error}"));
        }
    }

    fn top_clients(&self, top: usize) -> Vec<(&VisitorKey, &ClientStats)> {
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_by(|a, b| {
            b.1.tally
                .requests
                .cmp(&a.1.tally.requests)
                .then_with(|| a.0.cmp(b.0))
        });
        clients.truncate(top);
        clients
    }

    fn summary_json(&self, top: usize) -> serde_json::Value {
        let categories: serde_json::Map<String, serde_json::Value> = self
            .by_category
            .iter()
            .map(|(c, t)| (c.as_str().to_owned(), serde_json::to_value(t).unwrap()))
            .collect();
        let clients: Vec<serde_json::Value> = self
            .top_clients(top)
            .into_iter()
            .map(|(key, s)| {
                serde_json::json!({
                    "client": key.ip.to_string(),
                    "user_agent": s.user_agent,
                    "category": s.category.map(Category::as_str),
                    "agent": s.agent,
                    "counts": s.tally,
                    "stopped": s.stopped,
                })
            })
            .collect();
        serde_json::json!({
            "lines": self.lines,
            "unreadable": self.bad,
            "duration_secs": self.start.map_or(0.0, |s| self.last - s),
            "clients": self.clients.len(),
            "stopped_clients": self.clients.values().filter(|c| c.stopped.is_some()).count(),
            "addresses_split_by_user_agent": self.guessed_addresses(),
            "total": self.total,
            "categories": categories,
            "top_clients": clients,
        })
    }

    fn summary_text(&self, top: usize) -> String {
        let mut out = String::new();
        let span = self.start.map_or(0.0, |s| self.last - s);
        let _ = writeln!(
            out,
            "{} requests ({} images) from {} clients over {} of log time; mode {} (replayed as enforced)",
            self.total.requests,
            self.total.images,
            self.clients.len(),
            clock_time(span),
            self.policy.mode().as_str()
        );
        if self.bad > 0 {
            let _ = writeln!(out, "{} unreadable lines", self.bad);
        }
        let header = |out: &mut String, first: &str| {
            let _ = writeln!(
                out,
                "  {first:<22} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8}",
                "requests", "images", "allowed", "throttled", "limited", "blocked"
            );
        };
        let row = |out: &mut String, name: &str, t: &Tally| {
            let _ = write!(
                out,
                "  {name:<22} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8}",
                t.requests, t.images, t.allowed, t.throttled, t.limited, t.blocked
            );
        };
        let _ = writeln!(out, "\nby category");
        header(&mut out, "category");
        for (category, tally) in &self.by_category {
            row(&mut out, category.as_str(), tally);
            out.push('\n');
        }
        row(&mut out, "all", &self.total);
        out.push('\n');
        let _ = writeln!(out, "\ntop clients by requests");
        header(&mut out, "client");
        for (key, stats) in self.top_clients(top) {
            row(&mut out, &key.ip.to_string(), &stats.tally);
            let what = stats
                .agent
                .clone()
                .or(stats.category.map(|c| c.as_str().to_owned()))
                .unwrap_or_default();
            let _ = writeln!(out, "  {what}  {}", stats.user_agent);
            if let Some(stop) = &stats.stopped {
                let _ = writeln!(
                    out,
                    "  {:<22} stopped at +{} (line {}), {} after {} images: {}",
                    "",
                    clock_time(stop.t),
                    stop.line,
                    stop.outcome,
                    stop.images_before,
                    stop.reasons.join(",")
                );
            }
        }
        let stopped = self
            .clients
            .values()
            .filter(|c| c.stopped.is_some())
            .count();
        let _ = writeln!(
            out,
            "\n{stopped} of {} clients would have been stopped",
            self.clients.len()
        );
        let guessed = self.guessed_addresses();
        if guessed > 0 {
            let _ = writeln!(
                out,
                "guessed: the log has no visitor cookies, so on {guessed} address(es) that carried several User-Agents, visitors were told apart by address and User-Agent"
            );
        }
        out
    }
}

fn clock_time(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let ms = ((seconds.max(0.0) - s as f64) * 1000.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}m{:02}.{ms:03}s", s / 60, s % 60)
    }
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = super::load_policy(args.config.as_ref())?;
    let input: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let replay = replay(
        policy,
        args.format,
        input,
        args.verdicts.then_some(&mut out),
    )?;
    if !args.verdicts {
        if args.json {
            serde_json::to_writer_pretty(&mut out, &replay.summary_json(args.top))?;
            out.write_all(b"\n")?;
        } else {
            out.write_all(replay.summary_text(args.top).as_bytes())?;
        }
    }
    out.flush()?;
    if replay.bad > 0 {
        for error in &replay.first_errors {
            eprintln!("lenscap replay: {error}");
        }
        eprintln!("lenscap replay: {} line(s) could not be read", replay.bad);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays `input`; with `verdicts`, writes one JSON verdict per line to it.
fn replay(
    policy: Policy,
    format: Format,
    mut input: impl BufRead,
    mut verdicts: Option<&mut dyn Write>,
) -> anyhow::Result<Replay> {
    let mut replay = Replay::new(policy);
    // One request, refilled for every line: its header map and extensions keep their memory.
    let mut request = Request::new(());
    let mut line_out = Vec::with_capacity(256);
    let mut interned = Interned::default();
    let mut number = 0usize;
    each_line(&mut input, |line| {
        number += 1;
        let text = line.trim();
        if text.is_empty() {
            return Ok(());
        }
        replay.lines += 1;
        let parsed = match format {
            Format::Jsonl => parse_jsonl(text, &mut request, &mut interned),
            Format::Combined => parse_combined(text, false, &mut request),
            Format::VhostCombined => parse_combined(text, true, &mut request),
        };
        match parsed {
            Ok(parsed) => {
                let (verdict, outcome) = replay.step(number, &mut request, parsed);
                if let Some(out) = verdicts.as_deref_mut() {
                    line_out.clear();
                    write_verdict(&mut line_out, &verdict, outcome);
                    out.write_all(&line_out)?;
                }
            }
            Err(error) => {
                replay.error(number, &error);
                if let Some(out) = verdicts.as_deref_mut() {
                    serde_json::to_writer(
                        &mut *out,
                        &serde_json::json!({ "line": number, "error": error }),
                    )?;
                    out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    })?;
    Ok(replay)
}

/// What a line says of its connection: the client's address, TLS, the fingerprints.
struct Connection {
    ip: Option<IpAddr>,
    tls: bool,
    transport: Option<Transport>,
}

/// Calls `each` with every line of `input` (its newline included, as `read_line` gives it),
/// lent from the reader's buffer when it lies whole in it: copying each line out, and
/// finding its end with the standard library's byte search, cost about 900 instructions a
/// line of the corpus. Input that is not UTF-8 fails as `read_line` fails.
fn each_line(
    input: &mut impl BufRead,
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // The start of a line the buffer ended in the middle of.
    let mut started = Vec::new();
    loop {
        let buffer = input.fill_buf().context("reading input")?;
        if buffer.is_empty() {
            if started.is_empty() {
                return Ok(());
            }
            return each(utf8(&started)?);
        }
        let Some(end) = memchr::memchr(b'\n', buffer) else {
            started.extend_from_slice(buffer);
            let taken = buffer.len();
            input.consume(taken);
            continue;
        };
        if started.is_empty() {
            each(utf8(&buffer[..=end])?)?;
        } else {
            started.extend_from_slice(&buffer[..=end]);
            each(utf8(&started)?)?;
            started.clear();
        }
        input.consume(end + 1);
    }
}

/// A line's text; not UTF-8, the error `read_line` gives.
fn utf8(line: &[u8]) -> anyhow::Result<&str> {
    std::str::from_utf8(line)
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })
        .context("reading input")
}

/// Sets everything but the headers of the reused `request` (which the caller filled).
fn fill(request: &mut Request<()>, method: Method, uri: Uri, version: Version, conn: Connection) {
    *request.uri_mut() = uri;
    *request.method_mut() = method;
    *request.version_mut() = version;
    let extensions = request.extensions_mut();
    keep_extension(
        extensions,
        conn.ip.map(|ip| PeerAddr(SocketAddr::new(ip, 0))),
    );
    keep_extension(extensions, conn.tls.then_some(Tls));
    keep_extension(extensions, conn.transport);
}

/// Sets the request's extension of type `T` to `value` (none: takes it out), in the place the
/// last line's took: inserting boxes every value anew.
fn keep_extension<T: Clone + Send + Sync + 'static>(
    extensions: &mut http::Extensions,
    value: Option<T>,
) {
    match value {
        Some(value) => {
            if let Some(kept) = extensions.get_mut::<T>() {
                *kept = value;
            } else {
                extensions.insert(value);
            }
        }
        None => {
            extensions.remove::<T>();
        }
    }
}

/// One `--verdicts` line: `{"action":…,"outcome":…,"score":…,"category":…,"agent":…,"reasons":[…]}`
/// and a newline, as `serde_json` writes the same fields.
fn write_verdict(out: &mut Vec<u8>, verdict: &Verdict, outcome: Outcome) {
    out.extend_from_slice(b"{\"action\":");
    json_name(out, verdict.action.as_str());
    out.extend_from_slice(b",\"outcome\":");
    json_name(out, outcome.as_str());
    out.extend_from_slice(b",\"score\":");
    out.extend_from_slice(itoa(verdict.score, &mut [0; 10]));
    out.extend_from_slice(b",\"category\":");
    json_name(out, verdict.category.as_str());
    out.extend_from_slice(b",\"agent\":");
    match verdict.agent.as_deref() {
        Some(agent) => json_str(out, agent),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"reasons\":[");
    for (i, name) in verdict.reasons.names().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_name(out, name);
    }
    out.extend_from_slice(b"]}\n");
}

/// The decimal digits of `n`, written at the end of `digits`.
fn itoa(mut n: u32, digits: &mut [u8; 10]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// One of Lenscap's own names (an action, an outcome, a category, a reason), between quotes:
/// they are kebab-case words, with nothing to escape.
fn json_name(out: &mut Vec<u8>, name: &'static str) {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// A JSON string: copied between quotes when nothing in it needs escaping, else written by
/// `serde_json`.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

fn parse_jsonl(
    text: &str,
    request: &mut Request<()>,
    interned: &mut Interned,
) -> Result<Parsed, String> {
    let line: Line<'_> = match plain::read(text) {
        Some(line) => line,
        None => serde_json::from_str(text).map_err(|e| format!("not a request object: {e}"))?,
    };
    let headers = request.headers_mut();
    headers.clear();
    // The first User-Agent value is the one `HeaderMap::get` gives.
    let mut user_agent = None;
    for (name, field) in &line.headers.0 {
        let name = interned.name(name)?;
        let mut add = |value: &str| -> Result<(), String> {
            let made = interned
                .value(value)
                .map_err(|_| format!("bad value for header {name}"))?;
            if name == header::USER_AGENT {
                user_agent.get_or_insert(made.hash);
            }
            headers.append(name.clone(), made.value);
            Ok(())
        };
        match field {
            HeaderField::One(value) => add(value)?,
            HeaderField::Many(values) => values.iter().try_for_each(|v| add(v))?,
        }
    }
    let ip = match &line.ip {
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| format!("bad ip {ip:?}"))?),
        None => None,
    };
    let method = match &line.method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method {m:?}"))?,
        None => Method::GET,
    };
    let tls = match line.scheme.as_deref() {
        None | Some("http") => false,
        Some("https") => true,
        Some(other) => return Err(format!("bad scheme {other:?} (http or https)")),
    };
    if let Some(t) = line.t
        && !t.is_finite()
    {
        return Err("bad t".into());
    }
    let version = match line.version.as_deref() {
        None | Some("HTTP/1.1") => Version::HTTP_11,
        Some("HTTP/1.0") => Version::HTTP_10,
        Some("HTTP/0.9") => Version::HTTP_09,
        Some("HTTP/2" | "HTTP/2.0") => Version::HTTP_2,
        Some("HTTP/3" | "HTTP/3.0") => Version::HTTP_3,
        Some(other) => return Err(format!("bad version {other:?}")),
    };
    let uri = interned.target(&line.path)?;
    let transport = Transport::from_text(
        line.ja4.as_deref(),
        line.tls_traits.as_deref(),
        line.h2.as_deref(),
    )?;
    let conn = Connection { ip, tls, transport };
    fill(request, method, uri, version, conn);
    Ok(Parsed {
        t: line.t,
        user_agent: user_agent.unwrap_or(0),
        visitor: line.visitor.map(Cow::into_owned),
        set_visitor: line.set_visitor.map(Cow::into_owned),
        content_type: line
            .content_type
            .and_then(|c| HeaderValue::from_str(&c).ok()),
    })
}

/// The request's client address (unknown: unspecified).
fn peer_of(request: &Request<()>) -> IpAddr {
    request
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}

/// The hash of a User-Agent's bytes that tells visitors of one address apart.
fn user_agent_hash(user_agent: &[u8]) -> u64 {
    crate::fingerprint::fnv1a64(&[user_agent])
}

fn short_user_agent(request: &Request<()>) -> String {
    let ua = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    match ua.char_indices().nth(48) {
        Some((at, _)) => format!("{}…", &ua[..at]),
        None => ua.to_owned(),
    }
}

/// `name=value` of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &HeaderValue) -> HeaderValue {
    let bytes = set_cookie.as_bytes();
    let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
    HeaderValue::from_bytes(&bytes[..end]).unwrap_or_else(|_| set_cookie.clone())
}

/// Whether a request target names a page, by its path as the classifier reads it.
fn is_page_target(target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or(target);
    crate::classify::is_page_path(path)
}

/// `ip ident user [10/Oct/2000:13:55:36 -0700] "GET /p HTTP/1.1" 200 2326 "referer" "ua"`,
/// after `host:port ` when `vhost` (Apache's `vhost_combined`).
fn parse_combined(text: &str, vhost: bool, request: &mut Request<()>) -> Result<Parsed, String> {
    let bad = |what: &str| format!("not a combined log line ({what})");
    let (host, text) = if vhost {
        let (host, rest) = text.split_once(' ').ok_or_else(|| bad("no virtual host"))?;
        (Some(host), rest)
    } else {
        (None, text)
    };
    let (ip, rest) = text.split_once(' ').ok_or_else(|| bad("no address"))?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("bad client address {ip:?}"))?;
    let open = rest.find('[').ok_or_else(|| bad("no timestamp"))?;
    let close = rest[open..].find(']').ok_or_else(|| bad("no timestamp"))? + open;
    let t = parse_clf_time(&rest[open + 1..close]).ok_or_else(|| bad("bad timestamp"))?;
    let rest = &rest[close + 1..];
    let (request_line, rest) = quoted(rest).ok_or_else(|| bad("no request line"))?;
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().ok_or_else(|| bad("no request target"))?;
    let version = match parts.next() {
        Some("HTTP/1.0") => Version::HTTP_10,
        Some("HTTP/2.0" | "HTTP/2") => Version::HTTP_2,
        Some("HTTP/3.0" | "HTTP/3") => Version::HTTP_3,
        _ => Version::HTTP_11,
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("bad method"))?;
    let (referer, rest) = quoted(rest).ok_or_else(|| bad("no referer"))?;
    let (ua, _) = quoted(rest).ok_or_else(|| bad("no user agent"))?;
    let mut headers = HeaderMap::new();
    // Combined logs do not record these. A page is known by its path and replayed as the
    // navigation a browser makes (it earns image credit, as it would live); the rest get
    // neutral placeholders, so their absence is not held against anyone.
    let accept = if method == Method::GET && is_page_target(target) {
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    } else {
        "*/*"
    };
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    if let Some(host) = host {
        let name = host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        });
        if let Ok(v) = HeaderValue::from_str(name) {
            headers.insert(header::HOST, v);
        }
    }
    headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("*"));
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    if ua != "-"
        && let Ok(v) = HeaderValue::from_str(&unescape(ua))
    {
        headers.insert(header::USER_AGENT, v);
    }
    if referer != "-"
        && let Ok(v) = HeaderValue::from_str(&unescape(referer))
    {
        headers.insert(header::REFERER, v);
    }
    *request.headers_mut() = headers;
    let uri = Uri::try_from(target).map_err(|_| format!("bad path {target:?}"))?;
    let conn = Connection {
        ip: Some(ip),
        tls: false,
        transport: None,
    };
    fill(request, method, uri, version, conn);
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .map_or(0, |ua| user_agent_hash(ua.as_bytes()));
    Ok(Parsed {
        t: Some(t),
        user_agent,
        visitor: None,
        set_visitor: None,
        content_type: None,
    })
}

/// The next `"…"` field (with `\"` escapes) and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let start = text.find('"')? + 1;
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&text[start..i], &text[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

fn unescape(text: &str) -> Cow<'_, str> {
    if text.contains('\\') {
        Cow::Owned(text.replace("\\\"", "\"").replace("\\\\", "\\"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `10/Oct/2000:13:55:36 -0700` → seconds since the Unix epoch.
fn parse_clf_time(text: &str) -> Option<f64> {
    let (stamp, zone) = text.split_once(' ').unwrap_or((text, "+0000"));
    let mut it = stamp.split([':', '/']);
    let day: i64 = it.next()?.parse().ok()?;
    let month = match it.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = it.next()?.parse().ok()?;
    let hour: i64 = it.next()?.parse().ok()?;
    let minute: i64 = it.next()?.parse().ok()?;
    let second: f64 = it.next()?.parse().ok()?;
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone = zone.trim_start_matches(['+', '-']);
    let offset = if zone.len() == 4 {
        sign * (zone[..2].parse::<i64>().ok()? * 3600 + zone[2..].parse::<i64>().ok()? * 60)
    } else {
        0
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60 - offset) as f64 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `--verdicts` line as `serde_json` writes it, for comparison with `write_verdict`.
    #[derive(Serialize)]
    struct Out<'a> {
        action: &'static str,
        outcome: &'static str,
        score: u32,
        category: &'static str,
        agent: Option<&'a str>,
        reasons: Vec<&'static str>,
    }

    #[test]
    fn verdict_lines_are_what_serde_json_writes() {
        use crate::verdict::{Action, Reason, Reasons};
        let none = Reasons::default();
        let mut many = Reasons::default();
        many.insert(Reason::NoAccept);
        many.insert(Reason::NoAcceptLanguage);
        many.insert(Reason::KnownAgent);
        for (agent, reasons) in [
            (None, &none),
            (Some("GPTBot"), &many),
            (Some("a \"quoted\" \\ agent\u{1}\u{7f}é"), &many),
        ] {
            for (action, outcome, category) in [
                (Action::Allow, Outcome::Allowed, Category::Browser),
                (Action::Block, Outcome::Blocked, Category::AiTraining),
                (Action::Throttle, Outcome::Limited, Category::BulkDownloader),
            ] {
                let verdict = Verdict {
                    action,
                    score: 45,
                    category,
                    agent: agent.map(std::sync::Arc::from),
                    reasons: *reasons,
                };
                let mut ours = Vec::new();
                write_verdict(&mut ours, &verdict, outcome);
                let mut theirs = serde_json::to_vec(&Out {
                    action: verdict.action.as_str(),
                    outcome: outcome.as_str(),
                    score: verdict.score,
                    category: verdict.category.as_str(),
                    agent: verdict.agent.as_deref(),
                    reasons: verdict.reasons.names().collect(),
                })
                .unwrap();
                theirs.push(b'\n');
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    String::from_utf8(theirs).unwrap()
                );
            }
        }
    }

    /// Every name `json_name` is given goes between quotes as it is in JSON.
    #[test]
    fn lenscap_names_need_no_escaping() {
        use crate::verdict::{Action, Reason};
        let actions = [
            Action::Allow,
            Action::Throttle,
            Action::Tarpit,
            Action::License,
            Action::Block,
        ]
        .map(Action::as_str);
        let outcomes = [
            Outcome::Allowed,
            Outcome::Throttled,
            Outcome::Limited,
            Outcome::Blocked,
            Outcome::PaymentRequired,
            Outcome::Licensed,
        ]
        .map(Outcome::as_str);
        let names = actions
            .into_iter()
            .chain(outcomes)
            .chain(Category::ALL.map(Category::as_str))
            .chain(Reason::ALL.iter().map(|r| r.name()));
        for name in names {
            let mut ours = Vec::new();
            json_name(&mut ours, name);
            assert_eq!(ours, serde_json::to_vec(name).unwrap(), "{name}");
        }
    }

    /// Header fields go into the request in the order (and with the duplicates resolved)
    /// that reading them into a `BTreeMap` gave, so verdicts do not change.
    #[test]
    fn headers_keep_the_order_a_btreemap_gave() {
        let text = r#"{"path":"/a.jpg","headers":{"user-agent":"b","Accept":"x","User-Agent":"a","accept":["y","z"],"Accept":"w","x-b":"1","x-a":"2"}}"#;
        let mut request = Request::new(());
        parse_jsonl(text, &mut request, &mut Interned::default()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text).unwrap();
        let map: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(line["headers"].clone()).unwrap();
        let mut expected = HeaderMap::new();
        for (name, value) in &map {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            let values = match value {
                serde_json::Value::Array(v) => v.clone(),
                one => vec![one.clone()],
            };
            for v in values {
                expected.append(
                    name.clone(),
                    HeaderValue::from_str(v.as_str().unwrap()).unwrap(),
                );
            }
        }
        let pairs = |h: &HeaderMap| -> Vec<(String, String)> {
            h.iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect()
        };
        assert_eq!(pairs(request.headers()), pairs(&expected));
        assert_eq!(request.headers()[header::ACCEPT], "w");
        assert_eq!(request.headers()[header::USER_AGENT], "a");
        // The reused request starts afresh on the next line.
        parse_jsonl(r#"{"path":"/b"}"#, &mut request, &mut Interned::default()).unwrap();
        assert!(request.headers().is_empty());
        assert!(request.extensions().get::<PeerAddr>().is_none());
        assert_eq!(request.uri(), "/b");
    }

    /// `each_line` gives the lines `read_line` gives, whatever the reader's buffer size.
    #[test]
    fn lines_are_what_read_line_gives() {
        let text = "first\n\nsecond line\r\nthird, no newline";
        let by_read_line = |capacity| {
            let mut input = BufReader::with_capacity(capacity, text.as_bytes());
            let mut lines = Vec::new();
            let mut line = String::new();
            while input.read_line(&mut line).unwrap() > 0 {
                lines.push(std::mem::take(&mut line));
            }
            lines
        };
        for capacity in [1, 2, 3, 5, 8, 64] {
            let mut input = BufReader::with_capacity(capacity, text.as_bytes());
            let mut lines = Vec::new();
            each_line(&mut input, |line| {
                lines.push(line.to_owned());
                Ok(())
            })
            .unwrap();
            assert_eq!(lines, by_read_line(capacity), "buffer of {capacity}");
        }
        let broken: &[u8] = b"ok\nnot \xff utf-8\n";
        let mut seen = 0;
        let error = each_line(&mut BufReader::with_capacity(4, broken), |_| {
            seen += 1;
            Ok(())
        })
        .unwrap_err();
        let theirs = BufReader::new(broken)
            .lines()
            .nth(1)
            .unwrap()
            .unwrap_err()
            .to_string();
        assert_eq!(seen, 1);
        assert_eq!(format!("{error:#}"), format!("reading input: {theirs}"));
    }

    fn verdicts(format: Format, input: &str) -> (Vec<serde_json::Value>, usize) {
        let policy = Policy::embedded().unwrap();
        let mut out = Vec::new();
        let replay = replay(policy, format, input.as_bytes(), Some(&mut out)).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, replay.bad)
    }

    #[test]
    fn one_verdict_per_line_in_order_with_errors_in_place() {
        let input = concat!(
            r#"{"ip":"203.0.113.1","path":"/a.jpg","headers":{"User-Agent":"Wget/1.21.3","accept":"*/*"}}"#,
            "\n",
            "not json\n",
            r#"{"path":"/","scheme":"https","headers":{"user-agent":["Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0"],"accept":"text/html","accept-language":"en","accept-encoding":"gzip"},"t":1.5}"#,
            "\n",
            r#"{"path":"/","scheme":"gopher"}"#,
            "\n",
        );
        let (lines, bad) = verdicts(Format::Jsonl, input);
        assert_eq!(bad, 2);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["action"], "block");
        assert_eq!(lines[0]["outcome"], "blocked");
        assert_eq!(lines[0]["agent"], "Wget");
        assert_eq!(lines[1]["line"], 2);
        assert_eq!(lines[2]["action"], "allow");
        assert_eq!(lines[2]["category"], "browser");
        assert!(lines[3]["error"].as_str().unwrap().contains("gopher"));
    }

    #[test]
    fn pages_are_known_by_path_and_vhosts_are_read() {
        for page in ["/", "/gallery/2", "/events/quiz.html", "/a.php?x=1.jpg"] {
            assert!(is_page_target(page), "{page}");
        }
        for asset in ["/a.jpg", "/style.css", "/p/IMG_1.JPG?size=thumb"] {
            assert!(!is_page_target(asset), "{asset}");
        }
        let line = r#"thecrown.example:443 203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /events/ HTTP/1.1" 200 2326 "-" "Mozilla/5.0""#;
        let mut request = Request::new(());
        parse_combined(line, true, &mut request).unwrap();
        assert_eq!(request.headers()[header::HOST], "thecrown.example");
        assert!(
            request.headers()[header::ACCEPT]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let image = r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /a.jpg HTTP/1.1" 200 2326 "-" "Mozilla/5.0""#;
        parse_combined(image, false, &mut request).unwrap();
        assert_eq!(request.headers()[header::ACCEPT], "*/*");
    }

    #[test]
    fn combined_lines_parse() {
        let line = r#"203.0.113.7 - - [10/Oct/2000:13:55:36 -0700] "GET /photos/IMG_0001.jpg HTTP/1.1" 200 2326 "http://pub.example/gallery" "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0""#;
        let mut request = Request::new(());
        let parsed = parse_combined(line, false, &mut request).unwrap();
        assert_eq!(parsed.t, Some(971_211_336.0));
        assert_eq!(request.uri().path(), "/photos/IMG_0001.jpg");
        assert_eq!(
            request.headers()[header::REFERER],
            "http://pub.example/gallery"
        );
        assert!(parse_combined("garbage", false, &mut request).is_err());
        let quoted_ua = r#"1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "GET / HTTP/1.0" 200 1 "-" "a \"quoted\" agent""#;
        parse_combined(quoted_ua, false, &mut request).unwrap();
        assert_eq!(request.headers()[header::USER_AGENT], "a \"quoted\" agent");
        assert_eq!(request.version(), Version::HTTP_10);
    }

    /// A person and a harvester in one combined log, in log time.
    #[test]
    fn the_summary_shows_when_a_scraper_would_have_been_stopped() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
        let mut log = String::new();
        let mut t = 0u32;
        for page in 1..=3 {
            let _ = writeln!(
                log,
                r#"198.51.100.1 - - [01/Jan/2026:10:{:02}:{:02} +0000] "GET /gallery/{page} HTTP/1.1" 200 900 "-" "{firefox}""#,
                t / 60,
                t % 60
            );
            for i in 0..8 {
                let _ = writeln!(
                    log,
                    r#"198.51.100.1 - - [01/Jan/2026:10:{:02}:{:02} +0000] "GET /photos/p{page}-{i}.jpg HTTP/1.1" 200 9000 "http://pub.example/gallery/{page}" "{firefox}""#,
                    t / 60,
                    t % 60
                );
            }
            t += 40;
        }
        for n in 1..=100 {
            let s = 200 + n / 4;
            let _ = writeln!(
                log,
                r#"192.0.2.66 - - [01/Jan/2026:10:{:02}:{:02} +0000] "GET /photos/IMG_{n:04}.jpg HTTP/1.1" 200 9000 "-" "{firefox}""#,
                s / 60,
                s % 60
            );
        }
        let replay = replay(
            Policy::embedded().unwrap(),
            Format::Combined,
            log.as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(replay.bad, 0);
        let by_ip = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            let mut found = replay.clients.iter().filter(|(k, _)| k.ip == ip);
            let (_, stats) = found.next().unwrap();
            assert!(found.next().is_none(), "one visitor on {ip}");
            stats
        };
        let person = by_ip("198.51.100.1");
        assert!(person.stopped.is_none(), "{person:?}");
        assert_eq!(person.tally.allowed, 27);
        let scraper = by_ip("192.0.2.66");
        let stop = scraper.stopped.as_ref().unwrap();
        assert!(stop.images_before <= 10, "{stop:?}");
        assert!(stop.reasons.contains(&"over-quota"));
        let text = replay.summary_text(10);
        assert!(
            text.contains("192.0.2.66") && text.contains("stopped at +"),
            "{text}"
        );
        assert!(
            text.contains("1 of 2 clients would have been stopped"),
            "{text}"
        );
        let json = replay.summary_json(10);
        assert_eq!(json["stopped_clients"], 1);
        assert_eq!(json["total"]["requests"], 127);
    }
}

//! The Redis/Valkey store: several instances behind a load balancer keep one set of client,
//! subnet and site records, so that they behave as one site.
//!
//! ```toml
//! [store]
//! backend = "redis"                 # "memory" (the default) or "redis"
//! url = "redis://127.0.0.1:6379/0"  # rediss:// for TLS; user and password in the URL,
//! password_env = "LENSCAP_REDIS_PASSWORD"  # or the password from this variable
//! timeout = "50ms"                  # past this, decide from local state
//! # nodes = ["redis://10.0.0.5:6379", "redis://10.0.0.6:6379"]  # a Redis Cluster, not url
//! ```
//!
//! **One request, one round trip.** Before a request is decided, [`RedisStore::prefetch`]
//! reads, in one pipeline, Redis `TIME` and the records the decision will touch (the
//! address's, the cookie visitor's, the subnet's, the site's cell and the site's
//! `unrendered_images` record) into the instance's local
//! copy ([`MemoryStore`]). The decision then runs on that copy as it would in one process.
//! What the decision changed is merged back in one pipeline of atomic Lua merges, one per
//! record, overlapping the inner service ([`hold_writes`]; later writes go through a
//! background writer). The merge reads the time with Redis `TIME`; when another instance
//! wrote the record in between, it adds up what each charged to the GCRA cells, and checks
//! each of this request's charges again against the rate that admitted it (its span, noted
//! by the check): a charge that no longer conforms is not added and the request is refused
//! ([`Merged`]). It keeps the later trap mark, takes the newest tracker otherwise, and sets a
//! TTL that outlives the record's longest budget.
//!
//! **Time.** Limiter cells hold milliseconds of the fleet's clock ([`FleetClock`]): Unix time
//! modulo 2³² as Redis `TIME` tells it, each instance correcting its own clock at every round
//! trip, so a cell written by one instance means the same to all.
//!
//! **Keys.** `lenscap:<site>:c:{<key>}` (client), `lenscap:<site>:n:{<key>}` (subnet),
//! `lenscap:<site>:s:{site}` (site cell): every script touches one key (one slot). On a Redis
//! Cluster (`nodes`), each pipeline is cut by hash tag and its parts sent to their nodes at
//! once (`link`). `lenscap:fleet:secret` holds the visitor-cookie secret (made once
//! with `SET NX`), from which every instance also derives the seed it hashes identities into
//! keys with.
//!
//! **Failure.** Past `timeout`, or while Redis is gone, the instance decides from its local
//! copy, counts each such decision, logs the change of state once, reports
//! `store="degraded"` on `/readyz` and in the metrics, and probes Redis with backoff until it
//! answers again.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_spanned::Spanned;
use tokio::sync::mpsc;

use super::clock::Clock;
use super::cookie::share_fleet_secret;
use super::distinct::{DistinctPhotos, WINDOW_AT};
use super::rate::{Admissions, Millis, admissions_during};
use super::store::{
    CLIENT_CELLS, ClientRecord, MemoryStore, Prefetching, RecordKeys, SUBNET_CELLS, StateStore,
    SubnetRecord,
};
use crate::settings::{ConfigError, Source};
use crate::signals::behaviour::MAX_TRAP_MARK;

mod link;

use link::Link;
pub use link::Servers;

/// Byte offset of the trap mark in an encoded client record (merged as the later of two).
const TRAP_AT: usize = 4 * CLIENT_CELLS;

/// Writes waiting for the writer; past this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;

/// Most writes one pipeline carries.
const BATCH: usize = 512;

/// Where the fleet's visitor-cookie secret lives.
const SECRET_KEY: &str = "lenscap:fleet:secret";

/// Merges one record written by an instance into the stored one, atomically, at Redis `TIME`.
/// KEYS[1] the record; ARGV: before (empty when the instance had none), after, the number of
/// leading u32 cells, the byte offset of a u16 "later wins" mark (0: none), the TTL floor in
/// milliseconds, the most each cell may be ahead of now after the request's charge (u32
/// each, 0: not checked; may be empty), and `1` when the instance refuses the request on an
/// answer above 0 (the refused charge is then not kept) or `0` when it has answered already
/// (the charge is kept, so the next request pays for it), and the byte offset of a u32 day
/// number followed by a bitmap to the end (0: none): two writes of one day unite their
/// bitmaps, of two days the later day's wins, and a write whose new bits another write of
/// the day has set already (a photo two instances each took for new) charges nothing.
/// Returns 0, or how many milliseconds too early the request came for a cell whose charge no
/// longer conforms once another instance's write is counted.
const MERGE: &str = r#"
local M = 4294967296
local function ahead(a, b)
  local d = (a - b) % M
  if d >= 2147483648 then d = d - M end
  return d
end
local function later(a, b)
  if a == 0 then return b end
  if b == 0 then return a end
  if ahead(a, b) > 0 then return a end
  return b
end
local t = redis.call('TIME')
local now = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) % M
local stored = redis.call('GET', KEYS[1])
local before, after = ARGV[1], ARGV[2]
local cells, mark, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limits, held = ARGV[6] or '', ARGV[7] == '1'
local union = tonumber(ARGV[8] or '0')
local merged = after
local late = 0
local function day(record) return struct.unpack('<I4', record, union + 1) end
local covered = false
if union > 0 and stored and stored ~= before and #stored == #after and day(stored) == day(after) then
  covered = true
  local fresh = #before ~= #after or day(before) ~= day(after)
  for i = union + 5, #after, 4 do
    local a, s = (struct.unpack('<i4', after, i)), (struct.unpack('<i4', stored, i))
    local b = 0
    if not fresh then b = (struct.unpack('<i4', before, i)) end
    if bit.band(a, bit.bnot(b), bit.bnot(s)) ~= 0 then
      covered = false
      break
    end
  end
end
if stored and stored ~= before and #stored == #after then
  local parts = {}
  for i = 0, cells - 1 do
    local at = i * 4 + 1
    local s = struct.unpack('<I4', stored, at)
    local a = struct.unpack('<I4', after, at)
    local b = 0
    if #before == #after then b = struct.unpack('<I4', before, at) end
    local charge = 0
    if a ~= 0 and not covered then charge = ahead(a, later(b, now)) end
    if charge > 0 then
      local charged = (later(s, now) + charge) % M
      local limit = 0
      if #limits >= at + 3 then limit = struct.unpack('<I4', limits, at) end
      local over = 0
      if limit > 0 then over = ahead(charged, now) - limit end
      if over > late then late = over end
      if over <= 0 or not held then s = charged end
      if s == 0 then s = 1 end
    end
    parts[#parts + 1] = struct.pack('<I4', s)
  end
  local rest = string.sub(after, cells * 4 + 1)
  if mark > 0 then
    local s = struct.unpack('<I2', stored, mark + 1)
    local a = struct.unpack('<I2', after, mark + 1)
    local d = (s - a) % 65536
    if a == 0 or (s ~= 0 and d > 0 and d < 32768) then a = s end
    rest = struct.pack('<I2', a) .. string.sub(after, mark + 3)
  end
  merged = table.concat(parts) .. rest
  if union > 0 then
    local sday, aday = day(stored), day(after)
    if sday == aday then
      local words = {}
      for i = union + 5, #after, 4 do
        local s, a = (struct.unpack('<i4', stored, i)), (struct.unpack('<i4', merged, i))
        words[#words + 1] = struct.pack('<i4', bit.bor(s, a))
      end
      merged = string.sub(merged, 1, union + 4) .. table.concat(words)
    elseif sday > aday then
      merged = string.sub(merged, 1, union) .. string.sub(stored, union + 1)
    end
  end
end
for i = 0, cells - 1 do
  local cell = struct.unpack('<I4', merged, i * 4 + 1)
  if cell ~= 0 and ahead(cell, now) > ttl then ttl = ahead(cell, now) end
end
redis.call('SET', KEYS[1], merged, 'PX', ttl + 1000)
return late
"#;

// === impl StoreConfig ===

/// `[store]`: where limiter and tracker state lives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    backend: Spanned<String>,
    url: Option<Spanned<String>>,
    nodes: Option<Spanned<Vec<String>>>,
    password_env: Option<Spanned<String>>,
    timeout: Spanned<String>,
    connect_timeout: Spanned<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Spanned::new(0..0, "memory".into()),
            url: None,
            nodes: None,
            password_env: None,
            timeout: Spanned::new(0..0, "50ms".into()),
            connect_timeout: Spanned::new(0..0, "1s".into()),
        }
    }
}

/// `[store]`, compiled, for the Redis backend (the in-process store needs no settings).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    servers: Servers,
    password: Option<String>,
    /// Longest wait for Redis on a request's path before deciding from local state.
    pub timeout: Duration,
    /// Longest wait for a connection, and for the fleet's secret at start.
    pub connect_timeout: Duration,
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.redacted_url())
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl StoreSettings {
    /// The URL (a cluster's node URLs, comma-separated) without passwords, for logs.
    pub fn redacted_url(&self) -> String {
        match &self.servers {
            Servers::One(url) => redacted(url),
            Servers::Cluster(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(|n| redacted(n)).collect();
                nodes.join(",")
            }
        }
    }

    /// Where the fleet's Redis is.
    pub fn servers(&self) -> &Servers {
        &self.servers
    }
}

fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

impl StoreConfig {
    /// The Redis settings, `None` for the in-process store; an error names the key and line.
    pub(crate) fn compile(
        &self,
        source: &Source<'_>,
    ) -> Result<Option<StoreSettings>, ConfigError> {
        match self.backend.get_ref().as_str() {
            "memory" => return Ok(None),
            "redis" | "valkey" => {}
            other => {
                return Err(source.invalid(
                    Some(self.backend.span()),
                    format!("store.backend = {other:?}: expected \"memory\" or \"redis\""),
                ));
            }
        }
        let servers = self.servers(source)?;
        let password = match &self.password_env {
            None => None,
            Some(name) => Some(std::env::var(name.get_ref()).map_err(|_| {
                source.invalid(
                    Some(name.span()),
                    format!(
                        "store.password_env: the environment variable {} is not set",
                        name.get_ref()
                    ),
                )
            })?),
        };
        let positive = |key: &str, value: &Spanned<String>| {
            let d = source.duration(key, value)?;
            if d.is_zero() {
                return Err(source.invalid(Some(value.span()), format!("{key} must be above 0")));
            }
            Ok(d)
        };
        Ok(Some(StoreSettings {
            servers,
            password,
            timeout: positive("store.timeout", &self.timeout)?,
            connect_timeout: positive("store.connect_timeout", &self.connect_timeout)?,
        }))
    }
}

impl StoreConfig {
    /// `url` (one server) or `nodes` (a Redis Cluster's), exactly one, each a URL the
    /// crate reads; a cluster's nodes all on database 0 (a cluster has no other).
    fn servers(&self, source: &Source<'_>) -> Result<Servers, ConfigError> {
        let check = |key: &str, url: &Spanned<String>, at: std::ops::Range<usize>| {
            match redis::IntoConnectionInfo::into_connection_info(url.get_ref().as_str()) {
                Err(error) => Err(source.invalid(Some(at), format!("{key}: {error}"))),
                Ok(info) => Ok(info.redis_settings().db()),
            }
        };
        match (&self.url, &self.nodes) {
            (Some(url), None) => {
                check("store.url", url, url.span())?;
                Ok(Servers::One(url.get_ref().clone()))
            }
            (None, Some(nodes)) => {
                if nodes.get_ref().is_empty() {
                    return Err(source.invalid(
                        Some(nodes.span()),
                        "store.nodes is empty: name at least one node of the cluster",
                    ));
                }
                for node in nodes.get_ref() {
                    let spanned = Spanned::new(nodes.span(), node.clone());
                    if check("store.nodes", &spanned, nodes.span())? != 0 {
                        return Err(source.invalid(
                            Some(nodes.span()),
                            format!("store.nodes: {node:?} names a database other than 0, which a Redis Cluster does not have"),
                        ));
                    }
                }
                Ok(Servers::Cluster(nodes.get_ref().clone()))
            }
            (Some(_), Some(nodes)) => Err(source.invalid(
                Some(nodes.span()),
                "store.url and store.nodes are both set: url is one server, nodes a Redis Cluster's; keep one",
            )),
            (None, None) => Err(source.invalid(
                source.section("store"),
                "store.url is required with backend = \"redis\" (e.g. \"redis://127.0.0.1:6379/0\"), or store.nodes for a Redis Cluster",
            )),
        }
    }
}

// === impl FleetClock ===

/// The fleet's clock: Unix milliseconds modulo 2³² as Redis `TIME` tells them, read from this
/// instance's monotonic clock plus the correction measured at each round trip.
#[derive(Debug, Clone)]
pub struct FleetClock {
    start: Instant,
    /// Unix milliseconds at `start`, by this machine's clock.
    start_unix_ms: u64,
    /// Redis time minus this machine's, in milliseconds.
    correction: Arc<AtomicI64>,
}

impl Default for FleetClock {
    fn default() -> Self {
        FleetClock {
            start: Instant::now(),
            start_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            correction: Arc::default(),
        }
    }
}

impl FleetClock {
    fn local_unix_ms(&self) -> u64 {
        self.start_unix_ms + self.start.elapsed().as_millis() as u64
    }

    fn unix_ms(&self) -> u64 {
        self.local_unix_ms()
            .saturating_add_signed(self.correction.load(Ordering::Relaxed))
    }

    /// Redis said `redis_ms` somewhere between `sent` and now (local Unix milliseconds).
    fn correct(&self, redis_ms: u64, sent_local_ms: u64) {
        let midpoint = (sent_local_ms + self.local_unix_ms()) / 2;
        self.correction
            .store(redis_ms as i64 - midpoint as i64, Ordering::Relaxed);
    }
}

impl Clock for FleetClock {
    fn now_ms(&self) -> Millis {
        // 0 marks an unused cell.
        (self.unix_ms() as Millis).max(1)
    }

    fn unix_secs(&self) -> u64 {
        self.unix_ms() / 1000
    }

    fn now(&self) -> (Millis, u64) {
        let ms = self.unix_ms();
        ((ms as Millis).max(1), ms / 1000)
    }
}

// === impl Fleet ===

/// One write for the writer: the record as the instance found it and as it left it.
struct Write {
    key: String,
    before: Vec<u8>,
    after: Vec<u8>,
    /// Its leading GCRA cells (merged by adding charges).
    cells: usize,
    mark_at: usize,
    ttl_ms: u64,
    /// For each cell this request was admitted on, the most it may be ahead of now (u32
    /// each, 0 for a cell not charged): what the merge checks again. Empty: nothing to check.
    limits: Vec<u8>,
    /// Where a day number and the bitmap after it start (0: none): see [`MERGE`].
    union_at: usize,
}

/// What merging one request's writes found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    refused_for: Option<Duration>,
}

impl Merged {
    /// `Some(wait)` when a charge no longer conformed at Redis `TIME` once another
    /// instance's concurrent write was counted: the request must be refused (it was not
    /// charged) and may come back after `wait`.
    pub fn refused_for(&self) -> Option<Duration> {
        self.refused_for
    }
}

/// What [`hold_writes`] returns: resolves once the request's merges are acknowledged (or
/// the wait for them ran out).
pub type Merging = std::pin::Pin<Box<dyn Future<Output = Merged> + Send + 'static>>;

/// The connection to the fleet's Redis, its health, and the writer that merges records back.
/// One per process; each site gets a [`RedisStore`] from it.
pub struct Fleet {
    link: Link,
    settings: StoreSettings,
    clock: FleetClock,
    key_seed: Arc<AtomicU64>,
    healthy: AtomicBool,
    probing: AtomicBool,
    secret_known: AtomicBool,
    fallbacks: AtomicU64,
    dropped_writes: AtomicU64,
    late_refusals: AtomicU64,
    writes: mpsc::Sender<Write>,
    merge: redis::Script,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("settings", &self.settings)
            .field("degraded", &self.degraded())
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

/// A Redis error or a wait past the timeout.
#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer to {0}")]
    Answer(&'static str),
}

async fn within<T>(
    wait: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Trouble> {
    match tokio::time::timeout(wait, f).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Trouble::Timeout(wait)),
    }
}

impl Fleet {
    /// Opens the connection (lazily: an unreachable Redis at start means a degraded start,
    /// not a failure) and waits up to `connect_timeout` for the fleet's secret. Call inside a
    /// tokio runtime. Fails only on settings Redis cannot use.
    pub async fn connect(settings: StoreSettings) -> Result<Arc<Fleet>, ConfigError> {
        let link = Link::open(
            &settings.servers,
            settings.password.as_deref(),
            settings.connect_timeout,
        )
        .map_err(|error| ConfigError::Invalid {
            source_name: "store.url".to_owned(),
            message: format!("{}: {error}", settings.redacted_url()),
        })?;
        let (writes, queue) = mpsc::channel(QUEUE);
        let fleet = Arc::new(Fleet {
            link,
            settings,
            clock: FleetClock::default(),
            key_seed: Arc::new(AtomicU64::new(random_u64())),
            healthy: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            secret_known: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
            dropped_writes: AtomicU64::new(0),
            late_refusals: AtomicU64::new(0),
            writes,
            merge: redis::Script::new(MERGE),
        });
        tokio::spawn(write_back(Arc::downgrade(&fleet), queue));
        match fleet.come_up(fleet.settings.connect_timeout).await {
            Ok(()) => tracing::info!(
                target: "lenscap::store",
                url = %fleet.settings.redacted_url(),
                cluster = fleet.link.is_cluster(),
                "shared store connected"
            ),
            Err(error) => fleet.degrade(&error),
        }
        Ok(fleet)
    }

    /// Whether decisions are made from local state now (Redis slow or gone).
    pub fn degraded(&self) -> bool {
        !self.healthy.load(Ordering::Relaxed)
    }

    /// Decisions made from local state because Redis did not answer in time (before the
    /// decision, or to the merge that checks it), since start.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Writes dropped because the queue to Redis was full, since start.
    pub fn dropped_writes(&self) -> u64 {
        self.dropped_writes.load(Ordering::Relaxed)
    }

    /// Requests refused after their merge found that another instance had used up the budget
    /// in between (see [`Merged`]), since start.
    pub fn late_refusals(&self) -> u64 {
        self.late_refusals.load(Ordering::Relaxed)
    }

    /// A connection to the fleet's Redis (a cluster's is made on first use), within `wait`.
    async fn connection(&self, wait: Duration) -> Result<link::Connection, Trouble> {
        within(wait, self.link.connection()).await
    }

    /// The fleet's clock, for the limiters of every site on this store.
    pub fn clock(&self) -> FleetClock {
        self.clock.clone()
    }

    /// The store of the site named `site`.
    pub fn store(self: &Arc<Self>, site: &str) -> RedisStore {
        RedisStore {
            inner: Arc::new(SiteStore {
                fleet: self.clone(),
                prefix: format!("lenscap:{site}"),
                local: MemoryStore::default(),
                cap: AtomicU64::new(1 << 20),
                idle_ms: AtomicU32::new(600_000),
            }),
        }
    }

    /// Loads the script, learns the secret and the time: what makes the store usable.
    async fn come_up(&self, wait: Duration) -> Result<(), Trouble> {
        let mut connection = self.connection(wait).await?;
        let sent = self.clock.local_unix_ms();
        let mut set = redis::cmd("SET");
        set.arg(SECRET_KEY)
            .arg(hex(&random_u64().to_le_bytes()) + &hex(&random_u64().to_le_bytes()))
            .arg("NX");
        let mut get = redis::cmd("GET");
        get.arg(SECRET_KEY);
        let mut load = redis::cmd("SCRIPT");
        // On a cluster, SCRIPT LOAD goes to every primary.
        load.arg("LOAD").arg(MERGE);
        let mut loader = connection.clone();
        let both = async {
            let (answers, loaded) = tokio::join!(
                connection.query_all(vec![redis::cmd("TIME"), set, get]),
                load.query_async::<String>(&mut loader),
            );
            loaded?;
            answers
        };
        let answers = within(wait, both).await?;
        let mut answers = answers.into_iter();
        let (secs, micros): (u64, u64) = answers
            .next()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or(Trouble::Answer("TIME"))?;
        let secret: String = answers
            .nth(1)
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or(Trouble::Answer("GET lenscap:fleet:secret"))?;
        self.clock.correct(secs * 1000 + micros / 1000, sent);
        if !self.secret_known.swap(true, Ordering::AcqRel) {
            share_fleet_secret(secret.as_bytes());
            let digest = ring::digest::digest(
                &ring::digest::SHA256,
                &[b"lenscap keys ", secret.as_bytes()].concat(),
            );
            let seed = u64::from_le_bytes(digest.as_ref()[..8].try_into().unwrap_or_default());
            self.key_seed.store(seed, Ordering::Relaxed);
        }
        self.healthy.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Redis did not answer: decide locally from now on, say so once, and probe with backoff.
    fn degrade(self: &Arc<Self>, error: &Trouble) {
        if self.healthy.swap(false, Ordering::AcqRel) || !self.secret_known.load(Ordering::Relaxed)
        {
            tracing::warn!(
                target: "lenscap::store",
                url = %self.settings.redacted_url(),
                %error,
                "shared store degraded: deciding from local state until Redis answers"
            );
        }
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let fleet = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                tokio::time::sleep(backoff).await;
                let Some(fleet) = fleet.upgrade() else { return };
                // Recovered means answering within the request path's timeout again, so a
                // slow Redis does not flap between shared and local decisions.
                if fleet.come_up(fleet.settings.timeout).await.is_ok() {
                    fleet.probing.store(false, Ordering::Release);
                    tracing::info!(
                        target: "lenscap::store",
                        fallbacks = fleet.fallbacks(),
                        "shared store recovered: decisions are shared again"
                    );
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    fn queue(&self, write: Write) {
        if self.writes.try_send(write).is_err() {
            self.dropped_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Merges `writes` in one pipeline (one per hash tag on a cluster), waiting at most
    /// `wait`. `held`: the caller refuses its request when told to (see [`Merged`]).
    async fn send(self: &Arc<Self>, writes: &[Write], wait: Duration, held: bool) -> Merged {
        if writes.is_empty() || self.degraded() {
            return Merged::default();
        }
        let merges = writes
            .iter()
            .map(|write| {
                let mut merge = redis::cmd("EVALSHA");
                merge
                    .arg(self.merge.get_hash())
                    .arg(1)
                    .arg(&write.key)
                    .arg(&write.before[..])
                    .arg(&write.after[..])
                    .arg(write.cells)
                    .arg(write.mark_at)
                    .arg(write.ttl_ms)
                    .arg(&write.limits[..])
                    .arg(u8::from(held))
                    .arg(write.union_at);
                merge
            })
            .collect();
        let merged = async {
            let mut connection = self.link.connection().await?;
            connection.query_all(merges).await
        };
        let answers = match within(wait, merged).await {
            Ok(answers) => answers,
            Err(error) => {
                if held {
                    // The request stands on its local decision, unchecked by the fleet.
                    self.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                self.degrade(&error);
                return Merged::default();
            }
        };
        let late = answers
            .into_iter()
            .filter_map(|v| redis::from_redis_value::<i64>(v).ok())
            .max()
            .unwrap_or(0);
        if late <= 0 || !held {
            // Not held: the charge was kept, and the request stands.
            return Merged::default();
        }
        self.late_refusals.fetch_add(1, Ordering::Relaxed);
        Merged {
            refused_for: Some(Duration::from_millis(late as u64)),
        }
    }
}

/// Drains the queue of writes nobody awaits (made after the response started) into
/// pipelines of merges, one pipeline at a time.
async fn write_back(fleet: std::sync::Weak<Fleet>, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let Some(fleet) = fleet.upgrade() else { return };
        // Off the requests' path: it may take a little longer.
        fleet.send(&batch, fleet.settings.timeout * 4, false).await;
        batch.clear();
    }
}

/// Writes held for the caller, with the fleet each goes to.
type Held = Vec<(Arc<Fleet>, Write)>;

thread_local! {
    /// The writes of the request being decided on this thread, when its caller awaits them.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Runs `decide` (a layer's `call`), holding back the record writes it makes, and returns
/// them as one pipelined merge to await alongside the response. Sent at once, the merge
/// overlaps the inner service; awaited before the response is released (at most
/// `timeout`), it lets the client's next request, on any instance, see what this one did.
///
/// The merge checks each of the request's charges again against the fleet's copy at Redis
/// `TIME`: when another instance used the budget up in between, the answer says so
/// ([`Merged::refused_for`]). With `refuses`, the caller refuses such a request instead of
/// releasing its response, and its charge is not kept; without (report-only, tarpit), the
/// charge is kept, so the client's next request pays for it.
pub fn hold_writes<R>(refuses: bool, decide: impl FnOnce() -> R) -> (R, Option<Merging>) {
    HELD.with(|held| *held.borrow_mut() = Some(Vec::new()));
    let out = decide();
    let held = HELD
        .with(|held| held.borrow_mut().take())
        .unwrap_or_default();
    let Some((fleet, _)) = held.first() else {
        return (out, None);
    };
    let fleet = fleet.clone();
    let writes: Vec<Write> = held.into_iter().map(|(_, write)| write).collect();
    let wait = fleet.settings.timeout;
    (
        out,
        Some(Box::pin(
            async move { fleet.send(&writes, wait, refuses).await },
        )),
    )
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Without randomness the seed is still private to this process's start time.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// For each of the leading `cells` u32 cells of a record that the decision changed, the
/// span of the rate that admitted its new value (0 where none did), packed as the merge
/// reads them; empty when nothing was admitted. Two checks that left different cells at the
/// same value are told apart by nothing: the larger span is taken (the lenient reading).
fn limits_of(before: Option<&[u8]>, after: &[u8], cells: usize, admitted: &Admissions) -> Vec<u8> {
    if admitted.is_empty() {
        return Vec::new();
    }
    let cell = |bytes: &[u8], i: usize| {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::with_capacity(4 * cells);
    for i in 0..cells {
        let now = cell(after, i);
        let changed = now != before.and_then(|b| cell(b, i));
        let span = admitted
            .iter()
            .filter(|(value, _)| changed && Some(*value) == now)
            .map(|&(_, span)| span)
            .max()
            .unwrap_or(0);
        out.extend_from_slice(&span.to_le_bytes());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// === impl RedisStore ===

/// One site's records on the fleet's Redis, with the local copy decisions run on. Made by
/// [`Fleet::store`]; give it to [`LenscapLayer::with_store`](crate::LenscapLayer::with_store)
/// together with [`Fleet::clock`].
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<SiteStore>,
}

#[derive(Debug)]
struct SiteStore {
    fleet: Arc<Fleet>,
    prefix: String,
    local: MemoryStore,
    /// The last `max_tracked_clients` the limiter asked with.
    cap: AtomicU64,
    /// The last `idle_after` the cleanup asked with: the shortest TTL of a record.
    idle_ms: AtomicU32,
}

impl SiteStore {
    fn client_key(&self, key: u64) -> String {
        format!("{}:c:{{{key:016x}}}", self.prefix)
    }

    fn subnet_key(&self, key: u64) -> String {
        format!("{}:n:{{{key:016x}}}", self.prefix)
    }

    fn site_key(&self) -> String {
        format!("{}:s:{{site}}", self.prefix)
    }

    /// The distinct photos of the address whose client record is `key` (same hash tag).
    fn distinct_key(&self, key: u64) -> String {
        format!("{}:d:{{{key:016x}}}", self.prefix)
    }

    /// Queues the merge of one record; `ttl_ms` is its shortest life in Redis (a budget
    /// further ahead keeps it longer); `admitted` what the decision's checks admitted;
    /// `union_at` where a bitmap to unite starts (0: none).
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        key: String,
        before: Option<&[u8]>,
        after: &[u8],
        cells: usize,
        mark_at: usize,
        ttl_ms: u64,
        admitted: &Admissions,
        union_at: usize,
    ) {
        if self.fleet.degraded() {
            return;
        }
        let write = Write {
            key,
            before: before.map(<[u8]>::to_vec).unwrap_or_default(),
            after: after.to_vec(),
            cells,
            mark_at,
            ttl_ms,
            limits: limits_of(before, after, cells, admitted),
            union_at,
        };
        let unheld = HELD.with(|held| match held.borrow_mut().as_mut() {
            Some(held) => {
                held.push((self.fleet.clone(), write));
                None
            }
            None => Some(write),
        });
        if let Some(write) = unheld {
            self.fleet.queue(write);
        }
    }

    fn idle_ms(&self) -> u64 {
        u64::from(self.idle_ms.load(Ordering::Relaxed))
    }

    /// Reads the request's records and the time in one pipeline (on a cluster, one per
    /// record, all at once, `TIME` from the client record's node) into the local copy.
    async fn load(self: Arc<Self>, keys: RecordKeys) -> Result<(), Trouble> {
        let fleet = &self.fleet;
        let get = |key: String| {
            let mut get = redis::cmd("GET");
            get.arg(key);
            get
        };
        // The client records (address, visitor, pass holder, the site's unrendered budget),
        // the site's cell, then the subnets' map records (the subnet's, and the pass counts of
        // the address and the subnet).
        let clients: Vec<u64> = [Some(keys.client), keys.visitor, keys.pass, Some(keys.site)]
            .into_iter()
            .flatten()
            .collect();
        let subnets = [keys.subnet, keys.pass_counts[0], keys.pass_counts[1]];
        let mut commands = vec![redis::cmd("TIME")];
        commands.extend(clients.iter().map(|&key| get(self.client_key(key))));
        commands.push(get(self.site_key()));
        commands.extend(subnets.iter().map(|&key| get(self.subnet_key(key))));
        // Last, the address's distinct photos (nil unless it is a crowd or a heavy address).
        commands.push(get(self.distinct_key(keys.client)));
        let sent = fleet.clock.local_unix_ms();
        let read = async {
            let mut connection = fleet.link.connection().await?;
            connection.query_all(commands).await
        };
        let mut answers = within(fleet.settings.timeout, read).await?;
        let (secs, micros): (u64, u64) =
            redis::from_redis_value(answers.remove(0)).map_err(|_| Trouble::Answer("TIME"))?;
        fleet.clock.correct(secs * 1000 + micros / 1000, sent);
        let now = fleet.clock.now_ms();
        let cap = self.cap.load(Ordering::Relaxed) as usize;
        let mut bytes = answers
            .into_iter()
            .map(|v| redis::from_redis_value::<Option<Vec<u8>>>(v).ok().flatten());
        for &key in &clients {
            if let Some(record) = bytes
                .next()
                .flatten()
                .as_deref()
                .and_then(ClientRecord::decode)
            {
                self.local.put_client(key, now, cap, record);
            }
        }
        if let Some(cell) = bytes
            .next()
            .flatten()
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
        {
            self.local
                .site(now, &mut |held| *held = u32::from_le_bytes(cell));
        }
        for &key in &subnets {
            if let Some(record) = bytes
                .next()
                .flatten()
                .as_deref()
                .and_then(SubnetRecord::decode)
            {
                self.local.put_subnet(key, now, cap, record);
            }
        }
        if let Some(record) = bytes
            .next()
            .flatten()
            .as_deref()
            .and_then(DistinctPhotos::decode)
        {
            self.local.put_distinct(keys.client, now, cap, record);
        }
        Ok(())
    }
}

impl StateStore for RedisStore {
    fn client(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut ClientRecord, bool) -> bool,
    ) -> bool {
        let inner = &self.inner;
        inner.cap.store(cap as u64, Ordering::Relaxed);
        let mut change = None;
        let (kept, admitted) = admissions_during(|| {
            inner.local.client(key, now, cap, &mut |record, fresh| {
                let before = (!fresh).then(|| record.encode());
                let kept = f(record, fresh);
                let after = record.encode();
                if kept && before != Some(after) {
                    let trap = record.behaviour.trap_marked(now);
                    change = Some((before, after, trap));
                }
                kept
            })
        });
        if let Some((before, after, trap)) = change {
            let idle = inner.idle_ms();
            // A trap mark outlives an idle record.
            let ttl = if trap {
                idle.max(MAX_TRAP_MARK.as_millis() as u64)
            } else {
                idle
            };
            let before = before.as_ref().map(|b| &b[..]);
            inner.write(
                inner.client_key(key),
                before,
                &after,
                CLIENT_CELLS,
                TRAP_AT,
                ttl,
                &admitted,
                0,
            );
        }
        kept
    }

    fn subnet(&self, key: u64, now: Millis, cap: usize, f: &mut dyn FnMut(&mut SubnetRecord)) {
        let inner = &self.inner;
        let mut change = None;
        let ((), admitted) = admissions_during(|| {
            inner.local.subnet(key, now, cap, &mut |record| {
                let before = record.encode();
                f(record);
                let after = record.encode();
                if before != after {
                    change = Some((before, after));
                }
            })
        });
        if let Some((before, after)) = change {
            inner.write(
                inner.subnet_key(key),
                Some(&before),
                &after,
                SUBNET_CELLS,
                0,
                inner.idle_ms(),
                &admitted,
                0,
            );
        }
    }

    fn site(&self, now: Millis, f: &mut dyn FnMut(&mut Millis)) {
        let inner = &self.inner;
        let mut change = None;
        let ((), admitted) = admissions_during(|| {
            inner.local.site(now, &mut |cell| {
                let before = *cell;
                f(cell);
                if *cell != before {
                    change = Some((before, *cell));
                }
            })
        });
        if let Some((before, after)) = change {
            inner.write(
                inner.site_key(),
                Some(&before.to_le_bytes()),
                &after.to_le_bytes(),
                1,
                0,
                inner.idle_ms(),
                &admitted,
                0,
            );
        }
    }

    fn distinct(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut Option<DistinctPhotos>),
    ) {
        let inner = &self.inner;
        let mut change = None;
        let ((), admitted) = admissions_during(|| {
            inner.local.distinct(key, now, cap, &mut |slot| {
                let before = slot.as_ref().map(DistinctPhotos::encode);
                f(slot);
                let after = slot.as_ref().map(DistinctPhotos::encode);
                if after.is_some() && before != after {
                    change = Some((before, after));
                }
            })
        });
        if let Some((before, Some(after))) = change {
            inner.write(
                inner.distinct_key(key),
                before.as_ref().map(|b| &b[..]),
                &after,
                1,
                0,
                inner.idle_ms(),
                &admitted,
                WINDOW_AT,
            );
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn prefetch(&self, keys: RecordKeys) -> Option<Prefetching> {
        let inner = self.inner.clone();
        if inner.fleet.degraded() {
            inner.fleet.fallbacks.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Box::pin(async move {
            let fleet = inner.fleet.clone();
            if let Err(error) = inner.load(keys).await {
                fleet.fallbacks.fetch_add(1, Ordering::Relaxed);
                fleet.degrade(&error);
            }
        }))
    }

    fn key_seed(&self) -> Option<Arc<AtomicU64>> {
        Some(self.inner.fleet.key_seed.clone())
    }

    fn tracked_clients(&self) -> usize {
        self.inner.local.tracked_clients()
    }

    fn evictions(&self) -> u64 {
        self.inner.local.evictions()
    }

    fn retain_recent(&self, now: Millis, idle_ms: u32) {
        self.inner.idle_ms.store(idle_ms, Ordering::Relaxed);
        self.inner.local.retain_recent(now, idle_ms);
    }

    fn shrink_to_fit(&self) {
        self.inner.local.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Rate;

    /// A throwaway `redis-server` on a free loopback port, killed when dropped.
    struct Redis(std::process::Child, u16);

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis_server() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): install the Debian package redis-server (scripts/test.sh does)")
            });
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Redis(child, port)
    }

    fn settings(port: u16) -> StoreSettings {
        StoreSettings {
            servers: Servers::One(format!("redis://127.0.0.1:{port}/0")),
            password: None,
            // Generous: a loaded test machine must not make the store degrade mid-test.
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Runs `f` on the client record `key` of `store`, sending its writes at once.
    async fn on_client(
        store: &RedisStore,
        key: u64,
        now: Millis,
        f: impl Fn(&mut ClientRecord),
    ) -> Merged {
        on_client_refusing(true, store, key, now, f).await
    }

    async fn on_client_refusing(
        refuses: bool,
        store: &RedisStore,
        key: u64,
        now: Millis,
        f: impl Fn(&mut ClientRecord),
    ) -> Merged {
        let ((), written) = hold_writes(refuses, || {
            store.client(key, now, 1000, &mut |record, _| {
                f(record);
                true
            });
        });
        written.expect("a change is written").await
    }

    fn held(store: &RedisStore, key: u64, now: Millis) -> ClientRecord {
        let mut seen = ClientRecord::default();
        store.client(key, now, 1000, &mut |record, _| {
            seen = *record;
            true
        });
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_charging_one_record_at_once_lose_no_charge_nor_trap_mark() {
        let redis = redis_server();
        let a = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let b = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let fleet = &a.inner.fleet;
        assert!(!fleet.degraded());
        let keys = RecordKeys {
            client: 7,
            visitor: None,
            pass: None,
            subnet: 8,
            pass_counts: [801, 802],
            site: 99,
        };
        let rate = Rate::parse("60/min", Some(10)).unwrap();
        let now = fleet.clock().now_ms();
        // Both instances read the record before either writes.
        a.prefetch(keys).unwrap().await;
        b.prefetch(keys).unwrap().await;
        let charge = |record: &mut ClientRecord| {
            for _ in 0..3 {
                rate.check(&mut record.tat_images, now).unwrap();
            }
        };
        on_client(&a, 7, now, |record| {
            charge(record);
            record.behaviour.mark_trap(now, 60_000);
        })
        .await;
        on_client(&b, 7, now, charge).await;

        let c = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        c.prefetch(keys).unwrap().await;
        let merged = held(&c, 7, now);
        // Six charges of one second each, from either instance's `now` (Redis TIME).
        let ahead = merged.tat_images.wrapping_sub(now) as i32;
        assert!((5_900..6_500).contains(&ahead), "{ahead} ms ahead");
        assert!(
            merged.behaviour.trap_marked(now),
            "b's write dropped a's trap mark"
        );

        let mut connection = fleet.link.connection().await.unwrap();
        let key = a.inner.client_key(7);
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sites_shared_record_is_read_with_every_requests_records() {
        let redis = redis_server();
        let a = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let b = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let now = a.inner.fleet.clock().now_ms();
        let rate = Rate::parse("60/min", Some(10)).unwrap();
        // Instance a charges the site record while deciding for one client...
        on_client(&a, 99, now, |record| {
            rate.check(&mut record.tat_images, now).unwrap();
        })
        .await;
        // ...and b, deciding for another client, reads that charge with its records.
        let keys = RecordKeys {
            client: 21,
            visitor: None,
            pass: None,
            subnet: 22,
            pass_counts: [2201, 2202],
            site: 99,
        };
        b.prefetch(keys).unwrap().await;
        let ahead = held(&b, 99, now).tat_images.wrapping_sub(now) as i32;
        assert!((900..1_500).contains(&ahead), "{ahead} ms ahead");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_charge_another_instance_made_unconforming_is_refused_and_not_kept() {
        let redis = redis_server();
        let a = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let b = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let keys = RecordKeys {
            client: 9,
            visitor: None,
            pass: None,
            subnet: 10,
            pass_counts: [1001, 1002],
            site: 99,
        };
        // A burst of 3, one a minute: two instances each admit 2 on the same copy.
        let rate = Rate::parse("1/min", Some(3)).unwrap();
        let now = a.inner.fleet.clock().now_ms();
        a.prefetch(keys).unwrap().await;
        b.prefetch(keys).unwrap().await;
        let two = |record: &mut ClientRecord| {
            rate.check(&mut record.tat_images, now).unwrap();
            rate.check(&mut record.tat_images, now).unwrap();
        };
        assert_eq!(on_client(&a, 9, now, two).await.refused_for(), None);
        let late = on_client(&b, 9, now, two).await;
        // 4 of 3: the last unit is a minute early (give or take the clocks' milliseconds).
        let wait = late
            .refused_for()
            .expect("b's second unit no longer conforms");
        assert!(
            (Duration::from_secs(55)..=Duration::from_secs(61)).contains(&wait),
            "{wait:?}"
        );
        assert_eq!(b.inner.fleet.late_refusals(), 1);

        // The refused charge was not kept: a third instance sees a's two units only.
        let c = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        c.prefetch(keys).unwrap().await;
        let ahead = held(&c, 9, now).tat_images.wrapping_sub(now) as i32;
        assert!((119_000..121_000).contains(&ahead), "{ahead} ms ahead");

        // A caller that does not refuse (report-only): the request stands, its charge is kept.
        let keys = RecordKeys { client: 12, ..keys };
        a.prefetch(keys).unwrap().await;
        b.prefetch(keys).unwrap().await;
        assert_eq!(on_client(&a, 12, now, two).await.refused_for(), None);
        let kept = on_client_refusing(false, &b, 12, now, two).await;
        assert_eq!(kept.refused_for(), None);
        c.prefetch(keys).unwrap().await;
        let ahead = held(&c, 12, now).tat_images.wrapping_sub(now) as i32;
        assert!((239_000..241_000).contains(&ahead), "{ahead} ms ahead");

        // Within the budget, concurrent charges are added up and nobody is refused.
        let d = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let keys = RecordKeys { client: 11, ..keys };
        c.prefetch(keys).unwrap().await;
        d.prefetch(keys).unwrap().await;
        let one = |record: &mut ClientRecord| rate.check(&mut record.tat_images, now).unwrap();
        assert_eq!(on_client(&c, 11, now, one).await.refused_for(), None);
        assert_eq!(on_client(&d, 11, now, one).await.refused_for(), None);
    }

    /// Serves `photo` through the distinct-photo record `key` of `store`, sending its write
    /// (if any) at once; whether it was new to the record.
    async fn serve_distinct(store: &RedisStore, key: u64, photo: u64, now: Millis) -> bool {
        let rate = Rate::parse("100/day", Some(700)).unwrap();
        let mut new = false;
        let ((), written) = hold_writes(true, || {
            store.distinct(key, now, 1000, &mut |slot| {
                let record = slot.get_or_insert_with(|| DistinctPhotos::new(now, 0));
                new = record.serve(photo, rate, now) == super::super::distinct::Served::New;
            });
        });
        // A repeat at the same instant changes nothing: nothing to write.
        if let Some(written) = written {
            written.await;
        }
        new
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_recording_photos_at_once_unite_them_and_charge_a_photo_once() {
        let redis = redis_server();
        let a = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let b = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        let keys = RecordKeys {
            client: 31,
            visitor: None,
            pass: None,
            subnet: 32,
            pass_counts: [33, 34],
            site: 99,
        };
        let now = a.inner.fleet.clock().now_ms();
        let period = Rate::parse("100/day", Some(700)).unwrap().period();
        let photo = |n: u64| n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // Both read the record before either writes; each serves photo 1 and one of its own.
        a.prefetch(keys).unwrap().await;
        b.prefetch(keys).unwrap().await;
        assert!(serve_distinct(&a, 31, photo(1), now).await);
        assert!(serve_distinct(&b, 31, photo(1), now).await);
        a.prefetch(keys).unwrap().await;
        b.prefetch(keys).unwrap().await;
        assert!(serve_distinct(&a, 31, photo(2), now).await);
        assert!(serve_distinct(&b, 31, photo(3), now).await);

        let c = Fleet::connect(settings(redis.1)).await.unwrap().store("t");
        c.prefetch(keys).unwrap().await;
        let mut seen = None;
        c.distinct(31, now, 1000, &mut |slot| seen = *slot);
        let seen = seen.expect("the record is shared");
        // Three photos, each charged once: photo 1, taken for new by both, counts once.
        assert_eq!(seen.estimate(), 3);
        let ahead = Duration::from_millis(u64::from(seen.tat.wrapping_sub(now)));
        assert!(
            ahead >= period * 3 - Duration::from_secs(1)
                && ahead < period * 3 + Duration::from_secs(1),
            "{ahead:?} ahead: not three photos' worth"
        );
        for n in 1..=3 {
            assert!(
                !serve_distinct(&c, 31, photo(n), now).await,
                "photo {n} again"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_redis_the_store_decides_locally_and_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut settings = settings(port);
        settings.connect_timeout = Duration::from_millis(200);
        let fleet = Fleet::connect(settings).await.unwrap();
        assert!(fleet.degraded());
        let store = fleet.store("t");
        let keys = RecordKeys {
            client: 1,
            visitor: None,
            pass: None,
            subnet: 2,
            pass_counts: [201, 202],
            site: 99,
        };
        assert!(
            store.prefetch(keys).is_none(),
            "a degraded store waits for nothing"
        );
        assert_eq!(fleet.fallbacks(), 1);
        // Decisions still run, on the local copy.
        assert!(store.client(1, 10, 100, &mut |_, _| true));
        assert_eq!(store.tracked_clients(), 1);
    }

    #[test]
    fn a_store_section_names_what_is_wrong() {
        let compile = |text: &str| {
            #[derive(Deserialize)]
            struct File {
                store: StoreConfig,
            }
            let file: File = toml::from_str(text).unwrap();
            file.store.compile(&Source::new("policy", text))
        };
        assert_eq!(compile("[store]\nbackend = \"memory\"\n").unwrap(), None);
        let redis = compile("[store]\nbackend = \"redis\"\nurl = \"redis://h:6379/0\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(redis.timeout, Duration::from_millis(50));
        let error = |text: &str| compile(text).unwrap_err().to_string();
        assert!(error("[store]\nbackend = \"etcd\"\n").contains("store.backend"));
        assert!(error("[store]\nbackend = \"redis\"\n").contains("store.url is required"));
        assert!(error("[store]\nbackend = \"redis\"\nurl = \"http://x\"\n").contains("store.url"));
        assert!(
            error("[store]\nbackend = \"redis\"\nurl = \"redis://h\"\ntimeout = \"0s\"\n")
                .contains("store.timeout must be above 0")
        );
        let secret = StoreSettings {
            servers: Servers::One("redis://user:pint@h:6379/0".into()),
            ..redis.clone()
        };
        assert!(!format!("{secret:?}").contains("pint"));

        let cluster = compile(
            "[store]\nbackend = \"redis\"\nnodes = [\"redis://a:7000\", \"redis://:pint@b:7001\"]\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            cluster.servers(),
            &Servers::Cluster(vec!["redis://a:7000".into(), "redis://:pint@b:7001".into()])
        );
        assert!(!cluster.redacted_url().contains("pint"));
        assert!(
            error(
                "[store]\nbackend = \"redis\"\nurl = \"redis://h\"\nnodes = [\"redis://a:7000\"]\n"
            )
            .contains("store.url and store.nodes are both set")
        );
        assert!(
            error("[store]\nbackend = \"redis\"\nnodes = []\n").contains("store.nodes is empty")
        );
        assert!(
            error("[store]\nbackend = \"redis\"\nnodes = [\"redis://a:7000/3\"]\n")
                .contains("database other than 0")
        );
        assert!(
            error("[store]\nbackend = \"redis\"\nnodes = [\"http://a\"]\n").contains("store.nodes")
        );
    }
}

//! Fetches Web Bot Auth key directories off the request path: the directories each site's
//! policy lists (`[web_bot_auth] directories`, less the pinned ones), and the unlisted ones
//! requests named under `allow_unlisted`. Each is fetched over HTTPS (plain `http://` only on
//! loopback with `allow_insecure_loopback`), at most 64 KiB, within 10 s; its keys go into
//! the policy's [`AgentKeys`], where the layer reads them. A directory is fetched again when
//! its `Cache-Control: max-age` runs out (between 1 minute and 1 day; 1 hour without one); a
//! failed fetch keeps the keys held and is retried with a growing delay.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::tls;
use crate::layer::PolicyHandle;
use crate::signals::web_bot_auth::{
    AgentKeys, DIRECTORY_MEDIA_TYPE, DIRECTORY_PATH, normalize_origin, parse_directory,
};

/// Largest directory read.
const MAX_DIRECTORY_BYTES: usize = 64 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the task looks for directories due.
const TICK: Duration = Duration::from_millis(500);
/// Bounds on how long fetched keys are kept before fetching again.
const MIN_FRESH: Duration = Duration::from_secs(60);
const MAX_FRESH: Duration = Duration::from_secs(86_400);
const DEFAULT_FRESH: Duration = Duration::from_secs(3_600);
/// Most directories (listed and unlisted) tracked per key set.
const MAX_DIRECTORIES: usize = 256;
/// A directory a request is waiting for is tried again after this long at the soonest.
const HURRY_AFTER: Duration = Duration::from_secs(1);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// When a directory is due, and how many fetches of it failed in a row.
#[derive(Debug)]
struct Schedule {
    due: Instant,
    /// The last attempt.
    last: Option<Instant>,
    failures: u32,
    insecure_loopback: bool,
}

/// One key set (shared by a site's policies across reloads) and its directories.
struct Tracked {
    keys: Arc<AgentKeys>,
    handle: PolicyHandle,
    directories: HashMap<String, Schedule>,
}

/// Starts the fetcher for the sites' policy handles; `None` when building the HTTPS client
/// fails (logged).
pub(crate) fn spawn(handles: Vec<PolicyHandle>) -> Option<JoinHandle<()>> {
    let client = match https_client() {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(target: "lenscap::web_bot_auth", %error, "key directories cannot be fetched");
            return None;
        }
    };
    let mut tracked: Vec<Tracked> = Vec::new();
    for handle in handles {
        let keys = handle.load().agent_keys().clone();
        if !tracked.iter().any(|t| Arc::ptr_eq(&t.keys, &keys)) {
            tracked.push(Tracked {
                keys,
                handle,
                directories: HashMap::new(),
            });
        }
    }
    Some(tokio::spawn(async move {
        loop {
            for set in &mut tracked {
                refresh(&client, set).await;
            }
            tokio::time::sleep(TICK).await;
        }
    }))
}

/// Fetches every directory of `set` that is due.
async fn refresh(client: &HttpsClient, set: &mut Tracked) {
    let policy = set.handle.load();
    // The policy may have been reloaded: follow its key set and its list.
    set.keys = policy.agent_keys().clone();
    let Some((listed, insecure_loopback)) = policy.agent_directories() else {
        return;
    };
    let now = Instant::now();
    let wanted = set.keys.take_wanted();
    for origin in listed.iter().chain(&wanted) {
        if set.directories.len() >= MAX_DIRECTORIES && !set.directories.contains_key(origin) {
            continue;
        }
        set.directories.entry(origin.clone()).or_insert(Schedule {
            due: now,
            last: None,
            failures: 0,
            insecure_loopback,
        });
    }
    // A request is waiting for these keys: a failing directory is tried again soon.
    for origin in &wanted {
        if let Some(schedule) = set.directories.get_mut(origin)
            && let Some(last) = schedule.last
        {
            schedule.due = schedule.due.min(last + HURRY_AFTER);
        }
    }
    for (origin, schedule) in &mut set.directories {
        if schedule.due > now {
            continue;
        }
        schedule.last = Some(now);
        match fetch(client, origin, schedule.insecure_loopback).await {
            Ok((keys, fresh)) => {
                tracing::info!(
                    target: "lenscap::web_bot_auth",
                    directory = %origin,
                    keys = keys.len(),
                    fresh_secs = fresh.as_secs(),
                    "key directory fetched"
                );
                set.keys.set(origin, keys);
                schedule.failures = 0;
                schedule.due = Instant::now() + fresh;
            }
            Err(error) => {
                schedule.failures = schedule.failures.saturating_add(1);
                let retry = retry_after(schedule.failures);
                tracing::warn!(
                    target: "lenscap::web_bot_auth",
                    directory = %origin,
                    %error,
                    retry_secs = retry.as_secs(),
                    "key directory fetch failed; keys held so far are kept"
                );
                schedule.due = Instant::now() + retry;
            }
        }
    }
}

/// 5 s, 10 s, 20 s, … up to 1 hour.
fn retry_after(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(3_600))
}

fn https_client() -> Result<HttpsClient, String> {
    let config = tls::client_config(tls::native_roots())?;
    // http:// is let through the connector; `fetch` only asks for it on loopback, when allowed.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// One directory's keys and how long they stay fresh.
async fn fetch(
    client: &HttpsClient,
    origin: &str,
    insecure_loopback: bool,
) -> Result<(Vec<crate::signals::web_bot_auth::AgentKey>, Duration), String> {
    let origin = normalize_origin(origin, insecure_loopback)?;
    let url = format!("{origin}{DIRECTORY_PATH}");
    let request = Request::get(&url)
        .header(header::ACCEPT, DIRECTORY_MEDIA_TYPE)
        .header(
            header::USER_AGENT,
            concat!("Lenscap/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let response = tokio::time::timeout(FETCH_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("{url}: no answer within {} s", FETCH_TIMEOUT.as_secs()))?
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: answered {}", response.status()));
    }
    let fresh = freshness(response.headers());
    let body = tokio::time::timeout(
        FETCH_TIMEOUT,
        Limited::new(response.into_body(), MAX_DIRECTORY_BYTES).collect(),
    )
    .await
    .map_err(|_| format!("{url}: body not read within {} s", FETCH_TIMEOUT.as_secs()))?
    .map_err(|e| format!("{url}: body unreadable or over {MAX_DIRECTORY_BYTES} bytes: {e}"))?
    .to_bytes();
    let keys = parse_directory(&body).map_err(|e| format!("{url}: {e}"))?;
    Ok((keys, fresh))
}

/// How long a directory answer stays fresh, from its `Cache-Control`.
fn freshness(headers: &HeaderMap) -> Duration {
    let Some(value) = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_FRESH;
    };
    let mut fresh = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return MIN_FRESH;
        }
        if let Some(secs) = lower.strip_prefix("max-age=")
            && let Ok(secs) = secs.trim_matches('"').parse::<u64>()
        {
            fresh = Some(Duration::from_secs(secs));
        }
    }
    fresh.unwrap_or(DEFAULT_FRESH).clamp(MIN_FRESH, MAX_FRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, value.parse().unwrap());
        headers
    }

    #[test]
    fn freshness_follows_cache_control_within_bounds() {
        assert_eq!(freshness(&HeaderMap::new()), DEFAULT_FRESH);
        assert_eq!(
            freshness(&cache_control("public, max-age=600")),
            Duration::from_secs(600)
        );
        assert_eq!(freshness(&cache_control("max-age=5")), MIN_FRESH);
        assert_eq!(freshness(&cache_control("max-age=99999999")), MAX_FRESH);
        assert_eq!(freshness(&cache_control("no-store")), MIN_FRESH);
        assert_eq!(freshness(&cache_control("max-age=soon")), DEFAULT_FRESH);
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(retry_after(1), Duration::from_secs(5));
        assert_eq!(retry_after(2), Duration::from_secs(10));
        assert_eq!(retry_after(40), Duration::from_secs(3_600));
    }
}

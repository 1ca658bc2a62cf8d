//! Lenscap keeps bulk image crawlers and AI scrapers off photo galleries.
//!
//! Venues post photos of their customers; face-search companies and AI-dataset builders harvest
//! them without consent. Lenscap is a Tower layer (and a server built on it) that identifies
//! each client, recognises crawlers by their User-Agent, header shape, published IP ranges and
//! behaviour, decides per request whether to allow, throttle, tarpit or block, limits what any
//! client or subnet can take, and declares the site's reservation against AI use in headers,
//! documents and the images themselves.
//!
//! ```
//! use lenscap::{LenscapLayer, Policy};
//!
//! // The embedded default policy: AI crawlers and bulk downloaders are kept off images,
//! // verified search engines and link previews are welcome, browsers are allowed.
//! let layer = LenscapLayer::new(Policy::embedded().unwrap());
//! # let _ = layer;
//! ```
//!
//! # The peer address must reach the layer
//!
//! Lenscap tells clients apart by their address. The server in front of the layer must put it
//! in each request's extensions: [`PeerAddr`] (and [`Tls`] on TLS connections), or, with the
//! `axum` feature, axum's `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`).
//! Without either, **every visitor is the same client** and shares one budget; Lenscap logs a
//! warning the first time that happens.
//!
//! # One request, one pass
//!
//! The modules follow the request: [`client`] identifies it, [`documents`] answers Lenscap's
//! own documents (before any limit, to everyone), [`catalog`] and [`signals`] classify it,
//! [`verdict`] names the decision, [`limit`] holds the rate limits and the state store,
//! [`tag`] and [`stamp`] mark what goes out, and the layer ([`LenscapLayer`]) wires them
//! together. [`Policy`] composes each stage's settings from one TOML file. See
//! `docs/ARCHITECTURE.md` for the picture and what each stage may import.
//!
//! # Features
//!
//! One crate, so that `cargo run --release` and `cargo install lenscap` give the whole tool
//! without a second package to keep in step; the parts a layer user does not need sit behind
//! features, so `lenscap = { version = "…", default-features = false }` compiles the layer
//! alone.
//!
//! - `axum`: read the peer address from axum's `ConnectInfo`.
//! - `html`: opt-out `<meta>` tags streamed into HTML pages (lol_html).
//! - `metrics`: Prometheus counters ([`LenscapLayer::with_metrics`]).
//! - `cli` (default): the `lenscap` binary — the server (static folder and reverse proxy,
//!   TLS, hot reload, admin endpoints), `explain`, `replay`, `simulate`, `check-config`.
//!   Turns on `html` and `metrics`. Its modules are for the binary and the project's own
//!   tests, not library API.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

// Leaves shared by every stage.
mod fingerprint;
mod request_headers;
mod settings;
pub mod verdict;

// The stages, in request order.
pub mod catalog;
mod classify;
pub mod client;
mod decide;
pub mod documents;
pub mod limit;
#[cfg(feature = "metrics")]
pub mod metrics;
mod record;
pub mod signals;
pub mod stamp;
pub mod tag;

// The composition and the wiring.
mod layer;
mod policy;

// The binary's parts.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod server;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod simulate;

pub use catalog::Category;
pub use client::{ClientId, PeerAddr, Tls};
pub use decide::CategoryAction;
pub use layer::{
    Lenscap, LenscapLayer, PolicyHandle, ResponseBody, ResponseFuture, VERDICT_HEADER,
};
pub use limit::{ClientRecord, MemoryStore, StateStore, SubnetRecord};
pub use policy::{EMBEDDED_POLICY, Mode, Policy};
pub use settings::{ConfigError, MAX_DURATION, parse_duration};
pub use verdict::{Action, Reason, Reasons, Verdict};

//! Lenscap keeps bulk image crawlers and AI scrapers off photo galleries.
//!
//! Venues post photos of their customers; face-search companies and AI-dataset builders harvest
//! them without consent. Lenscap is a Tower layer (and a server built on it) that identifies
//! each client, recognises crawlers by their User-Agent, header shape and published IP ranges,
//! decides per request whether to allow, throttle, tarpit or block, and declares the site's
//! reservation against AI use.
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
//! Modules, in request order: [`client`] (who is asking), [`catalog`] (known agents),
//! [`signals`] (header shape and behaviour), [`verdict`] (the decision), [`limit`] (rate
//! limits, the visitor cookie, traps and the state store), [`layer`] (the Tower wiring), with
//! [`policy`] holding the compiled configuration. [`server`] runs the layer in front of a
//! folder of photos or an upstream site, with [`metrics`] for Prometheus.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

pub mod catalog;
pub mod cli;
pub mod client;
pub mod documents;
pub mod layer;
pub mod limit;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod signals;
pub mod simulate;
pub mod stamp;
pub mod verdict;

pub use client::{ClientId, PeerAddr, Tls};
pub use layer::{Lenscap, LenscapLayer, PolicyHandle, ResponseBody};
pub use policy::{Mode, Policy, PolicyError};
pub use verdict::{Action, Reason, Verdict};

//! The policy file as written: one table per stage, each stage's own type, with defaults, so
//! an empty file is a valid policy.
//!
//! Every table denies unknown keys, so a typo is an error naming the key and its line rather
//! than a setting silently ignored. `[server]`, `[proxy]` and `[[site]]` belong to
//! `lenscap serve`, which reads its own view of the same file: here they are only let through.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_spanned::Spanned;

use crate::catalog::CatalogConfig;
use crate::classify::ImagesConfig;
use crate::client::ClientConfig;
use crate::decide::{CategoryAction, CategoryActions, ForwardConfig, SignalWeights, Thresholds};
use crate::documents::{LicensingConfig, ReservationConfig};
use crate::limit::{BlockConfig, CookieConfig, LimitsConfig, TarpitConfig, TrapsConfig};
use crate::signals::behaviour::BehaviourConfig;
use crate::signals::web_bot_auth::WebBotAuthConfig;
use crate::stamp::StampConfig;
use crate::tag::headers::OptOutHeadersConfig;

/// `enforce` or `report-only`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Verdicts are carried out.
    #[default]
    Enforce,
    /// Verdicts are computed, logged and counted, and every request is let through.
    ReportOnly,
}

impl Mode {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::ReportOnly => "report-only",
        }
    }
}

/// The whole policy file, in request order.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    pub(crate) mode: Mode,
    // identify
    pub(crate) client: ClientConfig,
    // answer
    pub(crate) reservation: ReservationConfig,
    // classify
    pub(crate) catalog: CatalogConfig,
    pub(crate) ranges: BTreeMap<String, PathBuf>,
    pub(crate) images: ImagesConfig,
    pub(crate) behaviour: BehaviourConfig,
    pub(crate) web_bot_auth: WebBotAuthConfig,
    // decide
    pub(crate) signals: SignalWeights,
    pub(crate) verdict: Thresholds,
    pub(crate) actions: CategoryActions,
    pub(crate) agents: BTreeMap<Spanned<String>, CategoryAction>,
    pub(crate) forward: ForwardConfig,
    pub(crate) licensing: LicensingConfig,
    // limit
    pub(crate) limits: LimitsConfig,
    pub(crate) traps: TrapsConfig,
    pub(crate) cookie: CookieConfig,
    pub(crate) block: BlockConfig,
    pub(crate) tarpit: TarpitConfig,
    // tag
    pub(crate) headers: OptOutHeadersConfig,
    pub(crate) stamp: StampConfig,
    // `lenscap serve`'s tables, read by the server
    pub(crate) server: IgnoredAny,
    pub(crate) proxy: IgnoredAny,
    pub(crate) site: IgnoredAny,
    pub(crate) store: IgnoredAny,
}

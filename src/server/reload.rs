//! Hot reload: the config file is read once it is complete, validated and compiled on a
//! blocking thread, then each site's policy is swapped whole. On any error the running
//! policies stay, and the error is logged and counted. Per-client state lives in the layers,
//! not in the policy, so it survives a reload.
//!
//! A file being saved passes through states that are not the file: truncated to nothing,
//! half written. So a reload reads the file only once it has stayed unchanged (length,
//! modification time, inode) for `server.reload_settle_time`, and refuses an empty file
//! unless the server started from an empty one (an empty file is a valid policy: the
//! defaults, which would briefly enforce on a report-only site). Each reload runs in a task
//! of its own and the loading on a blocking thread, so a panic in either is one failed reload,
//! never the end of the watcher or the SIGHUP handler.
//!
//! A reload applies the site policies and the certificate files; every other setting (the
//! listeners, timeouts, `[proxy]`, the list of sites and their hosts, `default_site`, ACME)
//! is read at start only, and a reload that changes one logs it by name as needing a restart.
//!
//! The watcher watches the file's folder, not the file: editors save by writing a new file and
//! renaming it over the old one, which a watch on the old file's inode would miss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::Content;
use super::tls::Certificates;
use super::{ServeOptions, ServerError, settings_from_text};
use crate::layer::PolicyHandle;
use crate::metrics::Metrics;
use crate::policy::EMBEDDED_POLICY;
use crate::settings::ConfigError;

/// A file still changing after this long is not read (the running policy stays).
const MAX_SETTLE_WAIT: Duration = Duration::from_secs(10);

/// Reloads the running sites' policies from the config file.
#[derive(Debug)]
pub(super) struct Reloader {
    options: ServeOptions,
    sites: Vec<(String, PolicyHandle, Content)>,
    metrics: Metrics,
    /// The running values of the settings a reload cannot change (see
    /// [`Settings::restart_only`](super::Settings::restart_only)).
    restart_only: BTreeMap<String, String>,
    /// The TLS listener's certificates: the files are read again on every reload.
    certificates: Option<Arc<Certificates>>,
    /// How long the file must stay unchanged before it is read.
    settle: Duration,
    /// Whether the file was empty when the server started (then an empty file is no accident).
    empty_at_start: bool,
    /// The text last loaded, so that a save without changes is not a reload.
    last_text: Mutex<Option<String>>,
}

/// Length, modification time and inode: what changes while a file is written or replaced.
#[derive(Debug, PartialEq, Eq)]
struct Version {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Version {
    fn of(path: &Path) -> std::io::Result<Version> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Version {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode,
        })
    }
}

impl Reloader {
    pub(super) fn new(
        options: ServeOptions,
        sites: Vec<(String, PolicyHandle, Content)>,
        metrics: Metrics,
        restart_only: BTreeMap<String, String>,
        certificates: Option<Arc<Certificates>>,
        settle: Duration,
    ) -> Self {
        let last_text = options
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let empty_at_start = last_text.as_deref().is_some_and(|t| t.trim().is_empty());
        Reloader {
            options,
            sites,
            metrics,
            restart_only,
            certificates,
            settle,
            empty_at_start,
            last_text: Mutex::new(last_text),
        }
    }

    /// Reloads now (what SIGHUP does), once the file is complete.
    pub(super) async fn reload(self: &Arc<Self>) -> Result<(), ServerError> {
        self.contained(false).await.unwrap_or(Ok(()))
    }

    /// Runs one reload in a task of its own, so that a panic is one failed reload. `None` when
    /// `only_if_changed` and the file is as last loaded.
    async fn contained(self: &Arc<Self>, only_if_changed: bool) -> Option<Result<(), ServerError>> {
        let this = self.clone();
        match tokio::spawn(async move { this.apply(only_if_changed).await }).await {
            Ok(outcome) => outcome,
            Err(join) => Some(Err(self.refused(self.panicked(join)))),
        }
    }

    async fn apply(&self, only_if_changed: bool) -> Option<Result<(), ServerError>> {
        let text = match &self.options.config {
            Some(path) => match read_settled(path, self.settle).await {
                Ok(text) => text,
                Err(error) => return Some(Err(self.refused(error))),
            },
            None => EMBEDDED_POLICY.to_owned(),
        };
        {
            let mut last = self.last_text.lock().unwrap_or_else(|e| e.into_inner());
            if only_if_changed && last.as_deref() == Some(text.as_str()) {
                return None;
            }
            *last = Some(text.clone());
        }
        if let Some(path) = &self.options.config
            && text.trim().is_empty()
            && !self.empty_at_start
        {
            return Some(Err(self.refused(ServerError::Config(ConfigError::Invalid {
                source_name: path.display().to_string(),
                message: "the file is empty (a save in progress?); an empty policy is applied only when the server started from one".into(),
            }))));
        }
        let options = self.options.clone();
        let loaded = tokio::task::spawn_blocking(move || settings_from_text(&options, &text)).await;
        let mut settings = match loaded {
            Ok(Ok(settings)) => settings,
            Ok(Err(error)) => return Some(Err(self.refused(error))),
            Err(join) => return Some(Err(self.refused(self.panicked(join)))),
        };
        super::proxy::merge_upstream_robots(&mut settings).await;
        let needs_restart = changed_keys(&self.restart_only, &settings.restart_only());
        if let (Some(certificates), Some((cert, key))) = (&self.certificates, &settings.tls) {
            // A pair that does not load keeps the running one; the policy still reloads.
            match certificates.load_files(cert, key) {
                Ok(()) => {
                    tracing::info!(target: "lenscap::reload", cert = %cert.display(), "certificate files reloaded")
                }
                Err(error) => {
                    tracing::error!(target: "lenscap::reload", %error, "certificate files not reloaded; the running certificate stays")
                }
            }
        }
        for spec in settings.sites {
            if let Some((_, handle, _)) = self.sites.iter().find(|(name, _, _)| *name == spec.name)
            {
                handle.store(spec.policy);
            }
        }
        self.metrics.reload(true);
        if needs_restart.is_empty() {
            tracing::info!(target: "lenscap::reload", sites = self.sites.len(), "policy reloaded");
        } else {
            let keys = needs_restart.join(", ");
            tracing::warn!(
                target: "lenscap::reload",
                sites = self.sites.len(),
                needs_restart = %keys,
                "policy reloaded; changed settings that apply only after a restart: {keys}"
            );
        }
        Some(Ok(()))
    }

    /// Counts and logs a refused reload.
    fn refused(&self, error: ServerError) -> ServerError {
        self.metrics.reload(false);
        tracing::error!(
            target: "lenscap::reload",
            %error,
            "config reload failed; the running policy stays in force"
        );
        error
    }

    fn panicked(&self, join: tokio::task::JoinError) -> ServerError {
        let what = match join.try_into_panic() {
            Ok(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned()),
            Err(_) => "cancelled".to_owned(),
        };
        ServerError::Config(ConfigError::Invalid {
            source_name: self
                .options
                .config
                .as_ref()
                .map_or_else(|| "embedded policy".to_owned(), |p| p.display().to_string()),
            message: format!("loading the file failed unexpectedly ({what})"),
        })
    }

    /// Starts watching the config file's folder; `None` without a config file.
    pub(super) fn watch(self: Arc<Self>) -> Option<JoinHandle<()>> {
        let path = self.options.config.clone()?;
        let file_name = path.file_name()?.to_owned();
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                // Reading the file (as a reload does) is an access event: not a change.
                if let Ok(event) = event
                    && !matches!(event.kind, notify::EventKind::Access(_))
                    && event
                        .paths
                        .iter()
                        .any(|p| p.file_name() == Some(file_name.as_os_str()))
                {
                    let _ = tx.send(());
                }
            },
        ) {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::warn!(target: "lenscap::reload", %error, "cannot watch the config file; reload with SIGHUP");
                return None;
            }
        };
        if let Err(error) = watcher.watch(&folder, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(target: "lenscap::reload", folder = %folder.display(), %error, "cannot watch the config folder; reload with SIGHUP");
            return None;
        }
        Some(tokio::spawn(async move {
            let _watcher = watcher;
            while rx.recv().await.is_some() {
                // The settle wait in the reload covers the rest of the save: one read.
                while rx.try_recv().is_ok() {}
                let _ = self.contained(true).await;
                // Events for what the reload itself waited through.
                while rx.try_recv().is_ok() {}
            }
        }))
    }
}

/// The keys whose values differ between `running` and `loaded` (or are in only one).
pub(super) fn changed_keys(
    running: &BTreeMap<String, String>,
    loaded: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut changed: Vec<String> = running
        .iter()
        .filter(|(key, value)| loaded.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect();
    changed.extend(
        loaded
            .keys()
            .filter(|key| !running.contains_key(*key))
            .cloned(),
    );
    changed
}

/// Reads `path` once it has stayed unchanged for `settle` (and did not change while read).
async fn read_settled(path: &Path, settle: Duration) -> Result<String, ServerError> {
    let io_error = |source: std::io::Error| {
        ServerError::Config(ConfigError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    let poll = (settle / 5).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let give_up = Instant::now() + MAX_SETTLE_WAIT;
    let mut seen = Version::of(path).map_err(io_error)?;
    let mut stable_since = Instant::now();
    loop {
        if stable_since.elapsed() >= settle {
            let text = tokio::fs::read_to_string(path).await.map_err(io_error)?;
            let after = Version::of(path).map_err(io_error)?;
            if after == seen {
                return Ok(text);
            }
            seen = after;
            stable_since = Instant::now();
        }
        if Instant::now() >= give_up {
            return Err(ServerError::Config(ConfigError::Invalid {
                source_name: path.display().to_string(),
                message: format!(
                    "the file kept changing for {}s; not reloaded",
                    MAX_SETTLE_WAIT.as_secs()
                ),
            }));
        }
        tokio::time::sleep(poll).await;
        // A file mid-rename may be missing for a moment: that is a change too.
        match Version::of(path) {
            Ok(now) if now == seen => {}
            Ok(now) => {
                seen = now;
                stable_since = Instant::now();
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                stable_since = Instant::now();
            }
            Err(error) => return Err(io_error(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_while_loading_is_one_failed_reload() {
        let dir = std::env::temp_dir().join(format!("lenscap-reload-panic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lenscap.toml");
        std::fs::write(&path, "mode = \"report-only\"\n").unwrap();
        let metrics = Metrics::new();
        let reloader = Arc::new(Reloader::new(
            ServeOptions {
                config: Some(path.clone()),
                ..ServeOptions::default()
            },
            Vec::new(),
            metrics.clone(),
            BTreeMap::new(),
            None,
            Duration::from_millis(10),
        ));
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let error = reloader.refused(reloader.panicked(join)).to_string();
        assert!(error.contains("boom"), "{error}");
        assert!(
            metrics
                .encode()
                .contains("lenscap_config_reloads_total{result=\"error\"} 1")
        );
    }

    #[tokio::test]
    async fn a_file_is_read_only_once_it_stops_changing() {
        let dir =
            std::env::temp_dir().join(format!("lenscap-reload-settle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lenscap.toml");
        std::fs::write(&path, "").unwrap();
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut file = std::fs::File::create(&path).unwrap();
                for _ in 0..20 {
                    file.write_all(b"# line\n").unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let text = read_settled(&path, Duration::from_millis(200))
            .await
            .unwrap();
        writer.join().unwrap();
        assert_eq!(text, "# line\n".repeat(20));
    }
}

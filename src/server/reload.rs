//! Hot reload: the config file is read, validated and compiled on a blocking thread, then each
//! site's policy is swapped whole. An invalid file is logged and the running policies stay.
//! Per-client state lives in the layers, not in the policy, so it survives a reload.
//!
//! The watcher watches the file's folder, not the file: editors save by writing a new file and
//! renaming it over the old one, which a watch on the old file's inode would miss.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::Content;
use super::{ServeOptions, ServerError, load_settings};
use crate::layer::PolicyHandle;
use crate::metrics::Metrics;

/// Reloads the running sites' policies from the config file.
#[derive(Debug)]
pub(super) struct Reloader {
    options: ServeOptions,
    sites: Vec<(String, PolicyHandle, Content)>,
    metrics: Metrics,
    /// The text last loaded, so that a save without changes is not a reload.
    last_text: Mutex<Option<String>>,
}

impl Reloader {
    pub(super) fn new(
        options: ServeOptions,
        sites: Vec<(String, PolicyHandle, Content)>,
        metrics: Metrics,
    ) -> Self {
        let last_text = options
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        Reloader {
            options,
            sites,
            metrics,
            last_text: Mutex::new(last_text),
        }
    }

    pub(super) async fn reload(&self) -> Result<(), ServerError> {
        let options = self.options.clone();
        let loaded = tokio::task::spawn_blocking(move || load_settings(&options))
            .await
            .expect("config loading does not panic");
        let mut settings = match loaded {
            Ok(settings) => settings,
            Err(error) => {
                self.metrics.reload(false);
                tracing::error!(
                    target: "lenscap::reload",
                    %error,
                    "config reload failed; the running policy stays in force"
                );
                return Err(error);
            }
        };
        super::proxy::merge_upstream_robots(&mut settings).await;
        let mut structural = settings.sites.len() != self.sites.len();
        for spec in settings.sites {
            match self.sites.iter().find(|(name, _, _)| *name == spec.name) {
                Some((_, handle, content)) => {
                    structural |= *content != spec.content;
                    handle.store(spec.policy);
                }
                None => structural = true,
            }
        }
        if structural {
            tracing::warn!(
                target: "lenscap::reload",
                "sites, hosts or their content changed: policies were reloaded, the rest needs a restart"
            );
        }
        self.metrics.reload(true);
        tracing::info!(target: "lenscap::reload", sites = self.sites.len(), "policy reloaded");
        Ok(())
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
                if let Ok(event) = event
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
                // Editors write in several steps: let them finish, then read once.
                tokio::time::sleep(Duration::from_millis(150)).await;
                while rx.try_recv().is_ok() {}
                let Ok(text) = tokio::fs::read_to_string(&path).await else {
                    continue; // Mid-rename; the next event brings the new file.
                };
                {
                    let mut last = self.last_text.lock().expect("not poisoned");
                    if last.as_deref() == Some(text.as_str()) {
                        continue;
                    }
                    *last = Some(text);
                }
                let _ = self.reload().await;
            }
        }))
    }
}

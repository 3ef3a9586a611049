//! The bot's resolved configuration, read from the file the operator's ConfigMap mounts (or
//! `bot-runtime local` writes), and re-read when it changes — no restart for a new price.
//!
//! Polling the content (not inotify) on purpose: Kubernetes updates a ConfigMap volume by
//! swapping a symlink, which file watchers miss or report oddly; reading a few KiB every two
//! seconds is cheap and always right.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use botfleet_crds::resolved::{RESOLVED_CONFIG_VERSION, ResolvedBotConfig};
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("the configuration {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("the configuration {path} has version {found}; this runtime reads version {RESOLVED_CONFIG_VERSION}")]
    Version { path: PathBuf, found: u32 },
}

pub fn parse(path: &Path, text: &str) -> Result<ResolvedBotConfig, ConfigError> {
    let config: ResolvedBotConfig =
        serde_yaml::from_str(text).map_err(|e| ConfigError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    if config.version != RESOLVED_CONFIG_VERSION {
        return Err(ConfigError::Version { path: path.to_path_buf(), found: config.version });
    }
    Ok(config)
}

pub async fn load(path: &Path) -> Result<ResolvedBotConfig, ConfigError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| ConfigError::Read { path: path.to_path_buf(), message: e.to_string() })?;
    parse(path, &text)
}

/// The current configuration, replaced whenever the file changes to a valid one.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    rx: watch::Receiver<Arc<ResolvedBotConfig>>,
}

impl LiveConfig {
    /// A configuration fed by the caller (`bot-runtime local` re-resolves the manifests and
    /// sends each new version).
    pub fn channel(config: ResolvedBotConfig) -> (LiveConfig, watch::Sender<Arc<ResolvedBotConfig>>) {
        let (tx, rx) = watch::channel(Arc::new(config));
        (LiveConfig { rx }, tx)
    }

    pub fn current(&self) -> Arc<ResolvedBotConfig> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change (for tasks that must react, e.g. rate limiters).
    pub async fn changed(&mut self) -> Option<Arc<ResolvedBotConfig>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }
}

/// Loads the file (it must be valid at start) and keeps watching it. A later invalid version
/// is logged and ignored: the bot keeps serving with the last good configuration.
pub async fn watch(path: PathBuf, every: Duration) -> Result<(LiveConfig, tokio::task::JoinHandle<()>), ConfigError> {
    let text = tokio::fs::read_to_string(&path).await.map_err(|e| ConfigError::Read { path: path.clone(), message: e.to_string() })?;
    let config = parse(&path, &text)?;
    let (tx, rx) = watch::channel(Arc::new(config));
    let task = tokio::spawn(async move {
        let mut last_seen = text;
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            if text == last_seen {
                continue;
            }
            match parse(&path, &text) {
                Ok(config) => {
                    tracing::info!(path = %path.display(), hash = %config.hash(), "configuration reloaded");
                    let _ = tx.send(Arc::new(config));
                }
                Err(e) => tracing::warn!(error = %e, "new configuration ignored; keeping the previous one"),
            }
            last_seen = text;
        }
    });
    Ok((LiveConfig { rx }, task))
}

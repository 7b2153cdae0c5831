//! The HostFactory side: templates, the five provider calls in HostFactory's wire format, the
//! request lifecycle in the store, and the background reconciler that keeps it fresh.

mod answers;
pub mod error;
mod events;
mod ghosts;
pub mod model;
mod notices;
pub mod plan;
mod provisioning;
mod reconciler;
mod service;
pub mod status;
pub mod templates;
mod terminations;
mod unclaimed;
pub mod views;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use answers::wire_request;
pub use events::ends_request;
pub use reconciler::run as run_reconciler;
pub use service::{HfError, HostFactory};

use crate::config::HostFactoryConfig;

/// Default location of the templates file when HostFactory's conf dir is not set.
pub const DEFAULT_TEMPLATES_PATH: &str = "config/hostfactory/awsprov_templates.json";

/// Which templates file to read (see `HostFactoryConfig::templates_path`); `None` when there is
/// none to read. `conf_dir` is `$HF_PROVIDER_CONFDIR`.
pub fn templates_path(cfg: &HostFactoryConfig, conf_dir: Option<String>) -> Option<PathBuf> {
    if let Some(p) = cfg.templates_path.as_deref().filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(dir) = conf_dir.filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("awsprov_templates.json"));
    }
    let default = PathBuf::from(DEFAULT_TEMPLATES_PATH);
    default.exists().then_some(default)
}

/// How often the templates file is looked at for changes.
pub const TEMPLATES_REFRESH: Duration = Duration::from_secs(2);

/// Keeps the templates catalog in step with its file, off the request path.
pub async fn watch_templates(hf: Arc<HostFactory>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(TEMPLATES_REFRESH) => {
                hf.catalog().refresh().await;
            }
        }
    }
}

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::app::Engine;
use crate::config::Config;
use crate::hostfactory::HostFactory;
use crate::http::prometheus::Exposition;
use crate::http::rate_limit::RateLimits;
use crate::tasks::Tasks;

/// The one state every handler gets. One `Arc`: axum clones the state for every layer and
/// extractor that takes it, on every request, and cloning the parts one by one (a cancellation
/// token's clone takes a lock) cost a quarter of a `/health` call's CPU time.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub engine: Arc<Engine>,
    pub hostfactory: Arc<HostFactory>,
    pub config: Arc<Config>,
    pub started: Instant,
    /// Cancelled on shutdown; long-lived responses (event streams) end with it.
    pub shutdown: CancellationToken,
    /// The background tasks; readiness fails when one of them is gone.
    pub tasks: Tasks,
    /// Alert rules and alerts.
    pub alerts: Arc<Alerts>,
    /// `/metrics`: the registry and the series the HTTP layer records.
    pub prometheus: Arc<Exposition>,
    /// The per-token rate limits of `server.auth`.
    pub rate_limits: Arc<RateLimits>,
}

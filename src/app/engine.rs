//! The engine: the one facade the routes, the HostFactory layer and the background monitor
//! hold (in `AppState`). It owns the parts and wires them at start:
//!
//! - [`Settings`]: the file's strategy settings, stored overrides, the effective settings;
//! - [`Registry`]: the strategies, their providers and run-time state;
//! - [`Executor`]: resolution, breakers, the call, failover, member calls of composites;
//! - the metrics recorder and the event bus they report to.
//!
//! The commands and queries (`commands.rs`, `queries.rs`) are methods on the engine that use
//! these parts; the health monitor (`crate::monitor`) uses them from the background task.

use std::sync::Arc;

use super::events::EventBus;
use super::executor::{ExecutionOutcome, Executor, Route};
use super::metrics::MetricsRecorder;
use super::registry::{Registry, StrategyEntry};
use super::settings::Settings;
use super::{AppResult, startup};
use crate::config::Config;
use crate::monitor::health::DueChecks;
use crate::providers::Operation;
use crate::store::Store;

/// The strategy engine: one per service, shared through `AppState`.
pub struct Engine {
    pub(super) store: Store,
    pub(super) settings: Arc<Settings>,
    pub(super) registry: Arc<Registry>,
    pub(super) executor: Arc<Executor>,
    pub(super) metrics: Arc<MetricsRecorder>,
    pub(super) events: Arc<EventBus>,
    /// First checks of strategies registered or changed, run by the background task.
    pub(super) due_checks: DueChecks,
    /// Held by every change of the registry or of the settings that name strategies, from its
    /// checks to its last write: checked apart from acting, two changes at once could each
    /// pass their checks and together leave a composite, `fallback_strategies` or
    /// `active_strategy` naming a deleted strategy.
    pub(super) changes: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Reads the settings, reconciles the file's strategies with the stored ones and builds
    /// every provider.
    pub async fn start(config: &Config, store: Store) -> anyhow::Result<Arc<Self>> {
        let settings = Arc::new(Settings::load(&config.strategy, store.clone()).await?);
        let metrics = Arc::new(MetricsRecorder::default());
        let events = Arc::new(EventBus::start(store.clone()).await?);
        let executor = Executor::new(
            store.clone(),
            Arc::clone(&settings),
            Arc::clone(&metrics),
            Arc::clone(&events),
        );
        let registry = Arc::clone(executor.registry());
        startup::load(config, &store, &registry).await?;
        Ok(Arc::new(Self {
            store,
            settings,
            registry,
            executor,
            metrics,
            events,
            due_checks: DueChecks::default(),
            changes: tokio::sync::Mutex::default(),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    pub fn metrics_recorder(&self) -> &MetricsRecorder {
        &self.metrics
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn due_checks(&self) -> &DueChecks {
        &self.due_checks
    }

    pub fn entry(&self, name: &str) -> AppResult<Arc<StrategyEntry>> {
        self.registry.entry(name)
    }

    pub fn entries(&self) -> Vec<Arc<StrategyEntry>> {
        self.registry.all()
    }

    /// Runs `op` as `route` says (see [`Executor::execute`]).
    pub async fn execute(&self, op: Operation, route: Route) -> AppResult<ExecutionOutcome> {
        self.executor.execute(op, route).await
    }
}

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
use crate::config::{Config, StrategySpec};
use crate::domain::EpochMillis;
use crate::monitor::health::DueChecks;
use crate::providers::Operation;
use crate::store::{CircuitRepo, CircuitRow, HealthRepo, Store, StoreResult};

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
    /// The configuration file's strategies: their order when another replica's change is
    /// read back.
    file_strategies: Vec<StrategySpec>,
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
            file_strategies: config.providers.clone(),
        }))
    }

    /// Reads registrations back from the store (another replica changed them).
    pub async fn refresh_strategies(&self) -> anyhow::Result<()> {
        let _changing = self.changes.lock().await;
        startup::refresh(&self.file_strategies, &self.store, &self.registry).await
    }

    /// Reads strategy `name`'s breaker and health back from the store (another replica saved
    /// them); every strategy's when `name` is `None`. A stored state replaces the one in memory
    /// only when it is newer, so that a read racing this process's own change never undoes it.
    /// (Consecutive failure counts stay each replica's own: they move without a transition.)
    pub async fn refresh_runtime(&self, name: Option<&str>) -> StoreResult<()> {
        let circuits = self.store.load_circuits().await?;
        let health = self.store.load_health().await?;
        for entry in self.registry.all() {
            if name.is_some_and(|n| n != entry.name()) {
                continue;
            }
            if let Some((_, row)) = circuits.iter().find(|(n, _)| n == entry.name()) {
                let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
                if changed_at(row) > changed_at(&slot.row()) {
                    slot.breaker = row.breaker.clone();
                    slot.last_reason = row.last_reason.clone();
                    slot.mode_set = row.mode_set.clone();
                }
            }
            if let Some((_, h)) = health.iter().find(|(n, _)| n == entry.name()) {
                let mut held = entry.runtime.health.lock().expect("health lock");
                if h.checked_at > held.checked_at {
                    *held = h.clone();
                }
            }
        }
        Ok(())
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

    pub fn events(&self) -> &Arc<EventBus> {
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

/// When a breaker last changed: its latest transition or operator setting.
fn changed_at(row: &CircuitRow) -> Option<EpochMillis> {
    row.breaker
        .last_transition_at
        .max(row.mode_set.as_ref().map(|m| m.at))
}

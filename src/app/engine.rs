use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::events::{EventBus, EventKind};
use super::metrics::MetricsRecorder;
use super::registry::{InFlightGuard, Registry, StrategyEntry, StrategyRuntime};
use super::settings::SettingsPatch;
use super::{AppError, AppResult};
use crate::config::{Config, StrategySettings, StrategySpec};
pub use crate::domain::Attempt;
use crate::domain::{
    EpochMillis, HealthState, HealthStatus, OperationType, ProviderError, ProviderErrorKind,
    now_millis, rfc3339,
};
use crate::providers::{
    self, MemberInvoker, Operation, OperationOutput, ProviderDeps, StateShelf, composite,
};
use crate::store::{
    CircuitRepo, CircuitRow, HealthRepo, MetricsRepo, SettingsRepo, Store, StoredStrategy,
    StrategyRepo, StrategySource,
};
use crate::strategy::composition::find_cycle;
use crate::strategy::{
    BreakerConfig, Candidate, CircuitBreaker, Selection, SelectionCriteria, SelectorState,
    Transition, selection,
};

/// Registration order of API strategies starts here; config-file strategies come first, in
/// file order.
const API_ORDER_BASE: u64 = 1_000_000;

/// How an operation finds its strategy.
#[derive(Debug, Clone, Default)]
pub struct Route {
    /// Go straight to this strategy (no selection), as `strategy_override` does.
    pub strategy: Option<String>,
    /// Laid over the configured criteria for this call.
    pub criteria: Option<SelectionCriteria>,
    /// Shorter (or longer) than the configured operation timeout.
    pub timeout: Option<Duration>,
}

/// The result of an operation after selection, breaker checks and failover.
#[derive(Debug, Clone)]
pub struct ExecutionOutcome {
    pub result: Result<OperationOutput, ProviderError>,
    pub strategy_used: String,
    pub attempts: Vec<Attempt>,
    pub selection: Option<Selection>,
    pub how_chosen: String,
    pub response_time_ms: f64,
}

impl ExecutionOutcome {
    pub fn fallback_used(&self) -> bool {
        self.attempts.len() > 1 && self.result.is_ok()
    }
}

struct Resolved {
    entry: Arc<StrategyEntry>,
    guard: InFlightGuard,
    selection: Option<Selection>,
    how: String,
}

struct SettingsState {
    file: StrategySettings,
    overrides: SettingsPatch,
    effective: StrategySettings,
    updated_at: Option<EpochMillis>,
}

/// The strategy engine: one per service, shared through `AppState`.
pub struct Engine {
    pub(super) store: Store,
    pub(super) registry: Registry,
    settings: RwLock<SettingsState>,
    selector: Mutex<SelectorState>,
    pub(super) metrics: MetricsRecorder,
    pub(super) events: EventBus,
    pub(super) deps: ProviderDeps,
    /// Signalled when run-time configuration changes, so the monitor re-reads its interval.
    settings_changed: tokio::sync::Notify,
}

fn order_of(stored: &StoredStrategy, file: &[StrategySpec]) -> u64 {
    match stored.source {
        StrategySource::Config => file
            .iter()
            .position(|s| s.name == stored.spec.name)
            .map_or(API_ORDER_BASE - 1, |i| i as u64),
        StrategySource::Api => API_ORDER_BASE + stored.seq as u64,
    }
}

impl Engine {
    /// Merges the file's strategies with the stored ones and builds every provider.
    ///
    /// Rule: the configuration file is authoritative for the names it defines (its definition
    /// replaces a stored one, and a file strategy removed from the file is dropped); strategies
    /// registered through the API are kept from the store.
    pub async fn start(config: &Config, store: Store) -> anyhow::Result<Arc<Self>> {
        let now = now_millis();
        let stored = store.list_strategies().await?;
        for old in &stored {
            let in_file = config.providers.iter().any(|p| p.name == old.spec.name);
            if old.source == StrategySource::Config && !in_file {
                tracing::info!(strategy = %old.spec.name, "strategy no longer in the configuration file; removed");
                store.delete_strategy(&old.spec.name).await?;
            } else if old.source == StrategySource::Api && in_file {
                tracing::warn!(strategy = %old.spec.name, "the configuration file defines a strategy registered through the API; the file's definition wins");
            }
        }
        for spec in &config.providers {
            store
                .upsert_strategy(spec, StrategySource::Config, now)
                .await?;
        }
        let health = store.load_health().await?;
        let circuits = store.load_circuits().await?;
        let stored_overrides = store.load_settings_overrides().await?;
        let updated_at = stored_overrides.as_ref().map(|(_, at)| *at);
        let overrides: SettingsPatch = match stored_overrides {
            Some((map, _)) => serde_json::from_value(Value::Object(map)).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored strategy configuration unreadable; using the file's");
                SettingsPatch::default()
            }),
            None => SettingsPatch::default(),
        };
        let effective = overrides.apply(&config.strategy);
        let engine = Arc::new_cyclic(|weak: &Weak<Engine>| Self {
            deps: ProviderDeps {
                store: store.clone(),
                invoker: Arc::new(EngineInvoker(weak.clone())),
                shelf: Arc::new(StateShelf::default()),
            },
            store: store.clone(),
            registry: Registry::default(),
            selector: Mutex::new(SelectorState::new(config.strategy.random_seed)),
            settings: RwLock::new(SettingsState {
                file: config.strategy.clone(),
                overrides,
                effective,
                updated_at,
            }),
            metrics: MetricsRecorder::default(),
            events: EventBus::default(),
            settings_changed: tokio::sync::Notify::new(),
        });
        for st in store.list_strategies().await? {
            let name = st.spec.name.clone();
            let provider = match providers::build(&st.spec, &engine.deps).await {
                Ok(p) => p,
                Err(e) if st.source == StrategySource::Api => {
                    // Kept in the store so that nothing registered is lost; fix and restart.
                    tracing::error!(strategy = %name, error = %e, "cannot build a stored strategy; skipped");
                    continue;
                }
                Err(e) => anyhow::bail!("strategy '{name}': {e}"),
            };
            let h = health
                .iter()
                .find(|(n, _)| n == &name)
                .map_or_else(HealthStatus::unknown, |(_, h)| h.clone());
            let c = circuits
                .iter()
                .find(|(n, _)| n == &name)
                .map(|(_, c)| c.clone());
            let (breaker, reason) = c.map_or((CircuitBreaker::default(), None), |c| {
                (c.breaker, c.last_reason)
            });
            engine.registry.put(StrategyEntry {
                order: order_of(&st, &config.providers),
                source: st.source,
                registered_at: st.created_at,
                updated_at: st.updated_at,
                spec: st.spec,
                provider,
                runtime: Arc::new(StrategyRuntime::new(h, breaker, reason)),
            });
        }
        for entry in engine.registry.all() {
            let problems: Vec<String> = engine
                .check_members(&entry.spec)
                .into_iter()
                .map(|(path, m)| format!("{path}: {m}"))
                .collect();
            if problems.is_empty() {
                continue;
            }
            if entry.source == StrategySource::Config {
                anyhow::bail!("strategy '{}': {}", entry.name(), problems.join("; "));
            }
            tracing::error!(strategy = entry.name(), problems = %problems.join("; "), "stored composite strategy has bad members; its calls to them will fail");
        }
        Ok(engine)
    }

    /// Problems with the members of a composite definition (as path, message): members must
    /// be registered, and no strategy may contain itself, directly or through others.
    pub(super) fn check_members(&self, spec: &StrategySpec) -> Vec<(String, String)> {
        let members = composite::members_of(spec);
        let mut errors: Vec<(String, String)> = members
            .iter()
            .filter(|(_, m)| m != &spec.name && self.registry.get(m).is_none())
            .map(|(path, m)| (path.clone(), format!("no strategy named '{m}'")))
            .collect();
        let members_of = |name: &str| -> Vec<String> {
            if name == spec.name {
                return members.iter().map(|(_, m)| m.clone()).collect();
            }
            self.registry
                .get(name)
                .map(|e| {
                    composite::members_of(&e.spec)
                        .into_iter()
                        .map(|(_, m)| m)
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(cycle) = find_cycle(&spec.name, &members_of)
            && let Some((path, _)) = members.iter().find(|(_, m)| m == &cycle[1])
        {
            errors.push((
                path.clone(),
                format!("would make a cycle: {}", cycle.join(" -> ")),
            ));
        }
        errors
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics_recorder(&self) -> &MetricsRecorder {
        &self.metrics
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn settings(&self) -> StrategySettings {
        self.settings
            .read()
            .expect("settings lock")
            .effective
            .clone()
    }

    pub(super) fn settings_view(&self) -> (StrategySettings, SettingsPatch, Option<EpochMillis>) {
        let s = self.settings.read().expect("settings lock");
        (s.effective.clone(), s.overrides.clone(), s.updated_at)
    }

    /// Validated patch in, new effective settings out (persisted first).
    pub(super) async fn replace_overrides(
        &self,
        overrides: SettingsPatch,
    ) -> AppResult<StrategySettings> {
        let now = now_millis();
        let map = match serde_json::to_value(&overrides).expect("serializes") {
            Value::Object(m) => m,
            _ => unreachable!("a struct serializes to an object"),
        };
        self.store.save_settings_overrides(&map, now).await?;
        let mut s = self.settings.write().expect("settings lock");
        s.effective = overrides.apply(&s.file);
        s.overrides = overrides;
        s.updated_at = Some(now);
        let effective = s.effective.clone();
        drop(s);
        // One stored permit: a change made while the monitor is busy is seen when it is done.
        self.settings_changed.notify_one();
        Ok(effective)
    }

    /// Completes after the next run-time configuration change.
    pub async fn settings_changed(&self) {
        self.settings_changed.notified().await;
    }

    pub fn breaker_config(&self) -> BreakerConfig {
        self.settings
            .read()
            .expect("settings lock")
            .effective
            .circuit_breaker
    }

    pub fn entry(&self, name: &str) -> AppResult<Arc<StrategyEntry>> {
        self.registry
            .get(name)
            .ok_or_else(|| AppError::strategy_not_found(name))
    }

    pub fn entries(&self) -> Vec<Arc<StrategyEntry>> {
        self.registry.all()
    }

    /// Runs the selection pipeline with the configured policy and criteria (`extra` laid over).
    pub fn select(
        &self,
        op: OperationType,
        extra: Option<&SelectionCriteria>,
    ) -> AppResult<Selection> {
        self.select_reserving(op, extra)
            .map(|(selection, _, _)| selection)
    }

    /// Selection that also counts the operation in flight on the chosen strategy, under the
    /// same lock, so that concurrent selections see each other (LEAST_CONNECTIONS).
    fn select_reserving(
        &self,
        op: OperationType,
        extra: Option<&SelectionCriteria>,
    ) -> AppResult<(Selection, Arc<StrategyEntry>, InFlightGuard)> {
        let settings = self.settings();
        let criteria = match extra {
            Some(c) => settings.selection_criteria.overlay(c),
            None => settings.selection_criteria.clone(),
        };
        let mut state = self.selector.lock().expect("selector lock");
        let entries = self.registry.all();
        let candidates: Vec<_> = entries.iter().map(|e| e.candidate()).collect();
        let selection = selection::select(
            &candidates,
            op,
            &criteria,
            settings.selection_policy,
            &mut state,
        )
        .map_err(AppError::NoCandidate)?;
        let entry = entries
            .into_iter()
            .find(|e| e.name() == selection.selected)
            .expect("the selected strategy is one of the candidates");
        let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
        drop(state);
        self.events.emit(
            EventKind::Selection,
            Some(&selection.selected),
            json!({"operation_type": op, "policy": selection.policy, "reason": selection.reason}),
        );
        Ok((selection, entry, guard))
    }

    /// Picks the first strategy for `op` by override, active strategy or selection.
    fn resolve(&self, op: OperationType, route: &Route) -> AppResult<Resolved> {
        if let Some(name) = &route.strategy {
            let entry = self.entry(name)?;
            if !entry.spec.enabled {
                return Err(AppError::Conflict(format!("strategy '{name}' is disabled")));
            }
            let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
            return Ok(Resolved {
                entry,
                guard,
                selection: None,
                how: "strategy_override".into(),
            });
        }
        if let Some(active) = self.settings().active_strategy
            && let Some(entry) = self.registry.get(&active)
        {
            let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
            return Ok(Resolved {
                entry,
                guard,
                selection: None,
                how: "active_strategy".into(),
            });
        }
        let (selection, entry, guard) = self.select_reserving(op, route.criteria.as_ref())?;
        let how = format!("selection policy {}", selection.policy);
        Ok(Resolved {
            entry,
            guard,
            selection: Some(selection),
            how,
        })
    }

    /// Executes `op`: resolve a strategy, call it through its breaker, and on an error that
    /// allows it, go down the configured `fallback_strategies` (skipping those already tried).
    /// An explicit `strategy_override` runs on that strategy only.
    pub async fn execute(
        self: &Arc<Self>,
        op: Operation,
        route: Route,
    ) -> AppResult<ExecutionOutcome> {
        let started = Instant::now();
        let Resolved {
            entry,
            guard,
            selection,
            how,
        } = self.resolve(op.kind(), &route)?;
        let settings = self.settings();
        let timeout = route
            .timeout
            .unwrap_or_else(|| Duration::from_secs_f64(settings.operation_timeout));
        let may_fail_over = route.strategy.is_none();
        let mut attempts = Vec::new();
        let mut next = Some((entry, guard));
        let mut last = None;
        while let Some((entry, guard)) = next.take() {
            let (attempt, result) = self.call(&entry, &op, timeout, guard).await;
            attempts.push(attempt);
            let failover = may_fail_over && matches!(&result, Err(e) if e.kind.allows_failover());
            last = Some((entry.name().to_string(), result));
            if failover {
                next = settings
                    .fallback_strategies
                    .iter()
                    .filter(|name| !attempts.iter().any(|a| &a.strategy == *name))
                    .filter_map(|name| self.registry.get(name))
                    .find(|e| e.spec.enabled && e.capabilities().supports(op.kind()))
                    .map(|e| {
                        let guard = InFlightGuard::new(Arc::clone(&e.runtime));
                        (e, guard)
                    });
            }
        }
        let (strategy_used, result) = last.expect("at least one attempt");
        Ok(ExecutionOutcome {
            result,
            strategy_used,
            attempts,
            selection,
            how_chosen: how,
            response_time_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Calls one strategy: breaker check first (an open circuit never reaches the provider),
    /// timeout, then outcome to breaker, window, metrics and events. The call runs in its own
    /// task, so a caller that goes away cannot leave a probe slot or an in-flight count taken.
    async fn call(
        self: &Arc<Self>,
        entry: &Arc<StrategyEntry>,
        op: &Operation,
        timeout: Duration,
        in_flight: InFlightGuard,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let engine = Arc::clone(self);
        let entry = Arc::clone(entry);
        let op = op.clone();
        let name = entry.name().to_string();
        let task = tokio::spawn(async move {
            let done = engine.call_inner(&entry, &op, timeout).await;
            drop(in_flight);
            done
        });
        match task.await {
            Ok(done) => done,
            Err(e) => {
                let err = ProviderError::new(
                    ProviderErrorKind::Internal,
                    "PROVIDER_PANICKED",
                    e.to_string(),
                );
                let result = Err(err);
                (Attempt::of(&name, &result, 0.0), result)
            }
        }
    }

    async fn call_inner(
        &self,
        entry: &Arc<StrategyEntry>,
        op: &Operation,
        timeout: Duration,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let cfg = self.breaker_config();
        let name = entry.name();
        let (decision, transition) = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            slot.breaker.try_acquire(&cfg, now_millis())
        };
        if let Some(t) = transition {
            self.record_transition(entry, t).await;
        }
        let permit = match decision {
            Ok(p) => p,
            Err(reason) => {
                let err =
                    ProviderError::new(ProviderErrorKind::CircuitOpen, "CIRCUIT_OPEN", reason);
                let result = Err(err);
                self.metrics.record(
                    name,
                    op.kind().as_str(),
                    now_millis(),
                    false,
                    0.0,
                    Some(("CIRCUIT_OPEN", "rejected by the circuit breaker")),
                );
                return (Attempt::of(name, &result, 0.0), result);
            }
        };
        let started = Instant::now();
        let (result, members, contributors) =
            match tokio::time::timeout(timeout, entry.provider.execute_traced(op)).await {
                Ok(traced) => (traced.result, traced.members, traced.contributors),
                Err(_) => (
                    Err(ProviderError::new(
                        ProviderErrorKind::Timeout,
                        "TIMEOUT",
                        format!("no answer within {:.1}s", timeout.as_secs_f64()),
                    )),
                    Vec::new(),
                    Vec::new(),
                ),
            };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let now = now_millis();
        let transition = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            match &result {
                Ok(_) => slot.breaker.on_success(&cfg, permit, now),
                Err(e) if e.kind.counts_as_failure() => slot.breaker.on_failure(&cfg, permit, now),
                Err(_) => {
                    slot.breaker.release(permit);
                    None
                }
            }
        };
        // The caller's own mistakes say nothing of the strategy's performance.
        if !matches!(&result, Err(e) if !e.kind.counts_as_failure()) {
            entry
                .runtime
                .window
                .lock()
                .expect("window lock")
                .record(result.is_ok(), ms);
        }
        let error = result
            .as_ref()
            .err()
            .map(|e| (e.code.as_str(), e.message.as_str()));
        self.metrics
            .record(name, op.kind().as_str(), now, result.is_ok(), ms, error);
        self.events.emit(
            EventKind::Operation,
            Some(name),
            json!({
                "operation_type": op.kind(),
                "success": result.is_ok(),
                "response_time_ms": ms,
                "error_code": result.as_ref().err().map(|e| e.code.clone()),
            }),
        );
        if let Some(t) = transition {
            self.record_transition(entry, t).await;
        }
        let mut attempt = Attempt::of(name, &result, ms);
        attempt.members = members;
        attempt.contributors = contributors;
        (attempt, result)
    }

    /// Persists a breaker transition and emits its event.
    pub(super) async fn record_transition(&self, entry: &StrategyEntry, t: Transition) {
        let row = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            slot.last_reason = Some(t.reason.clone());
            CircuitRow {
                breaker: slot.breaker.clone(),
                last_reason: slot.last_reason.clone(),
            }
        };
        tracing::warn!(strategy = entry.name(), from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "circuit transition");
        if let Err(e) = self.store.save_circuit(entry.name(), &row).await {
            tracing::error!(strategy = entry.name(), error = %e, "cannot persist circuit state");
        }
        self.events.emit(
            EventKind::CircuitTransition,
            Some(entry.name()),
            json!({"from": t.from, "to": t.to, "at": rfc3339(t.at), "reason": t.reason}),
        );
    }

    /// Records a health observation: cached, persisted, and an event when the state changes.
    pub async fn set_health(&self, entry: &StrategyEntry, health: HealthStatus) -> AppResult<()> {
        let previous = std::mem::replace(
            &mut *entry.runtime.health.lock().expect("health lock"),
            health.clone(),
        );
        let changed = previous.state != health.state;
        self.store
            .save_health(entry.name(), &health, changed)
            .await?;
        if changed {
            self.events.emit(
                EventKind::HealthChange,
                Some(entry.name()),
                json!({"from": previous.state, "to": health.state, "source": health.source, "message": health.status_message}),
            );
        }
        Ok(())
    }

    /// Background health check of one strategy: HEALTH_CHECK with a timeout and retries. A
    /// failure counts against a closed circuit; in half open the check is a probe whose outcome
    /// closes or re-opens it; an open circuit is left to its recovery timer.
    pub async fn check_health(&self, entry: &Arc<StrategyEntry>) -> HealthStatus {
        let settings = self.settings();
        let timeout = Duration::from_secs_f64(settings.health_check_timeout);
        let mut outcome = Err(ProviderError::new(
            ProviderErrorKind::Internal,
            "NOT_RUN",
            "not run",
        ));
        let mut ms = 0.0;
        for _ in 0..=settings.health_check_retries {
            let started = Instant::now();
            outcome = match tokio::time::timeout(timeout, entry.provider.health()).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::new(
                    ProviderErrorKind::Timeout,
                    "TIMEOUT",
                    format!(
                        "health check took longer than {:.1}s",
                        timeout.as_secs_f64()
                    ),
                )),
            };
            ms = started.elapsed().as_secs_f64() * 1000.0;
            if outcome.is_ok() {
                break;
            }
        }
        let now = now_millis();
        let error = outcome
            .as_ref()
            .err()
            .map(|e| (e.code.as_str(), e.message.as_str()));
        self.metrics.record(
            entry.name(),
            OperationType::HealthCheck.as_str(),
            now,
            outcome.is_ok(),
            ms,
            error,
        );
        let health = match &outcome {
            Ok(report) => HealthStatus {
                state: HealthState::Healthy,
                status_message: Some(
                    report
                        .status_message
                        .clone()
                        .unwrap_or_else(|| "health check passed".into()),
                ),
                error_details: None,
                source: "health_check".into(),
                checked_at: Some(now),
                response_time_ms: Some(ms),
            },
            Err(e) => HealthStatus {
                state: HealthState::Unhealthy,
                status_message: Some(e.message.clone()),
                error_details: Some(json!({"error_code": e.code, "kind": e.kind})),
                source: "health_check".into(),
                checked_at: Some(now),
                response_time_ms: Some(ms),
            },
        };
        if let Err(e) = self.set_health(entry, health.clone()).await {
            tracing::error!(strategy = entry.name(), error = %e, "cannot persist health");
        }
        let cfg = self.breaker_config();
        let transition = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            let b = &mut slot.breaker;
            let mut t = b.tick(&cfg, now);
            match (b.state, outcome.is_ok()) {
                (crate::strategy::CircuitState::Closed, false) => {
                    if let Ok(p) = b.try_acquire(&cfg, now).0 {
                        t = b.on_failure(&cfg, p, now).or(t);
                    }
                }
                (crate::strategy::CircuitState::HalfOpen, ok) => {
                    if let Ok(p) = b.try_acquire(&cfg, now).0 {
                        t = if ok {
                            b.on_success(&cfg, p, now)
                        } else {
                            b.on_failure(&cfg, p, now)
                        }
                        .or(t);
                    }
                }
                _ => {}
            }
            t
        };
        if let Some(t) = transition {
            self.record_transition(entry, t).await;
        }
        health
    }

    /// Moves open circuits whose recovery timeout has passed to half open.
    pub async fn tick_breakers(&self) {
        let cfg = self.breaker_config();
        for entry in self.registry.all() {
            let t = entry
                .runtime
                .breaker
                .lock()
                .expect("breaker lock")
                .breaker
                .tick(&cfg, now_millis());
            if let Some(t) = t {
                self.record_transition(&entry, t).await;
            }
        }
    }

    pub async fn flush_metrics(&self) {
        if let Err(e) = self.metrics.flush(&self.store).await {
            tracing::error!(error = %e, "cannot flush metrics; kept for the next try");
        }
    }

    pub async fn prune_metrics(&self) {
        let cutoff =
            now_millis().div_euclid(60_000) - i64::from(super::metrics::RETENTION_HOURS) * 60;
        match self.store.prune_metric_buckets(cutoff).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old metric buckets"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot prune metric buckets"),
        }
    }
}

/// The engine as composite strategies see it. Weak, so that providers held by the engine do
/// not keep it alive.
struct EngineInvoker(Weak<Engine>);

#[async_trait]
impl MemberInvoker for EngineInvoker {
    async fn invoke(
        &self,
        strategy: &str,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let refuse = |kind, code: &str, message: String| {
            let result = Err(ProviderError::new(kind, code, message));
            (Attempt::of(strategy, &result, 0.0), result)
        };
        let Some(engine) = self.0.upgrade() else {
            return refuse(
                ProviderErrorKind::Internal,
                "SHUTTING_DOWN",
                "the service is shutting down".into(),
            );
        };
        let Some(entry) = engine.registry.get(strategy) else {
            return refuse(
                ProviderErrorKind::Internal,
                "STRATEGY_NOT_FOUND",
                format!("member strategy '{strategy}' is not registered"),
            );
        };
        if !entry.spec.enabled {
            return refuse(
                ProviderErrorKind::Unsupported,
                "STRATEGY_DISABLED",
                format!("member strategy '{strategy}' is disabled"),
            );
        }
        let timeout =
            timeout.unwrap_or_else(|| Duration::from_secs_f64(engine.settings().operation_timeout));
        let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
        engine.call(&entry, op, timeout, guard).await
    }

    fn candidate(&self, strategy: &str) -> Option<Candidate> {
        let engine = self.0.upgrade()?;
        engine.registry.get(strategy).map(|e| e.candidate())
    }

    fn member_circuit_transition(&self, strategy: &str, member: &str, t: &Transition) {
        tracing::warn!(strategy, member, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "member circuit transition");
        if let Some(engine) = self.0.upgrade() {
            engine.events.emit(
                EventKind::CircuitTransition,
                Some(strategy),
                json!({"member": member, "from": t.from, "to": t.to, "at": rfc3339(t.at), "reason": t.reason}),
            );
        }
    }
}

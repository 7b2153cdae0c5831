//! The executor: runs one operation. It resolves a strategy (`strategy_override`, else the
//! active strategy, else the selection policy), checks the strategy's circuit breaker (an open
//! circuit never reaches the provider), calls the provider in a task of its own under a
//! deadline (a panic becomes a `PROVIDER_PANICKED` error), feeds the outcome to the breaker,
//! the outcome window, the metrics and the events, and on an error another strategy may not
//! have, goes down `fallback_strategies`. Composite strategies call their members through
//! `members::MemberCalls`, so the same accounting applies to every member call.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::json;
use tracing::Instrument;

use super::events::{EventBus, EventKind};
use super::metrics::MetricsRecorder;
use super::registry::{InFlightGuard, Registry, StrategyEntry};
use super::settings::Settings;
use super::{AppError, AppResult};
use crate::domain::{
    Attempt, AuditCause, EpochMillis, OperationType, Outcome, ProviderError, ProviderErrorKind,
    now_millis, rfc3339,
};
use crate::monitor::health::{self, Checker};
use crate::providers::{Operation, OperationOutput, ProviderDeps, StateShelf, Traced};
use crate::store::{CircuitRepo, Store, StoreResult};
use crate::strategy::{
    CircuitMode, ModeSetting, Selection, SelectionCriteria, SelectorState, Transition, selection,
};

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

/// What `active_strategy` says for operations without an override.
pub enum Active {
    /// Not set, or set to a name no longer registered: the selection policy decides.
    Unset,
    Use(Arc<StrategyEntry>),
    /// Set to a disabled strategy, which takes no new work: the selection policy decides.
    Disabled(String),
}

impl Active {
    /// Added to how a strategy was chosen when the selection policy stood in for it.
    pub fn note(&self) -> String {
        match self {
            Active::Disabled(name) => format!(" (active_strategy '{name}' is disabled)"),
            _ => String::new(),
        }
    }
}

struct Resolved {
    entry: Arc<StrategyEntry>,
    guard: InFlightGuard,
    selection: Option<Selection>,
    how: String,
}

/// Runs operations on the registry's strategies.
pub struct Executor {
    registry: Arc<Registry>,
    settings: Arc<Settings>,
    metrics: Arc<MetricsRecorder>,
    events: Arc<EventBus>,
    /// Where breaker transitions are kept.
    store: Store,
    selector: Mutex<SelectorState>,
}

impl Executor {
    /// An executor with an empty registry whose providers call members through it.
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        metrics: Arc<MetricsRecorder>,
        events: Arc<EventBus>,
    ) -> Arc<Self> {
        let seed = settings.effective().random_seed;
        Arc::new_cyclic(|me: &Weak<Executor>| Self {
            registry: Arc::new(Registry::new(ProviderDeps {
                store: store.clone(),
                invoker: Arc::new(members::MemberCalls(me.clone())),
                shelf: Arc::new(StateShelf::default()),
                events: Arc::clone(&events),
            })),
            settings,
            metrics,
            events,
            store,
            selector: Mutex::new(SelectorState::new(seed)),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
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
        let settings = self.settings.effective();
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

    /// What `active_strategy` says now.
    pub fn active(&self) -> Active {
        let Some(name) = self.settings.effective().active_strategy else {
            return Active::Unset;
        };
        match self.registry.get(&name) {
            Some(entry) if entry.spec.enabled => Active::Use(entry),
            Some(_) => Active::Disabled(name),
            None => Active::Unset,
        }
    }

    /// Picks the first strategy for `op` by override, active strategy or selection. A
    /// disabled strategy is never chosen; named by the override, it runs only status polls and
    /// terminations (of the machines it holds).
    fn resolve(&self, op: OperationType, route: &Route) -> AppResult<Resolved> {
        if let Some(name) = &route.strategy {
            let entry = self.registry.entry(name)?;
            if !entry.runs_when_named(op) {
                return Err(AppError::Conflict(format!(
                    "strategy '{name}' is disabled: it takes no new work ({op}); only GET_INSTANCE_STATUS and TERMINATE_INSTANCES still run on it"
                )));
            }
            let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
            return Ok(Resolved {
                entry,
                guard,
                selection: None,
                how: "strategy_override".into(),
            });
        }
        let active = self.active();
        match &active {
            Active::Use(entry) => {
                return Ok(Resolved {
                    guard: InFlightGuard::new(Arc::clone(&entry.runtime)),
                    entry: Arc::clone(entry),
                    selection: None,
                    how: "active_strategy".into(),
                });
            }
            Active::Disabled(name) => {
                tracing::info!(strategy = %name, operation = %op, "active_strategy is disabled; the selection policy chooses");
            }
            Active::Unset => {}
        }
        let (selection, entry, guard) = self.select_reserving(op, route.criteria.as_ref())?;
        let how = format!("selection policy {}{}", selection.policy, active.note());
        Ok(Resolved {
            entry,
            guard,
            selection: Some(selection),
            how,
        })
    }

    /// Executes `op`: resolve a strategy, call it through its breaker, and on an error that
    /// allows it, go down the configured `fallback_strategies` (skipping those already tried,
    /// disabled ones and those that do not support the operation). An explicit
    /// `strategy_override` runs on that strategy only.
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
        let settings = self.settings.effective();
        let timeout = route
            .timeout
            .unwrap_or_else(|| Duration::from_secs_f64(settings.operation_timeout));
        tracing::debug!(strategy = entry.name(), chosen_by = %how, "strategy resolved");
        let may_fail_over = route.strategy.is_none() && settings.failover_enabled;
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
                tracing::debug!(
                    from = entry.name(),
                    to = next.as_ref().map(|(e, _)| e.name()),
                    "failing over down fallback_strategies"
                );
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

    /// Calls one strategy in a task of its own, so that a caller that goes away cannot leave a
    /// probe slot or an in-flight count taken.
    async fn call(
        self: &Arc<Self>,
        entry: &Arc<StrategyEntry>,
        op: &Operation,
        timeout: Duration,
        in_flight: InFlightGuard,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let executor = Arc::clone(self);
        let entry = Arc::clone(entry);
        let op = op.clone();
        let name = entry.name().to_string();
        // The caller's span (the operation's trace_id and debug flag) and the audit trail's
        // cause (route, token, HostFactory requests) go with the call.
        let cause = AuditCause::current();
        let task = tokio::spawn(
            cause
                .scope(async move {
                    let done = executor.call_inner(&entry, &op, timeout).await;
                    drop(in_flight);
                    done
                })
                .in_current_span(),
        );
        match task.await {
            Ok(done) => done,
            // The provider's panic is caught in `call_inner`; this is the executor's own.
            Err(e) => {
                let result = Err(panicked(e.to_string()));
                (Attempt::of(&name, &result, 0.0), result)
            }
        }
    }

    /// An operation the strategy does not support is refused, and the breaker checked (an open
    /// circuit never reaches the provider); then the provider under the deadline, then the
    /// outcome to breaker, window, metrics, events and, for a HEALTH_CHECK, the cached health.
    async fn call_inner(
        &self,
        entry: &Arc<StrategyEntry>,
        op: &Operation,
        timeout: Duration,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let cfg = entry.spec.breaker(&self.settings.breaker());
        let name = entry.name();
        let capabilities = entry.capabilities();
        if !capabilities.supports(op.kind()) {
            let supported: Vec<&str> = capabilities
                .supported_operations
                .iter()
                .map(|o| o.as_str())
                .collect();
            let message = format!(
                "strategy '{name}' does not support {}; it supports {}",
                op.kind(),
                supported.join(", ")
            );
            return self.refuse(
                name,
                op,
                ProviderError::new(
                    ProviderErrorKind::Unsupported,
                    "UNSUPPORTED_OPERATION",
                    message,
                ),
            );
        }
        let (decision, transition, forced_open) = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            let (decision, transition) = slot.breaker.try_acquire(&cfg, now_millis());
            (
                decision,
                transition,
                slot.breaker.mode == CircuitMode::ForcedOpen,
            )
        };
        if let Some(t) = transition {
            self.record_transition(entry, t).await;
        }
        let permit = match decision {
            Ok(p) => Some(p),
            // Status polls and terminations keep the machines a strategy made tracked and
            // returned: a circuit its failing creates (or a capacity shortage) opened says
            // nothing about them. They pass it without a permit, so they neither probe nor
            // close it. An operator's forced open stops them too.
            Err(_) if op.kind().tends_existing_machines() && !forced_open => None,
            Err(reason) => {
                let err =
                    ProviderError::new(ProviderErrorKind::CircuitOpen, "CIRCUIT_OPEN", reason);
                return self.refuse(name, op, err);
            }
        };
        tracing::debug!(strategy = name, operation = %op.kind(), timeout_s = timeout.as_secs_f64(), "calling the provider");
        let started = Instant::now();
        let traced = AssertUnwindSafe(entry.provider.execute_traced(op)).catch_unwind();
        let Traced {
            result,
            members,
            contributors,
        } = match tokio::time::timeout(timeout, traced).await {
            Ok(Ok(traced)) => traced,
            Ok(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                tracing::error!(strategy = name, operation = %op.kind(), panic = %message, "provider panicked");
                Traced::plain(Err(panicked(message)))
            }
            Err(_) => Traced::plain(Err(ProviderError::new(
                ProviderErrorKind::Timeout,
                "TIMEOUT",
                format!("no answer within {:.1}s", timeout.as_secs_f64()),
            ))),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let now = now_millis();
        let transition = permit.and_then(|permit| {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            match &result {
                Ok(_) => slot.breaker.on_success(&cfg, permit, now),
                Err(e) if e.kind.counts_as_failure() => slot.breaker.on_failure(&cfg, permit, now),
                Err(_) => {
                    slot.breaker.release(permit);
                    None
                }
            }
        });
        // The caller's own mistakes say nothing of the strategy's performance.
        if Outcome::of(&result).judges_provider() {
            entry
                .runtime
                .window
                .lock()
                .expect("window lock")
                .record(result.is_ok(), ms);
        }
        tracing::debug!(strategy = name, operation = %op.kind(), success = result.is_ok(), response_time_ms = ms, error_code = ?result.as_ref().err().map(|e| &e.code), "the provider answered");
        self.record_metric(name, op, now, &result, ms);
        self.record_health(entry, op, &result, now, ms).await;
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

    /// A call refused without reaching the provider: counted in the metrics with its code,
    /// never against the breaker or the selection window.
    fn refuse(
        &self,
        name: &str,
        op: &Operation,
        err: ProviderError,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        tracing::debug!(strategy = name, operation = %op.kind(), error_code = %err.code, reason = %err.message, "refused without calling the provider");
        let result = Err(err);
        self.record_metric(name, op, now_millis(), &result, 0.0);
        (Attempt::of(name, &result, 0.0), result)
    }

    /// Into the metrics, unless `metrics_collection_enabled` is off.
    fn record_metric(
        &self,
        name: &str,
        op: &Operation,
        at: EpochMillis,
        result: &Result<OperationOutput, ProviderError>,
        ms: f64,
    ) {
        if self.settings.metrics_collection_enabled() {
            self.metrics
                .record(name, op.kind().as_str(), at, result, ms);
        }
    }

    /// A HEALTH_CHECK's answer is an observation of the strategy's health, like a background
    /// check's (an outside report that holds stays). A caller's mistake says nothing of it.
    async fn record_health(
        &self,
        entry: &StrategyEntry,
        op: &Operation,
        result: &Result<OperationOutput, ProviderError>,
        at: EpochMillis,
        ms: f64,
    ) {
        let outcome = match (op, result) {
            (Operation::Health, Ok(OperationOutput::Health(report))) => Ok(report),
            (Operation::Health, Err(e)) if e.kind.counts_as_failure() => Err(e),
            _ => return,
        };
        let observed = health::observed(outcome, Checker::Operation, at, ms);
        health::record_unless_held(&self.store, &self.events, entry, observed).await;
    }

    /// Persists a breaker transition and emits its event.
    pub async fn record_transition(&self, entry: &StrategyEntry, t: Transition) {
        let row = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            slot.last_reason = Some(t.reason.clone());
            slot.row()
        };
        if let Err(e) = self.store.save_circuit(entry.name(), &row).await {
            tracing::error!(strategy = entry.name(), error = %e, "cannot persist circuit state");
        }
        self.announce_transition(entry, &t);
    }

    fn announce_transition(&self, entry: &StrategyEntry, t: &Transition) {
        tracing::warn!(strategy = entry.name(), from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "circuit transition");
        self.events.emit(
            EventKind::CircuitTransition,
            Some(entry.name()),
            json!({"from": t.from, "to": t.to, "at": rfc3339(t.at), "reason": t.reason}),
        );
    }

    /// An operator's decision on a strategy's circuit: applied, persisted (an error if it
    /// cannot be, since the operator must know it will not survive a restart), announced as a
    /// `circuit_control` event, and as a `circuit_transition` when the state changed.
    pub async fn set_circuit_mode(
        &self,
        entry: &StrategyEntry,
        mode: CircuitMode,
        setting: ModeSetting,
    ) -> StoreResult<()> {
        let reason = match &setting.reason {
            Some(why) => format!("{} by {}: {why}", mode.as_str(), setting.source),
            None => format!("{} by {}", mode.as_str(), setting.source),
        };
        let (transition, row) = {
            let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
            let t = slot.breaker.set_mode(mode, setting.at, reason.clone());
            if t.is_some() {
                slot.last_reason = Some(reason.clone());
            }
            slot.mode_set = Some(setting.clone());
            (t, slot.row())
        };
        self.store.save_circuit(entry.name(), &row).await?;
        tracing::warn!(strategy = entry.name(), mode = mode.as_str(), source = %setting.source, "circuit mode set");
        self.events.emit(
            EventKind::CircuitControl,
            Some(entry.name()),
            json!({"mode": mode, "source": setting.source, "reason": setting.reason,
                   "state": row.breaker.state, "at": rfc3339(setting.at)}),
        );
        if let Some(t) = transition {
            self.announce_transition(entry, &t);
        }
        Ok(())
    }
}

fn panicked(message: String) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Internal, "PROVIDER_PANICKED", message)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("the provider panicked: {what}")
}

mod members;

#[cfg(test)]
mod tests;

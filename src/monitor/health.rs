//! Health of one strategy: the checks (HEALTH_CHECK with a timeout and retries, its metric,
//! the breaker accounting), the first check of a strategy registered or changed, and the
//! recording of any health observation (cached, persisted, an event when the state changes),
//! a check's and an outside report's alike.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Notify;

use super::breakers;
use crate::app::events::{EventBus, EventKind};
use crate::app::{AppResult, Engine, StrategyEntry};
use crate::domain::{
    EpochMillis, HealthState, HealthStatus, OperationType, ProviderError, ProviderErrorKind,
    now_millis,
};
use crate::providers::HealthReport;
use crate::store::{HealthRepo, Store};

/// Longest `retry_after` an outside report may hold its mark for (one day).
pub const MAX_RETRY_AFTER_SECONDS: f64 = 86_400.0;

/// Who observed a strategy's health from inside the service; recorded as the status's
/// `source`. Anything else is an outside report (updateProviderHealth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// The background task: a round, or the first check of a strategy registered or changed.
    Background,
    /// An operator's `POST /api/v1/providers/{name}/health/check`.
    OnDemand,
    /// A HEALTH_CHECK run through executeProviderOperation.
    Operation,
}

impl Checker {
    const ALL: [Checker; 3] = [Checker::Background, Checker::OnDemand, Checker::Operation];

    pub const fn source(self) -> &'static str {
        match self {
            Checker::Background => "health_check",
            Checker::OnDemand => "on_demand_check",
            Checker::Operation => "health_check_operation",
        }
    }
}

/// Until when an outside report holds against the service's own checks: its
/// `error_details.retry_after` seconds after it was made. The service's own results hold
/// nothing.
pub fn held_until(h: &HealthStatus) -> Option<EpochMillis> {
    if Checker::ALL.iter().any(|c| c.source() == h.source) {
        return None;
    }
    let seconds = h.error_details.as_ref()?.get("retry_after")?.as_f64()?;
    Some(h.checked_at? + (seconds.clamp(0.0, MAX_RETRY_AFTER_SECONDS) * 1000.0) as i64)
}

/// Whether an outside report holds the strategy's health at `now`.
fn is_held(entry: &StrategyEntry, now: EpochMillis) -> bool {
    held_until(&entry.runtime.health()).is_some_and(|until| until > now)
}

/// One round of health checks over every strategy, concurrently. A strategy whose outside
/// report holds (see [`held_until`]) is left alone until the hold ends.
pub async fn check_all(engine: &Engine) {
    check_where(engine, |_| true).await;
}

/// The background checks of the strategies `wanted` names, concurrently, held ones left out.
async fn check_where(engine: &Engine, wanted: impl Fn(&str) -> bool) {
    let now = now_millis();
    let entries: Vec<_> = engine
        .entries()
        .into_iter()
        .filter(|e| wanted(e.name()))
        .filter(|e| {
            let held = is_held(e, now);
            if held {
                tracing::debug!(
                    strategy = e.name(),
                    "an outside health report holds; not checked"
                );
            }
            !held
        })
        .collect();
    futures::future::join_all(
        entries
            .iter()
            .map(|e| check(engine, e, Checker::Background)),
    )
    .await;
}

/// Strategies waiting for their first check after a registration or a change
/// (updateProviderStrategy), each with the time it is due: `health_check_initial_delay` after
/// the change, as a strategy from the file gets its first check that long after the start.
/// The background task runs them, so the answer to the change does not wait for a probe.
#[derive(Default)]
pub struct DueChecks {
    due: Mutex<HashMap<String, tokio::time::Instant>>,
    added: Notify,
}

impl DueChecks {
    /// Checks `name` once, `after` from now (a later change replaces an earlier time).
    pub fn schedule(&self, name: &str, after: Duration) {
        self.schedule_at(name, tokio::time::Instant::now() + after);
    }

    fn schedule_at(&self, name: &str, at: tokio::time::Instant) {
        self.due
            .lock()
            .expect("due checks lock")
            .insert(name.to_string(), at);
        // One stored permit: a change made while the monitor is busy is seen when it is done.
        self.added.notify_one();
    }

    /// When the earliest check is due.
    pub fn next_due(&self) -> Option<tokio::time::Instant> {
        self.due
            .lock()
            .expect("due checks lock")
            .values()
            .min()
            .copied()
    }

    /// Takes the names due at `now`.
    fn take_due(&self, now: tokio::time::Instant) -> Vec<String> {
        let mut due = self.due.lock().expect("due checks lock");
        let names: Vec<String> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &names {
            due.remove(n);
        }
        names
    }

    /// Completes after the next [`DueChecks::schedule`].
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

/// Runs the checks that are due (strategies since unregistered are skipped, held ones left
/// alone as in a round).
pub async fn check_due(engine: &Engine) {
    let names = engine.due_checks().take_due(tokio::time::Instant::now());
    if !names.is_empty() {
        check_where(engine, |n| names.iter().any(|d| d == n)).await;
    }
}

/// HEALTH_CHECK with `health_check_timeout`, tried `1 + health_check_retries` times.
async fn probe(
    entry: &StrategyEntry,
    timeout: Duration,
    retries: u32,
) -> (Result<HealthReport, ProviderError>, f64) {
    let mut outcome = Err(ProviderError::new(
        ProviderErrorKind::Internal,
        "NOT_RUN",
        "not run",
    ));
    let mut ms = 0.0;
    for _ in 0..=retries {
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
    (outcome, ms)
}

/// What one check saw, and whether it became the strategy's health (an outside report that
/// holds stays in force).
pub struct Checked {
    pub observed: HealthStatus,
    pub recorded: bool,
}

/// The health a check's outcome says.
pub fn observed(
    outcome: Result<&HealthReport, &ProviderError>,
    checker: Checker,
    at: EpochMillis,
    response_ms: f64,
) -> HealthStatus {
    let (state, status_message, error_details) = match outcome {
        Ok(report) => (
            HealthState::Healthy,
            report
                .status_message
                .clone()
                .unwrap_or_else(|| "health check passed".into()),
            None,
        ),
        Err(e) => (
            HealthState::Unhealthy,
            e.message.clone(),
            Some(json!({"error_code": e.code, "kind": e.kind})),
        ),
    };
    HealthStatus {
        state,
        status_message: Some(status_message),
        error_details,
        source: checker.source().into(),
        checked_at: Some(at),
        response_time_ms: Some(response_ms),
    }
}

/// A check of one strategy, the background's or an operator's: probe, metric, health
/// recorded unless an outside report holds, and the outcome to the breaker (see
/// [`breakers::account_check`]).
pub async fn check(engine: &Engine, entry: &Arc<StrategyEntry>, checker: Checker) -> Checked {
    let settings = engine.settings().effective();
    let timeout = Duration::from_secs_f64(settings.health_check_timeout);
    let (outcome, ms) = probe(entry, timeout, settings.health_check_retries).await;
    let now = now_millis();
    let health = observed(outcome.as_ref(), checker, now, ms);
    let recorded = record_unless_held(engine.store(), engine.events(), entry, health.clone()).await;
    // After the health, so that a check seen in the metrics has been decided on.
    if settings.metrics_collection_enabled {
        engine.metrics_recorder().record(
            entry.name(),
            OperationType::HealthCheck.as_str(),
            now,
            &outcome,
            ms,
        );
    }
    breakers::account_check(engine, entry, outcome.is_ok(), now).await;
    Checked {
        observed: health,
        recorded,
    }
}

/// Records the service's own observation unless an outside report holds (one that arrived
/// while the check ran too); answers whether it was recorded. A store failure is logged: the
/// cached health has changed already.
pub async fn record_unless_held(
    store: &Store,
    events: &EventBus,
    entry: &StrategyEntry,
    health: HealthStatus,
) -> bool {
    if is_held(entry, now_millis()) {
        return false;
    }
    if let Err(e) = record(store, events, entry, health).await {
        tracing::error!(strategy = entry.name(), error = %e, "cannot persist health");
    }
    true
}

/// Records a health observation: cached, persisted, and an event when the state changes.
pub async fn record(
    store: &Store,
    events: &EventBus,
    entry: &StrategyEntry,
    health: HealthStatus,
) -> AppResult<()> {
    let previous = std::mem::replace(
        &mut *entry.runtime.health.lock().expect("health lock"),
        health.clone(),
    );
    let changed = previous.state != health.state;
    store.save_health(entry.name(), &health, changed).await?;
    if changed {
        events.emit(
            EventKind::HealthChange,
            Some(entry.name()),
            json!({"from": previous.state, "to": health.state, "source": health.source, "message": health.status_message}),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(source: &str, details: serde_json::Value) -> HealthStatus {
        HealthStatus {
            state: HealthState::Unhealthy,
            status_message: None,
            error_details: Some(details),
            source: source.into(),
            checked_at: Some(1_000_000),
            response_time_ms: None,
        }
    }

    #[test]
    fn an_outside_report_holds_for_its_retry_after_and_a_check_never_does() {
        let held = report("monitoring_system", json!({"retry_after": 300}));
        assert_eq!(held_until(&held), Some(1_000_000 + 300_000));
        assert_eq!(
            held_until(&report("monitoring_system", json!({"ticket": 1}))),
            None
        );
        for checker in Checker::ALL {
            assert_eq!(
                held_until(&report(checker.source(), json!({"retry_after": 300}))),
                None
            );
        }
        let huge = report("api", json!({"retry_after": 1e308}));
        assert_eq!(held_until(&huge), Some(1_000_000 + 86_400_000));
    }

    #[test]
    fn a_due_check_is_taken_once_when_its_time_comes() {
        let due = DueChecks::default();
        assert_eq!(due.next_due(), None);
        let start = tokio::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        due.schedule_at("later", at(10));
        due.schedule_at("now", start);
        assert_eq!(due.next_due(), Some(start));
        assert_eq!(due.take_due(start), ["now"]);
        assert!(due.take_due(start).is_empty());
        // A later change moves the check.
        due.schedule_at("later", at(20));
        assert_eq!(due.next_due(), Some(at(20)));
        assert!(due.take_due(at(10)).is_empty());
        assert_eq!(due.take_due(at(20)), ["later"]);
        assert_eq!(due.next_due(), None);
    }
}

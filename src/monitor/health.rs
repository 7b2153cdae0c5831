//! Health of one strategy: the background check (HEALTH_CHECK with a timeout and retries, its
//! metric, the breaker accounting) and the recording of any health observation (cached,
//! persisted, an event when the state changes), the check's and an outside report's alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

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

/// Until when an outside report holds against the background checks: its
/// `error_details.retry_after` seconds after it was made. The background's own results hold
/// nothing.
pub fn held_until(h: &HealthStatus) -> Option<EpochMillis> {
    if h.source == CHECK_SOURCE {
        return None;
    }
    let seconds = h.error_details.as_ref()?.get("retry_after")?.as_f64()?;
    Some(h.checked_at? + (seconds.clamp(0.0, MAX_RETRY_AFTER_SECONDS) * 1000.0) as i64)
}

/// Who the background checks report as.
const CHECK_SOURCE: &str = "health_check";

/// One round of health checks over every strategy, concurrently. A strategy whose outside
/// report holds (see [`held_until`]) is left alone until the hold ends.
pub async fn check_all(engine: &Engine) {
    let now = now_millis();
    let entries: Vec<_> = engine
        .entries()
        .into_iter()
        .filter(|e| {
            let held = held_until(&e.runtime.health()).is_some_and(|until| until > now);
            if held {
                tracing::debug!(
                    strategy = e.name(),
                    "an outside health report holds; not checked"
                );
            }
            !held
        })
        .collect();
    futures::future::join_all(entries.iter().map(|e| check(engine, e))).await;
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

/// The background health check of one strategy: probe, metric, health recorded, and the
/// outcome to the breaker (see [`breakers::account_check`]).
pub async fn check(engine: &Engine, entry: &Arc<StrategyEntry>) -> HealthStatus {
    let settings = engine.settings().effective();
    let timeout = Duration::from_secs_f64(settings.health_check_timeout);
    let (outcome, ms) = probe(entry, timeout, settings.health_check_retries).await;
    let now = now_millis();
    engine.metrics_recorder().record(
        entry.name(),
        OperationType::HealthCheck.as_str(),
        now,
        &outcome,
        ms,
    );
    let (state, status_message, error_details) = match &outcome {
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
    let health = HealthStatus {
        state,
        status_message: Some(status_message),
        error_details,
        source: CHECK_SOURCE.into(),
        checked_at: Some(now),
        response_time_ms: Some(ms),
    };
    // An outside report that arrived while this check ran still holds.
    let held = held_until(&entry.runtime.health()).is_some_and(|until| until > now);
    if !held && let Err(e) = record(engine.store(), engine.events(), entry, health.clone()).await {
        tracing::error!(strategy = entry.name(), error = %e, "cannot persist health");
    }
    breakers::account_check(engine, entry, outcome.is_ok(), now).await;
    health
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
        assert_eq!(
            held_until(&report(CHECK_SOURCE, json!({"retry_after": 300}))),
            None
        );
        let huge = report("api", json!({"retry_after": 1e308}));
        assert_eq!(held_until(&huge), Some(1_000_000 + 86_400_000));
    }
}

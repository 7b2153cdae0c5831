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
    HealthState, HealthStatus, OperationType, ProviderError, ProviderErrorKind, now_millis,
};
use crate::providers::HealthReport;
use crate::store::{HealthRepo, Store};

/// One round of health checks over every strategy, concurrently.
pub async fn check_all(engine: &Engine) {
    let entries = engine.entries();
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
    let error = outcome
        .as_ref()
        .err()
        .map(|e| (e.code.as_str(), e.message.as_str()));
    engine.metrics_recorder().record(
        entry.name(),
        OperationType::HealthCheck.as_str(),
        now,
        outcome.is_ok(),
        ms,
        error,
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
        source: "health_check".into(),
        checked_at: Some(now),
        response_time_ms: Some(ms),
    };
    if let Err(e) = record(engine.store(), engine.events(), entry, health.clone()).await {
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

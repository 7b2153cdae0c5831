//! Service routes outside /api/v1 (liveness, readiness, Prometheus metrics) and the event stream.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio_stream::wrappers::BroadcastStream;
use utoipa::ToSchema;

use super::error::Problem;
use crate::domain::HealthState;
use crate::state::AppState;
use crate::strategy::CircuitState;
use crate::tasks::TaskRestart;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "version": "0.1.0", "uptime_seconds": 3600}))]
pub struct Liveness {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, body = Liveness)))]
pub async fn health(State(state): State<AppState>) -> Json<Liveness> {
    Json(Liveness {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: &'static str,
    database: String,
    strategies: usize,
    /// Background tasks that panicked and were started again.
    restarted: Vec<TaskRestart>,
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, body = Readiness), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, Problem> {
    let mut dead = state.tasks.dead();
    let restarted = state.tasks.restarts();
    dead.extend(
        restarted
            .iter()
            .filter(|r| r.down)
            .map(|r| format!("{} panicked ({}), starting again", r.task, r.last_reason)),
    );
    if !dead.is_empty() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            format!("background task gone: {}", dead.join("; ")),
        ));
    }
    match state.engine.store().ready().await {
        Ok(()) => Ok(Json(Readiness {
            status: "ready",
            database: "ok".into(),
            strategies: state.engine.entries().len(),
            restarted,
        })),
        Err(e) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "Not ready",
            e,
        )),
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition: operation counters and strategy gauges.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String,
        example = json!("ohfp_operations_total{strategy=\"sim-primary\",operation=\"HEALTH_CHECK\",outcome=\"success\"} 12\nohfp_circuit_state{strategy=\"sim-primary\"} 0\n"))))]
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let lifetime = state.engine.metrics_recorder().lifetime();
    out.push_str("# HELP ohfp_operations_total Provider operations by strategy, operation type and outcome (success, failure, caller_error, rejected).\n");
    out.push_str("# TYPE ohfp_operations_total counter\n");
    for ((strategy, op, outcome), (n, _)) in &lifetime {
        let outcome = outcome.as_str();
        let _ = writeln!(
            out,
            "ohfp_operations_total{{strategy=\"{}\",operation=\"{op}\",outcome=\"{outcome}\"}} {n}",
            label(strategy)
        );
    }
    out.push_str("# HELP ohfp_operation_seconds_total Time spent in provider operations.\n");
    out.push_str("# TYPE ohfp_operation_seconds_total counter\n");
    for ((strategy, op, outcome), (_, secs)) in &lifetime {
        let outcome = outcome.as_str();
        let _ = writeln!(
            out,
            "ohfp_operation_seconds_total{{strategy=\"{}\",operation=\"{op}\",outcome=\"{outcome}\"}} {secs}",
            label(strategy)
        );
    }
    out.push_str("# HELP ohfp_strategy_in_flight Operations in flight per strategy.\n# TYPE ohfp_strategy_in_flight gauge\n");
    out.push_str("# HELP ohfp_strategy_healthy 1 healthy, 0 unhealthy, -1 unknown.\n# TYPE ohfp_strategy_healthy gauge\n");
    out.push_str("# HELP ohfp_circuit_state 0 closed, 1 half open, 2 open.\n# TYPE ohfp_circuit_state gauge\n");
    for e in state.engine.entries() {
        let name = label(e.name());
        let health = match e.runtime.health().state {
            HealthState::Healthy => 1,
            HealthState::Unhealthy => 0,
            HealthState::Unknown => -1,
        };
        let circuit = match e
            .runtime
            .breaker
            .lock()
            .expect("breaker lock")
            .breaker
            .state
        {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        let _ = writeln!(
            out,
            "ohfp_strategy_in_flight{{strategy=\"{name}\"}} {}",
            e.runtime.in_flight.load(Ordering::SeqCst)
        );
        let _ = writeln!(out, "ohfp_strategy_healthy{{strategy=\"{name}\"}} {health}");
        let _ = writeln!(out, "ohfp_circuit_state{{strategy=\"{name}\"}} {circuit}");
    }
    let _ = writeln!(
        out,
        "# TYPE ohfp_uptime_seconds gauge\nohfp_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Follow the event stream (server-sent events): selections, operations, health changes,
/// circuit transitions, registrations and configuration changes, as they happen.
#[utoipa::path(get, path = "/api/v1/events", tag = "providers", operation_id = "streamProviderEvents",
    responses((status = 200, description = "text/event-stream of `Event` objects", content_type = "text/event-stream",
        body = crate::app::events::Event)))]
pub async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(state.engine.events().subscribe())
        .filter_map(|item| async move {
            match item {
                Ok(event) => SseEvent::default()
                    .event("provider")
                    .json_data(&event)
                    .ok()
                    .map(Ok),
                // A slow follower skips what it missed, with a note.
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    Some(Ok(SseEvent::default().event("lagged").data(n.to_string())))
                }
            }
        })
        .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

//! The status snapshot: every strategy's health, circuit and numbers, the active alerts and
//! the HostFactory requests in flight, in one answer. The status page and `ohfp monitor` render
//! it, then follow the event stream from its `last_event_id`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::queries::{MetricsQuery, StrategyMetrics};
use super::{AppResult, Engine};
use crate::domain::{Alert, HealthState};
use crate::hostfactory::HostFactory;
use crate::hostfactory::views::RequestInFlight;
use crate::store::{AlertRepo, Backend};
use crate::strategy::{CircuitMode, CircuitState};

/// The window of the snapshot's numbers: getProviderMetrics' default.
const WINDOW_HOURS: u32 = 24;

/// One registered strategy. `operations`, `success_rate` and `p95_ms` are getProviderMetrics'
/// `totals` over the same window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StrategyStatus {
    pub name: String,
    /// The provider type, or the composite's kind.
    #[serde(rename = "type")]
    pub provider_type: String,
    pub enabled: bool,
    pub health: HealthState,
    pub circuit: CircuitState,
    pub circuit_mode: CircuitMode,
    pub in_flight: u64,
    /// Every outcome: successes, failures, caller errors and rejections.
    pub operations: u64,
    /// Percent of successes among successes and failures; null when there were none.
    pub success_rate: Option<f64>,
    pub p95_ms: Option<f64>,
    /// The latest error in the window, as `CODE: message`.
    pub last_error: Option<String>,
}

impl StrategyStatus {
    fn of(engine: &Engine, m: StrategyMetrics) -> Option<Self> {
        let entry = engine.registry().get(&m.strategy_name)?;
        let live = m.live?;
        let last_error =
            m.errors
                .and_then(|e| e.last_error)
                .map(|e| match (&e["code"], &e["message"]) {
                    (Value::String(code), Value::String(message)) => format!("{code}: {message}"),
                    _ => e.to_string(),
                });
        Some(Self {
            name: m.strategy_name,
            provider_type: entry.spec.provider_type.clone(),
            enabled: entry.spec.enabled,
            health: live.health,
            circuit: live.circuit.state,
            circuit_mode: live.circuit.mode,
            in_flight: live.in_flight,
            operations: m.totals.count,
            success_rate: m.totals.success_rate,
            p95_ms: m.totals.p95_response_time_ms,
            last_error,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"last_event_id": 1042, "window_hours": 24,
    "strategies": [{"name": "sim-primary", "type": "simulated", "enabled": true, "health": "healthy",
    "circuit": "closed", "circuit_mode": "auto", "in_flight": 0, "operations": 124,
    "success_rate": 98.33, "p95_ms": 50.0, "last_error": "THROTTLED: simulated throttling"}],
    "alerts": [{"id": 3, "rule": "breaker-open", "condition": "circuit_open", "strategy": "sim-secondary",
    "message": "circuit of sim-secondary is open", "raised_at": "2026-11-30T16:01:00.000Z",
    "cleared_at": null, "clear_message": null}],
    "requests": [{"request_id": "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713", "kind": "acquire",
    "template_id": "OnDemand-C5Large", "state": "in_progress", "message": "1 of 2 machine(s) ready.",
    "machines": 2, "machines_by_state": {"pending": 1, "running": 1},
    "created_at": "2026-11-30T16:05:00.000Z"}],
    "replica": {"id": "3f9a1c0b7e24", "backend": "postgres", "leader": true}}))]
pub struct StatusSnapshot {
    /// The newest event when the snapshot was taken: follow `/api/v1/events/stream` with
    /// `Last-Event-ID` set to it to miss nothing newer.
    pub last_event_id: u64,
    /// The window of the strategies' numbers, in hours.
    pub window_hours: u32,
    /// Registered strategies, as getProviderMetrics lists them.
    pub strategies: Vec<StrategyStatus>,
    /// Active alerts, oldest first, as listAlerts' `active`.
    pub alerts: Vec<Alert>,
    /// HostFactory requests whose getRequestStatus is `running`, oldest first.
    pub requests: Vec<RequestInFlight>,
    /// This process among the replicas.
    pub replica: ReplicaStatus,
}

/// Which process answered, and whether it runs the background work.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaStatus {
    /// Random at each start; the origin of the change notices this process sends.
    pub id: String,
    pub backend: Backend,
    /// Whether this process is the leader: always on SQLite.
    pub leader: bool,
}

impl Engine {
    /// The snapshot. The last event id is read first, so that whatever changes after the
    /// snapshot's reads comes as a newer event.
    pub async fn status(&self, hostfactory: &HostFactory) -> AppResult<StatusSnapshot> {
        let last_event_id = self.events().last_id();
        let report = self
            .metrics(
                None,
                &MetricsQuery {
                    time_range_hours: WINDOW_HOURS,
                    include_operation_breakdown: false,
                    include_error_details: true,
                },
            )
            .await?;
        let strategies = report
            .strategies
            .into_iter()
            .filter_map(|m| StrategyStatus::of(self, m))
            .collect();
        Ok(StatusSnapshot {
            last_event_id,
            window_hours: WINDOW_HOURS,
            strategies,
            alerts: self.store().active_alerts().await?,
            requests: hostfactory.requests_in_flight().await?,
            replica: ReplicaStatus {
                id: self.store().replica_id().to_string(),
                backend: self.store().backend(),
                leader: self.store().leadership().is_leader(),
            },
        })
    }
}

//! Shapes the commands and queries answer with (snake_case, as the REST surface speaks).

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::StrategyEntry;
use crate::domain::{Capabilities, HealthState, HealthStatus, is_secret_key, now_millis, rfc3339};
use crate::monitor::health;
use crate::store::HealthHistoryEntry;
use crate::strategy::{BreakerConfig, BreakerPatch, CircuitMode, CircuitState, RecentStats};

/// Circuit breaker state of one strategy.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CircuitView {
    pub state: CircuitState,
    pub consecutive_failures: u32,
    pub opened_at: Option<String>,
    pub last_transition_at: Option<String>,
    /// When an open circuit lets the next probe through.
    pub next_probe_at: Option<String>,
    pub last_reason: Option<String>,
    pub probes_in_flight: u32,
    /// `auto` (the breaker's rules decide), or `forced_open`/`forced_closed` by an operator.
    pub mode: CircuitMode,
    /// Who set the mode (setProviderCircuit's `source`), why and when; null when never set.
    pub mode_source: Option<String>,
    pub mode_reason: Option<String>,
    pub mode_set_at: Option<String>,
    /// The settings this circuit follows: the strategy's own `circuit_breaker` laid over the
    /// global ones.
    pub settings: BreakerConfig,
}

impl CircuitView {
    /// The circuit of `entry`, whose settings are its own laid over `global`.
    pub fn of(entry: &StrategyEntry, global: &BreakerConfig) -> Self {
        let cfg = entry.spec.breaker(global);
        let slot = entry.runtime.breaker.lock().expect("breaker lock");
        let b = &slot.breaker;
        Self {
            state: b.state,
            consecutive_failures: b.consecutive_failures,
            opened_at: b.opened_at.map(rfc3339),
            last_transition_at: b.last_transition_at.map(rfc3339),
            next_probe_at: b.retry_at(&cfg).map(rfc3339),
            last_reason: slot.last_reason.clone(),
            probes_in_flight: b.probes_in_flight,
            mode: b.mode,
            mode_source: slot.mode_set.as_ref().map(|m| m.source.clone()),
            mode_reason: slot.mode_set.as_ref().and_then(|m| m.reason.clone()),
            mode_set_at: slot.mode_set.as_ref().map(|m| rfc3339(m.at)),
            settings: cfg,
        }
    }
}

/// Health of one strategy with its circuit.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "sim-primary", "provider_type": "simulated", "is_healthy": true,
    "state": "healthy", "status_message": "health check passed", "error_details": null, "source": "health_check",
    "last_check": "2026-11-22T00:16:55.659Z", "response_time_ms": 12.3, "circuit": {"state": "closed",
    "consecutive_failures": 0, "opened_at": null, "last_transition_at": null, "next_probe_at": null,
    "last_reason": null, "probes_in_flight": 0, "mode": "auto", "mode_source": null,
    "mode_reason": null, "mode_set_at": null, "settings": {"enabled": true, "failure_threshold": 5,
    "recovery_timeout": 60.0, "half_open_max_calls": 1}}}))]
pub struct HealthView {
    pub strategy_name: String,
    pub provider_type: String,
    /// `null` until the first check.
    pub is_healthy: Option<bool>,
    pub state: HealthState,
    pub status_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
    pub source: String,
    pub last_check: Option<String>,
    pub response_time_ms: Option<f64>,
    /// Until when this outside report (updateProviderHealth with
    /// `error_details.retry_after`) holds: the service's own checks leave it alone until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
    pub circuit: CircuitView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<HealthHistoryEntry>>,
}

impl HealthView {
    pub fn of(entry: &StrategyEntry, global: &BreakerConfig) -> Self {
        let h = entry.runtime.health();
        let held_until = health::held_until(&h)
            .filter(|until| *until > now_millis())
            .map(rfc3339);
        Self {
            strategy_name: entry.spec.name.clone(),
            provider_type: entry.spec.provider_type.clone(),
            is_healthy: match h.state {
                HealthState::Healthy => Some(true),
                HealthState::Unhealthy => Some(false),
                HealthState::Unknown => None,
            },
            state: h.state,
            status_message: h.status_message,
            error_details: h.error_details,
            source: h.source,
            last_check: h.checked_at.map(rfc3339),
            response_time_ms: h.response_time_ms,
            held_until,
            circuit: CircuitView::of(entry, global),
            history: None,
        }
    }
}

/// What one check of a strategy saw.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckView {
    pub is_healthy: bool,
    pub status_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
    pub checked_at: Option<String>,
    pub response_time_ms: Option<f64>,
    /// Whether it became the strategy's health: not while an outside report holds.
    pub recorded: bool,
}

impl CheckView {
    pub fn of(observed: HealthStatus, recorded: bool) -> Self {
        Self {
            is_healthy: observed.state == HealthState::Healthy,
            status_message: observed.status_message,
            error_details: observed.error_details,
            checked_at: observed.checked_at.map(rfc3339),
            response_time_ms: observed.response_time_ms,
            recorded,
        }
    }
}

/// checkProviderHealth: the check just made, and the strategy's health in force after it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"check": {"is_healthy": true, "status_message": "simulated region sim-east-1 answers (0 live instances)",
    "error_details": null, "checked_at": "2026-11-22T00:16:55.659Z", "response_time_ms": 12.3, "recorded": true},
    "health": {"strategy_name": "sim-primary", "provider_type": "simulated", "is_healthy": true, "state": "healthy",
    "status_message": "simulated region sim-east-1 answers (0 live instances)", "error_details": null,
    "source": "on_demand_check", "last_check": "2026-11-22T00:16:55.659Z", "response_time_ms": 12.3,
    "circuit": {"state": "closed", "consecutive_failures": 0, "opened_at": null, "last_transition_at": null,
    "next_probe_at": null, "last_reason": null, "probes_in_flight": 0}}}))]
pub struct HealthCheckView {
    pub check: CheckView,
    /// As `GET /api/v1/providers/{name}/health` now answers: the check's result, or the
    /// outside report that holds (with `held_until`).
    pub health: HealthView,
}

/// A strategy's config with secret-looking values replaced.
pub fn redacted(config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .map(|(k, v)| {
            let v = match v {
                _ if is_secret_key(k) => Value::String("***".into()),
                Value::Object(inner) => Value::Object(redacted(inner)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// One registered strategy.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "sim-primary", "provider_type": "simulated", "enabled": true, "priority": 0,
    "weight": 70.0, "source": "config", "strategy_config": {"region": "sim-east-1", "latency_ms": [5, 20]},
    "capabilities": {"provider_type": "simulated", "supported_operations": ["CREATE_INSTANCES", "HEALTH_CHECK"],
    "features": {"simulated": true, "instances": true}, "limitations": {"max_live_instances": 500}},
    "health": "healthy", "circuit_state": "closed", "in_flight": 0,
    "recent": {"samples": 12, "success_rate": 100.0, "mean_response_ms": 14.2},
    "registered_at": "2026-11-22T00:10:00.000Z", "updated_at": "2026-11-22T00:10:00.000Z"}))]
pub struct StrategyView {
    pub strategy_name: String,
    pub provider_type: String,
    pub enabled: bool,
    pub priority: i64,
    pub weight: f64,
    /// `config` (defined by the configuration file) or `api` (registered at run time).
    pub source: String,
    /// Secret-looking values are shown as `***`.
    #[schema(value_type = Object)]
    pub strategy_config: Map<String, Value>,
    pub capabilities: Capabilities,
    /// This strategy's own circuit-breaker settings (laid over the global ones), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerPatch>,
    pub health: HealthState,
    pub circuit_state: CircuitState,
    pub in_flight: u64,
    pub recent: RecentStats,
    pub registered_at: String,
    pub updated_at: String,
}

impl StrategyView {
    pub fn of(entry: &StrategyEntry) -> Self {
        let c = entry.candidate();
        Self {
            strategy_name: entry.spec.name.clone(),
            provider_type: entry.spec.provider_type.clone(),
            enabled: entry.spec.enabled,
            priority: entry.spec.priority,
            weight: entry.spec.weight,
            source: entry.source.as_str().to_string(),
            strategy_config: redacted(&entry.spec.config),
            capabilities: c.capabilities,
            circuit_breaker: entry.spec.circuit_breaker,
            health: c.health,
            circuit_state: c.circuit,
            in_flight: c.in_flight,
            recent: c.recent,
            registered_at: rfc3339(entry.registered_at),
            updated_at: rfc3339(entry.updated_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let cfg = json!({"region": "x", "secret_access_key": "abc", "auth": {"api_key": "k", "user": "u"},
                         "key_name": "hf-key"});
        let out = redacted(cfg.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({"region": "x", "secret_access_key": "***",
            "auth": {"api_key": "***", "user": "u"}, "key_name": "hf-key"})
        );
    }
}

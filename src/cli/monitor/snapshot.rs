//! The status snapshot (`GET /api/v1/status`) as the monitor reads it: parsed once, here, into
//! typed values; the tables only format them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::config::ConditionKind;
use crate::domain::HealthState;
use crate::strategy::breaker::{CircuitMode, CircuitState};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    pub last_event_id: u64,
    pub strategies: Vec<StrategyStatus>,
    /// Active alerts, oldest first.
    pub alerts: Vec<ActiveAlert>,
    /// HostFactory requests in flight.
    pub requests: Vec<RequestInFlight>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StrategyStatus {
    pub name: String,
    /// The provider type or composition (`simulated`, `aws`, `load_balanced`, …): a label here.
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    pub health: HealthState,
    pub circuit: CircuitState,
    pub circuit_mode: CircuitMode,
    pub in_flight: u64,
    pub operations: u64,
    /// Percent, null before any operation counted.
    pub success_rate: Option<f64>,
    pub p95_ms: Option<f64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub condition: ConditionKind,
    pub strategy: Option<String>,
    pub message: String,
    #[serde(deserialize_with = "rfc3339")]
    pub raised_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestInFlight {
    pub request_id: String,
    pub kind: String,
    pub template_id: Option<String>,
    pub state: String,
    pub machines: u64,
    pub machines_by_state: BTreeMap<String, u64>,
    #[serde(deserialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| serde::de::Error::custom(format!("not an RFC 3339 time '{text}': {e}")))
}

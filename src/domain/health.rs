use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::UnknownValue;

/// Cached health of a strategy. `Unknown` until the first check: a new strategy is not
/// reported unhealthy just because nothing has looked at it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Unhealthy,
    Unknown,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unknown => "unknown",
        }
    }

    /// Eligible when selection requires health: anything not known to be unhealthy.
    pub fn is_usable(self) -> bool {
        self != HealthState::Unhealthy
    }
}

/// The words of [`HealthState::as_str`]; anything else is an error (an `unknown` state is
/// the word `unknown`, not whatever fails to parse).
impl FromStr for HealthState {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "healthy" => Ok(HealthState::Healthy),
            "unhealthy" => Ok(HealthState::Unhealthy),
            "unknown" => Ok(HealthState::Unknown),
            _ => Err(UnknownValue::new("health state", s)),
        }
    }
}

/// A health observation, from a probe, an operator or an external monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    pub state: HealthState,
    pub status_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
    /// Who reported it: `health_check`, `api`, or the `source` an external monitor gave.
    pub source: String,
    pub checked_at: Option<i64>,
    pub response_time_ms: Option<f64>,
}

impl HealthStatus {
    pub fn unknown() -> Self {
        Self {
            state: HealthState::Unknown,
            status_message: Some("not checked yet".into()),
            error_details: None,
            source: "none".into(),
            checked_at: None,
            response_time_ms: None,
        }
    }
}

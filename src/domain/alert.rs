//! An alert raised by a rule (see `crate::alerts`).

use serde::Serialize;
use utoipa::ToSchema;

use super::EpochMillis;
use super::event::{as_rfc3339, as_rfc3339_opt};
use crate::config::ConditionKind;

/// An alert being raised, before the store gives it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub rule: String,
    pub condition: ConditionKind,
    pub strategy: Option<String>,
    pub message: String,
    pub raised_at: EpochMillis,
}

/// Raised once, cleared once; active while `cleared_at` is null.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 7, "rule": "circuit-open", "condition": "circuit_open",
    "strategy": "sim-primary", "message": "circuit of sim-primary is open",
    "raised_at": "2026-11-30T14:00:00.000Z", "cleared_at": null, "clear_message": null}))]
pub struct Alert {
    pub id: u64,
    pub rule: String,
    #[schema(value_type = String)]
    pub condition: ConditionKind,
    /// The strategy it concerns; null for service-wide conditions.
    pub strategy: Option<String>,
    pub message: String,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String)]
    pub raised_at: EpochMillis,
    #[serde(serialize_with = "as_rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub cleared_at: Option<EpochMillis>,
    pub clear_message: Option<String>,
}

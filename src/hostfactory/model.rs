//! The HostFactory lifecycle's own model: requests (acquire and return) and the machines they
//! hold. The store saves and reads these; the service, the reconciler and the views work on
//! them. Every enum here parses only its own words: an unknown stored value is an error.

use std::str::FromStr;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{EpochMillis, MachineState, ProvisioningApi, UnknownValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Acquire,
    Return,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Acquire => "acquire",
            RequestKind::Return => "return",
        }
    }
}

impl FromStr for RequestKind {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "acquire" => Ok(RequestKind::Acquire),
            "return" => Ok(RequestKind::Return),
            _ => Err(UnknownValue::new("request kind", s)),
        }
    }
}

/// Where a request is in its life. `Pending` and `Provisioning` belong to acquire requests
/// before their machines are known; `Done`/`Failed` are final for the provisioning step only:
/// the HostFactory status is always derived from the machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Provisioning,
    InProgress,
    Done,
    Failed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Provisioning => "provisioning",
            RequestState::InProgress => "in_progress",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
        }
    }
}

impl FromStr for RequestState {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(RequestState::Pending),
            "provisioning" => Ok(RequestState::Provisioning),
            "in_progress" => Ok(RequestState::InProgress),
            "done" => Ok(RequestState::Done),
            "failed" => Ok(RequestState::Failed),
            _ => Err(UnknownValue::new("request state", s)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HfRequest {
    pub request_id: String,
    pub kind: RequestKind,
    pub template_id: Option<String>,
    pub template: Option<Value>,
    pub requested_count: i64,
    pub provider_name: Option<String>,
    pub strategy: Option<String>,
    pub state: RequestState,
    pub message: String,
    pub resource_id: Option<String>,
    pub provider_api: Option<ProvisioningApi>,
    pub attempts: i64,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
    /// When the client that made it was first seen holding its id (see [`Caller`]); an acquire
    /// request unclaimed for too long is cancelled (its answer was lost).
    pub claimed_at: Option<EpochMillis>,
}

impl HfRequest {
    /// A new return request (`ret-…`) for `count` machines.
    pub fn new_return(count: i64, state: RequestState, now: EpochMillis) -> Self {
        HfRequest {
            request_id: format!("ret-{}", uuid::Uuid::new_v4()),
            kind: RequestKind::Return,
            template_id: None,
            template: None,
            requested_count: count,
            provider_name: None,
            strategy: None,
            state,
            message: String::new(),
            resource_id: None,
            provider_api: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
            claimed_at: None,
        }
    }
}

/// Who made a request, or asks about one. HostFactory claims an acquire request by naming it
/// in getRequestStatus; an operator's request is claimed when made (the operator reads its 202).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    HostFactory,
    Operator,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HfMachine {
    pub machine_id: String,
    pub request_id: String,
    pub template_id: Option<String>,
    pub strategy: String,
    pub state: MachineState,
    pub failed: bool,
    /// Seen running at least once: HostFactory got it, whatever happens to it later.
    pub delivered: bool,
    pub message: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub private_dns: Option<String>,
    pub instance_type: Option<String>,
    pub price_type: Option<String>,
    pub launch_time: Option<i64>,
    pub resource_id: Option<String>,
    pub provider_api: Option<ProvisioningApi>,
    pub reclaim_notice: Option<String>,
    pub reclaimed_at: Option<EpochMillis>,
    /// When the cloud said it takes the machine (a spot two-minute warning), if it said.
    pub reclaim_deadline: Option<EpochMillis>,
    pub return_request_id: Option<String>,
    pub return_sent_at: Option<EpochMillis>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_are_errors() {
        for s in [
            RequestState::Pending,
            RequestState::Provisioning,
            RequestState::InProgress,
            RequestState::Done,
            RequestState::Failed,
        ] {
            assert_eq!(s.as_str().parse::<RequestState>(), Ok(s));
        }
        for k in [RequestKind::Acquire, RequestKind::Return] {
            assert_eq!(k.as_str().parse::<RequestKind>(), Ok(k));
        }
        assert_eq!(
            "finished".parse::<RequestState>().unwrap_err().to_string(),
            "unknown request state 'finished'"
        );
        assert_eq!(
            "release".parse::<RequestKind>().unwrap_err().to_string(),
            "unknown request kind 'release'"
        );
    }
}

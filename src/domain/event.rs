//! Events: what the strategy layer and the HostFactory layer did, with when. Kept in the store
//! and followed live (see `crate::app::events`).

use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::ToSchema;

use super::{EpochMillis, rfc3339};

/// What happened. Stored by its name; an unknown stored name is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A strategy chosen for an operation.
    Selection,
    /// A provider call and its outcome.
    Operation,
    HealthChange,
    CircuitTransition,
    /// An operator forced a circuit open or closed, or handed it back to its rules.
    CircuitControl,
    /// A strategy registered, updated or unregistered (`detail.action`).
    Registration,
    /// Run-time strategy settings changed.
    Configuration,
    /// An AWS strategy parked an (instance type, subnet) pool that had no capacity.
    PoolParked,
    /// An AWS strategy's interruption queue said EC2 is taking an instance (or recommends
    /// rebalancing it): `detail.instance_id`, `type`, `deadline`, `reported`.
    ReclaimNotice,
    /// An AWS strategy's interruption queue could not be read; retried after `retry_in_seconds`.
    NoticeQueueFailed,
    /// An AWS strategy could not refresh its EC2 vCPU quotas; the last ones known stay.
    QuotaRefreshFailed,
    /// HostFactory asked for machines or returned some.
    RequestAccepted,
    /// A HostFactory request moved on before its end (`detail.state`: `provisioning`,
    /// `in_progress`); its end is `request_completed` or `request_failed`.
    RequestState,
    /// A machine of a HostFactory request changed state or failed (`detail.request_id`, and
    /// `detail.return_request_id` once returned).
    MachineState,
    /// A HostFactory request finished with every machine it asked for (or returned).
    RequestCompleted,
    RequestFailed,
    /// HostFactory never asked about an acquire request in time: it was cancelled and its
    /// machines returned (its answer was lost).
    RequestUnclaimed,
    AlertRaised,
    AlertCleared,
    /// A background task panicked and is being started again.
    TaskRestarted,
    /// This replica became the leader (`detail.leader` true) or stopped being it (false, with
    /// `detail.reason`); PostgreSQL replicas only.
    LeadershipChanged,
}

impl EventKind {
    pub const ALL: [EventKind; 21] = [
        EventKind::Selection,
        EventKind::Operation,
        EventKind::HealthChange,
        EventKind::CircuitTransition,
        EventKind::CircuitControl,
        EventKind::Registration,
        EventKind::Configuration,
        EventKind::PoolParked,
        EventKind::ReclaimNotice,
        EventKind::NoticeQueueFailed,
        EventKind::QuotaRefreshFailed,
        EventKind::RequestAccepted,
        EventKind::RequestState,
        EventKind::MachineState,
        EventKind::RequestCompleted,
        EventKind::RequestFailed,
        EventKind::RequestUnclaimed,
        EventKind::AlertRaised,
        EventKind::AlertCleared,
        EventKind::TaskRestarted,
        EventKind::LeadershipChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Selection => "selection",
            EventKind::Operation => "operation",
            EventKind::HealthChange => "health_change",
            EventKind::CircuitTransition => "circuit_transition",
            EventKind::CircuitControl => "circuit_control",
            EventKind::Registration => "registration",
            EventKind::Configuration => "configuration",
            EventKind::PoolParked => "pool_parked",
            EventKind::ReclaimNotice => "reclaim_notice",
            EventKind::NoticeQueueFailed => "notice_queue_failed",
            EventKind::QuotaRefreshFailed => "quota_refresh_failed",
            EventKind::RequestAccepted => "request_accepted",
            EventKind::RequestState => "request_state",
            EventKind::MachineState => "machine_state",
            EventKind::RequestCompleted => "request_completed",
            EventKind::RequestFailed => "request_failed",
            EventKind::RequestUnclaimed => "request_unclaimed",
            EventKind::AlertRaised => "alert_raised",
            EventKind::AlertCleared => "alert_cleared",
            EventKind::TaskRestarted => "task_restarted",
            EventKind::LeadershipChanged => "leadership_changed",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown event kind '{s}', expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Something that happened, with when; `id` grows with every event and is the SSE id.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 42, "at": "2026-11-22T00:16:55.659Z", "kind": "circuit_transition",
    "strategy": "sim-primary", "detail": {"from": "closed", "to": "open", "at": "2026-11-22T00:16:55.659Z",
    "reason": "5 consecutive failures"}}))]
pub struct Event {
    pub id: u64,
    #[serde(serialize_with = "as_rfc3339")]
    #[schema(value_type = String)]
    pub at: EpochMillis,
    pub kind: EventKind,
    pub strategy: Option<String>,
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// Serializes epoch milliseconds as RFC 3339 (for `serialize_with`).
pub(crate) fn as_rfc3339<S: Serializer>(at: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*at))
}

/// The same for an optional time.
pub(crate) fn as_rfc3339_opt<S: Serializer>(
    at: &Option<EpochMillis>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => as_rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_by_the_name_they_serialize_to() {
        for kind in EventKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("Selection".parse::<EventKind>().is_err());
    }
}

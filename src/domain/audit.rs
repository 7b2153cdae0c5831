//! The audit trail's record of one cloud-changing call, and what caused it. The cause travels
//! with the work as a task-local: the HTTP layer sets the route and token, the HostFactory layer
//! the request ids, and the executor carries it into the task a provider call runs in.

use std::future::Future;

use serde::Serialize;
use utoipa::ToSchema;

use super::EpochMillis;

/// What made a provider change the cloud.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditCause {
    /// The HostFactory requests served (an acquire request, or the return requests of the
    /// machines given back).
    pub request_ids: Vec<String>,
    /// `METHOD /path` of the operator route that called it.
    pub route: Option<String>,
    /// Name of the token of that call (never the token).
    pub token: Option<String>,
}

tokio::task_local! {
    static CAUSE: AuditCause;
}

impl AuditCause {
    /// The cause of the work running now (empty outside any: a background chore).
    pub fn current() -> Self {
        CAUSE.try_with(Clone::clone).unwrap_or_default()
    }

    /// Runs `work` with this cause.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CAUSE.scope(self, work).await
    }

    /// The current cause with `request_ids` added (those not already in it).
    pub fn current_with(request_ids: impl IntoIterator<Item = String>) -> Self {
        let mut cause = Self::current();
        for id in request_ids {
            if !cause.request_ids.contains(&id) {
                cause.request_ids.push(id);
            }
        }
        cause
    }
}

/// One cloud-changing call as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: u64,
    /// Epoch milliseconds of the answer.
    pub at: EpochMillis,
    pub strategy: String,
    /// The cloud API action, e.g. `RunInstances`, `TerminateInstances`, `ModifyFleet`.
    pub action: String,
    /// What it acted on or asked for (instance ids, a fleet, a group, a launch template, a
    /// pool and count).
    #[schema(value_type = Object)]
    pub target: serde_json::Value,
    /// The error code when the call failed; absent when it succeeded.
    pub error_code: Option<String>,
    pub request_ids: Vec<String>,
    pub route: Option<String>,
    pub token: Option<String>,
}

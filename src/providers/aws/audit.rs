//! The audit trail, per cloud call: each call that changes the cloud is recorded where it is
//! made, with its own action, target and answer, so the trail lists exactly what was asked of
//! AWS (a creation that fails over between pools, or a return that shrinks a fleet, terminates
//! and deletes, is several rows). The cause comes from the task-local [`AuditCause`].

use serde_json::Value;

use super::AwsProvider;
use crate::domain::{AuditCause, AuditRecord, ProviderError, now_millis};
use crate::store::AuditRepo;

impl AwsProvider {
    /// Records one cloud-changing call, whatever its answer. A row that cannot be written is
    /// logged as an error and does not fail the operation: the call happened either way.
    pub(super) async fn audit<T>(
        &self,
        action: &str,
        target: Value,
        answer: &Result<T, ProviderError>,
    ) {
        let cause = AuditCause::current();
        let record = AuditRecord {
            id: 0,
            at: now_millis(),
            strategy: self.strategy.clone(),
            action: action.to_string(),
            target,
            error_code: answer.as_ref().err().map(|e| e.code.clone()),
            request_ids: cause.request_ids,
            route: cause.route,
            token: cause.token,
        };
        if let Err(e) = self.store.insert_audit(&record).await {
            tracing::error!(strategy = %self.strategy, action, error = %e, target = %record.target, "cannot write the audit trail");
        }
    }
}

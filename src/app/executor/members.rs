//! The executor as composite strategies see it: member calls go through the same breaker,
//! deadline and accounting as any operation.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::Executor;
use crate::app::events::EventKind;
use crate::app::registry::InFlightGuard;
use crate::domain::{Attempt, ProviderError, ProviderErrorKind, rfc3339};
use crate::providers::{MemberInvoker, Operation, OperationOutput};
use crate::strategy::{BreakerConfig, Candidate, Transition};

/// The executor as composite strategies see it. Weak, so that providers held by the registry
/// do not keep the executor alive.
pub(super) struct MemberCalls(pub(super) Weak<Executor>);

#[async_trait]
impl MemberInvoker for MemberCalls {
    async fn invoke(
        &self,
        strategy: &str,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> (Attempt, Result<OperationOutput, ProviderError>) {
        let refuse = |kind, code: &str, message: String| {
            let result = Err(ProviderError::new(kind, code, message));
            (Attempt::of(strategy, &result, 0.0), result)
        };
        let Some(executor) = self.0.upgrade() else {
            return refuse(
                ProviderErrorKind::Internal,
                "SHUTTING_DOWN",
                "the service is shutting down".into(),
            );
        };
        let Some(entry) = executor.registry.get(strategy) else {
            return refuse(
                ProviderErrorKind::Internal,
                "STRATEGY_NOT_FOUND",
                format!("member strategy '{strategy}' is not registered"),
            );
        };
        if !entry.runs_when_named(op.kind()) {
            return refuse(
                ProviderErrorKind::Unsupported,
                "STRATEGY_DISABLED",
                format!(
                    "member strategy '{strategy}' is disabled: it takes no new work ({})",
                    op.kind()
                ),
            );
        }
        let timeout = timeout.unwrap_or_else(|| {
            Duration::from_secs_f64(executor.settings.effective().operation_timeout)
        });
        let guard = InFlightGuard::new(Arc::clone(&entry.runtime));
        executor.call(&entry, op, timeout, guard).await
    }

    fn candidate(&self, strategy: &str) -> Option<Candidate> {
        let executor = self.0.upgrade()?;
        executor.registry.get(strategy).map(|e| e.candidate())
    }

    fn breaker(&self, strategy: &str) -> Option<BreakerConfig> {
        let executor = self.0.upgrade()?;
        let entry = executor.registry.get(strategy)?;
        Some(entry.spec.breaker(&executor.settings.breaker()))
    }

    fn member_circuit_transition(&self, strategy: &str, member: &str, t: &Transition) {
        tracing::warn!(strategy, member, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "member circuit transition");
        if let Some(executor) = self.0.upgrade() {
            executor.events.emit(
                EventKind::CircuitTransition,
                Some(strategy),
                json!({"member": member, "from": t.from, "to": t.to, "at": rfc3339(t.at), "reason": t.reason}),
            );
        }
    }
}

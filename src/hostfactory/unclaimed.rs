//! Acquire requests HostFactory never asked about. A request saved but not answered (the service
//! stopped in between) is one whose id HostFactory never learnt: its machines would be paid for
//! and never used. Unclaimed for `unclaimed_request_timeout_seconds` of uptime, it is cancelled
//! and its machines go back through an ordinary return request.

use serde_json::json;

use super::model::{HfRequest, RequestKind, RequestState};
use super::service::HostFactory;
use crate::domain::{EpochMillis, EventKind};
use crate::store::HostFactoryRepo;

impl HostFactory {
    /// Requests made before this time and still unclaimed are due for cancelling; `None` while
    /// nothing can be due (the rule is off, or the process has not been up for the timeout).
    fn unclaimed_cutoff(&self, now: EpochMillis) -> Option<EpochMillis> {
        let timeout = (self.cfg.unclaimed_request_timeout_seconds * 1000.0) as i64;
        let cutoff = now - timeout;
        (timeout > 0 && self.started_at < cutoff).then_some(cutoff)
    }

    /// Whether `r` is an acquire request due for cancelling, as stored.
    pub(super) fn is_unclaimed(&self, r: &HfRequest, now: EpochMillis) -> bool {
        r.kind == RequestKind::Acquire
            && r.claimed_at.is_none()
            && self
                .unclaimed_cutoff(now)
                .is_some_and(|cutoff| r.created_at < cutoff)
    }

    /// Whether request `id` is still due for cancelling, read again from the store (HostFactory
    /// may have asked since the caller's copy was read).
    pub(super) async fn still_unclaimed(&self, id: &str, now: EpochMillis) -> bool {
        match self.store.hf_requests(&[id.to_string()]).await {
            Ok(found) => found.iter().any(|r| self.is_unclaimed(r, now)),
            Err(e) => {
                tracing::error!(request_id = id, error = %e, "cannot read the request again");
                false
            }
        }
    }

    /// Cancels the acquire requests that are due and hold something, returning their live
    /// machines: provisioned ones, and ended ones with live machines not being returned (a
    /// machine a fleet placed after its request was cancelled comes back by another return).
    /// Requests still being provisioned are left to [`provision`](Self::provision), which makes
    /// no machine for a request that is due; they are cancelled once provisioned.
    pub(super) async fn cancel_unclaimed(&self, now: EpochMillis) {
        let Some(cutoff) = self.unclaimed_cutoff(now) else {
            return;
        };
        let due = match self.store.unclaimed_requests(cutoff).await {
            Ok(due) => due,
            Err(e) => return tracing::error!(error = %e, "cannot read unclaimed requests"),
        };
        let seconds = self.cfg.unclaimed_request_timeout_seconds;
        for r in due {
            // Its count and state are set with the machines found, in the same transaction.
            let ret = HfRequest::new_return(0, RequestState::InProgress, now);
            let message = format!(
                "HostFactory never asked about this request within {seconds}s; it was cancelled and its machines returned ({}).",
                ret.request_id
            );
            match self
                .store
                .cancel_unclaimed(&r.request_id, &message, &ret)
                .await
            {
                Ok(Some(machines)) => {
                    tracing::warn!(request_id = %r.request_id, return_id = %ret.request_id,
                        machines = machines.len(), "request never asked about by HostFactory; cancelled and its machines returned");
                    self.engine.events().emit(
                        EventKind::RequestUnclaimed,
                        r.strategy.as_deref(),
                        json!({"request_id": r.request_id, "request_kind": r.kind.as_str(),
                            "template_id": r.template_id, "requested_count": r.requested_count,
                            "return_request_id": ret.request_id, "machines_returned": machines,
                            "message": message}),
                    );
                }
                // Claimed or ended since it was read.
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(request_id = %r.request_id, error = %e, "cannot cancel an unclaimed request")
                }
            }
        }
    }
}

//! Reclaim notices that providers received ahead of any status call (an AWS strategy's
//! interruption queue), applied to the tracked machines at the start of each reconciler round:
//! getReturnRequests lists them within a round of their arrival.

use super::model::HfMachine;
use super::service::HostFactory;
use crate::domain::EpochMillis;
use crate::store::HostFactoryRepo;

impl HostFactory {
    /// Marks the tracked machines the providers' notices name as reclaimed, in `tracked` and
    /// in the store. A notice about a machine HostFactory does not hold (untracked, or already
    /// being returned) changes nothing.
    pub(super) async fn apply_reclaim_notices(&self, tracked: &mut [HfMachine], now: EpochMillis) {
        let mut rows = Vec::new();
        for entry in self.engine.registry().all() {
            for notice in entry.provider.take_reclaim_notices() {
                let Some(m) = tracked.iter_mut().find(|m| {
                    m.machine_id == notice.instance_id
                        && m.strategy == entry.spec.name
                        && m.return_request_id.is_none()
                }) else {
                    continue;
                };
                m.reclaim_notice = Some(notice.notice);
                m.reclaimed_at = m.reclaimed_at.or(Some(now));
                m.reclaim_deadline = m.reclaim_deadline.or(notice.deadline);
                m.updated_at = now;
                self.reconcile_series.notice_applied(&entry.spec.name);
                rows.push(m.clone());
            }
        }
        if rows.is_empty() {
            return;
        }
        if let Err(e) = self.store.save_observations(&rows).await {
            tracing::error!(error = %e, "cannot save reclaim notices");
        }
    }
}

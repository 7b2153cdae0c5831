//! Retention: one prune round over finished HostFactory requests and their machines, simulated
//! instances terminated a while ago, old health history, old events and
//! alerts cleared long ago. Each rule deletes in batches of
//! `batch_size`, yielding between them, and stops after [`MAX_BATCHES`]: a large backlog is
//! worked off over several rounds instead of holding the database for long.

use std::future::Future;

use crate::config::RetentionConfig;
use crate::domain::EpochMillis;
use crate::store::{
    AlertRepo, AuditRepo, EventRepo, HealthRepo, HostFactoryRepo, SimInstanceRepo, StoreResult,
};

/// Most batches of one rule in one round.
pub const MAX_BATCHES: u32 = 20;

const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: f64 = 24.0 * HOUR_MS;

/// Rows one round deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub hostfactory_rows: u64,
    pub sim_instances: u64,
    pub health_history: u64,
    pub events: u64,
    pub alerts: u64,
    pub audit: u64,
}

/// `now` less `span` milliseconds.
fn before(now: EpochMillis, span: f64) -> EpochMillis {
    now - span as EpochMillis
}

/// Runs `step` until it deletes nothing, fails, or has run [`MAX_BATCHES`] times.
async fn in_batches<F, Fut>(what: &str, mut step: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<u64>>,
{
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        match step().await {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => {
                tracing::error!(error = %e, "cannot prune {what}; retrying next round");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    total
}

/// One round at `now`.
pub async fn prune<S>(store: &S, cfg: &RetentionConfig, now: EpochMillis) -> Pruned
where
    S: HostFactoryRepo + SimInstanceRepo + HealthRepo + EventRepo + AlertRepo + AuditRepo,
{
    let batch = cfg.batch_size;
    let hf_before = before(now, cfg.hostfactory_days * DAY_MS);
    let sim_before = before(now, cfg.sim_instance_hours * HOUR_MS);
    let health_before = before(now, cfg.health_history_days * DAY_MS);
    let events_before = before(now, cfg.events_days * DAY_MS);
    let alerts_before = before(now, cfg.alerts_days * DAY_MS);
    let audit_before = before(now, cfg.audit_days * DAY_MS);
    let pruned = Pruned {
        hostfactory_rows: in_batches("hostfactory requests", || async {
            Ok(store.prune_finished(hf_before, batch).await?.total())
        })
        .await,
        sim_instances: in_batches("simulated instances", || {
            store.prune_sim_instances(sim_before, batch)
        })
        .await,
        health_history: in_batches("health history", || {
            store.prune_health_history(health_before, cfg.health_history_per_strategy, batch)
        })
        .await,
        events: in_batches("events", || {
            store.prune_events(events_before, cfg.events_max, batch)
        })
        .await,
        alerts: in_batches("cleared alerts", || {
            store.prune_alerts(alerts_before, batch)
        })
        .await,
        audit: in_batches("audit trail", || store.prune_audit(audit_before, batch)).await,
    };
    if pruned != Pruned::default() {
        tracing::info!(
            hostfactory_rows = pruned.hostfactory_rows,
            sim_instances = pruned.sim_instances,
            health_history = pruned.health_history,
            events = pruned.events,
            alerts = pruned.alerts,
            audit = pruned.audit,
            "pruned rows past their retention"
        );
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditRecord, MachineState};
    use crate::hostfactory::model::{RequestKind, RequestState};
    use crate::store::tests::{machine, open, request};

    #[tokio::test]
    async fn a_round_applies_the_configured_ages_and_works_off_a_backlog_in_batches() {
        let (_dir, store) = open().await;
        let days_ago = |n: i64| 200 * DAY_MS as EpochMillis - n * DAY_MS as EpochMillis;
        let mut machines = Vec::new();
        for i in 0..5 {
            let id = format!("old-{i}");
            let r = request(&id, RequestKind::Acquire, RequestState::Done, days_ago(8));
            store.insert_hf_request(&r).await.unwrap();
            let m = machine(
                &format!("i-{i}"),
                &id,
                MachineState::Terminated,
                days_ago(8),
            );
            machines.push(m);
        }
        let young = request(
            "young",
            RequestKind::Acquire,
            RequestState::Done,
            days_ago(6),
        );
        store.insert_hf_request(&young).await.unwrap();
        store.save_observations(&machines).await.unwrap();
        // The audit trail: three calls past `audit_days` (90), one within.
        for age in [91, 92, 93, 89] {
            let call = AuditRecord {
                id: 0,
                at: days_ago(age),
                strategy: "aws".into(),
                action: "RunInstances".into(),
                target: serde_json::json!({}),
                error_code: None,
                request_ids: Vec::new(),
                route: None,
                token: None,
            };
            store.insert_audit(&call).await.unwrap();
        }
        let cfg = RetentionConfig {
            batch_size: 2,
            ..RetentionConfig::default()
        };
        let pruned = prune(&store, &cfg, days_ago(0)).await;
        assert_eq!(
            pruned.hostfactory_rows, 10,
            "five requests and five machines"
        );
        assert_eq!(pruned.audit, 3, "in batches of 2");
        let left = store
            .hf_requests(&["young".into(), "old-4".into()])
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].request_id, "young");
        assert_eq!(prune(&store, &cfg, days_ago(0)).await, Pruned::default());
    }
}

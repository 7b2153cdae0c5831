//! Each prune rule: what goes, what stays, and that one call deletes a bounded batch.

use super::{machine, open, request};
use crate::domain::{EpochMillis, HealthState, HealthStatus, MachineState};
use crate::hostfactory::model::{RequestKind, RequestState};
use crate::store::{HealthRepo, HfPruned, HostFactoryRepo, SimInstanceRepo, SimInstanceRow, Store};

const OLD: EpochMillis = 1_000;
const CUTOFF: EpochMillis = 10_000;
const RECENT: EpochMillis = 20_000;

async fn ids(store: &Store, table: &str, column: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT {column} FROM {table} ORDER BY {column}"))
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

async fn acquire(store: &Store, id: &str, state: RequestState, at: EpochMillis) {
    store
        .insert_hf_request(&request(id, RequestKind::Acquire, state, at))
        .await
        .unwrap();
}

#[tokio::test]
async fn finished_requests_go_with_their_machines_and_nothing_open_or_live_does() {
    let (_dir, store) = open().await;
    let mut machines = Vec::new();
    // Over, and its machine terminated long ago: goes.
    acquire(&store, "a-done", RequestState::Done, OLD).await;
    machines.push(machine("i-a", "a-done", MachineState::Terminated, OLD));
    // Failed before making anything: goes.
    acquire(&store, "a-failed", RequestState::Failed, OLD).await;
    // One machine still running: the request and both machines stay.
    acquire(&store, "a-live", RequestState::Done, OLD).await;
    machines.push(machine("i-b1", "a-live", MachineState::Terminated, OLD));
    machines.push(machine("i-b2", "a-live", MachineState::Running, OLD));
    // Open: stays, whatever its machines.
    acquire(&store, "a-open", RequestState::InProgress, OLD).await;
    machines.push(machine("i-c", "a-open", MachineState::Terminated, OLD));
    // Over recently: stays.
    acquire(&store, "a-recent", RequestState::Done, RECENT).await;
    machines.push(machine("i-d", "a-recent", MachineState::Terminated, RECENT));
    // A machine seen recently keeps its old request.
    acquire(&store, "a-touched", RequestState::Done, OLD).await;
    machines.push(machine(
        "i-g",
        "a-touched",
        MachineState::Terminated,
        RECENT,
    ));
    // Failed machines: gone once their termination was accepted, kept until then.
    acquire(&store, "a-fail-sent", RequestState::Done, OLD).await;
    machines.push(crate::hostfactory::model::HfMachine {
        failed: true,
        return_sent_at: Some(OLD),
        ..machine("i-e", "a-fail-sent", MachineState::Pending, OLD)
    });
    acquire(&store, "a-fail-unsent", RequestState::Done, OLD).await;
    machines.push(crate::hostfactory::model::HfMachine {
        failed: true,
        ..machine("i-f", "a-fail-unsent", MachineState::Pending, OLD)
    });
    // Returned long ago: the machine, its request and the return go; returned recently: stay.
    acquire(&store, "a-ret", RequestState::Done, OLD).await;
    machines.push(machine("i-h", "a-ret", MachineState::Terminated, OLD));
    acquire(&store, "a-ret2", RequestState::Done, OLD).await;
    machines.push(machine("i-i", "a-ret2", MachineState::Terminated, OLD));
    store.save_observations(&machines).await.unwrap();
    let ret = |id: &str, at| request(id, RequestKind::Return, RequestState::InProgress, at);
    store
        .insert_return_request(&ret("ret-1", OLD), &["i-h".into()])
        .await
        .unwrap();
    store
        .insert_return_request(&ret("ret-2", RECENT), &["i-i".into()])
        .await
        .unwrap();

    let pruned = store.prune_finished(CUTOFF, 100).await.unwrap();
    assert_eq!(
        pruned,
        HfPruned {
            machines: 3,
            requests: 5
        }
    );
    assert_eq!(
        ids(&store, "hf_requests", "request_id").await,
        [
            "a-fail-unsent",
            "a-live",
            "a-open",
            "a-recent",
            "a-ret2",
            "a-touched",
            "ret-2"
        ]
    );
    assert_eq!(
        ids(&store, "hf_machines", "machine_id").await,
        ["i-b1", "i-b2", "i-c", "i-d", "i-f", "i-g", "i-i"]
    );
    assert_eq!(
        store.prune_finished(CUTOFF, 100).await.unwrap(),
        HfPruned::default()
    );
}

#[tokio::test]
async fn finished_requests_are_pruned_in_bounded_batches() {
    let (_dir, store) = open().await;
    for id in ["a1", "a2", "a3"] {
        acquire(&store, id, RequestState::Done, OLD).await;
    }
    let mut machines = Vec::new();
    for (i, id) in ["a1", "a2", "a3"].iter().enumerate() {
        machines.push(machine(
            &format!("i-{i}"),
            id,
            MachineState::Terminated,
            OLD,
        ));
    }
    store.save_observations(&machines).await.unwrap();
    let first = store.prune_finished(CUTOFF, 2).await.unwrap();
    assert_eq!((first.machines, first.requests), (2, 2));
    assert_eq!(ids(&store, "hf_requests", "request_id").await, ["a3"]);
    assert_eq!(ids(&store, "hf_machines", "machine_id").await, ["i-2"]);
    assert_eq!(store.prune_finished(CUTOFF, 2).await.unwrap().total(), 2);
    assert_eq!(store.prune_finished(CUTOFF, 2).await.unwrap().total(), 0);
}

fn sim(id: &str, terminating_at: Option<EpochMillis>, shutdown_ms: i64) -> SimInstanceRow {
    SimInstanceRow {
        instance_id: id.into(),
        strategy: "sim".into(),
        template_id: "web".into(),
        instance_type: "c5.large".into(),
        request_id: None,
        tags: serde_json::Map::new(),
        private_ip: "10.0.0.4".into(),
        launched_at: OLD - 500,
        boot_ms: 100,
        terminating_at,
        shutdown_ms,
        reclaimed: false,
    }
}

#[tokio::test]
async fn simulated_instances_go_once_terminated_for_the_retention() {
    let (_dir, store) = open().await;
    store
        .insert_sim_instances(&[
            sim("i-live", None, 100),
            sim("i-gone", Some(OLD), 100),
            sim("i-gone2", Some(OLD + 1), 100),
            sim("i-gone3", Some(OLD + 2), 100),
            // Terminated before the cutoff but still shutting down at it.
            sim("i-stopping", Some(CUTOFF - 50), 1_000),
            sim("i-recent", Some(RECENT), 100),
        ])
        .await
        .unwrap();
    assert_eq!(store.prune_sim_instances(CUTOFF, 2).await.unwrap(), 2);
    assert_eq!(store.prune_sim_instances(CUTOFF, 2).await.unwrap(), 1);
    assert_eq!(store.prune_sim_instances(CUTOFF, 2).await.unwrap(), 0);
    assert_eq!(
        ids(&store, "sim_instances", "instance_id").await,
        ["i-live", "i-recent", "i-stopping"]
    );
}

fn health(at: EpochMillis) -> HealthStatus {
    HealthStatus {
        state: if at % 2 == 0 {
            HealthState::Healthy
        } else {
            HealthState::Unhealthy
        },
        status_message: None,
        error_details: None,
        source: "test".into(),
        checked_at: Some(at),
        response_time_ms: None,
    }
}

async fn history_of(store: &Store, strategy: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT at FROM health_history WHERE strategy = $1 ORDER BY at")
        .bind(strategy)
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn health_history_is_pruned_by_age_and_by_count() {
    let (_dir, store) = open().await;
    for at in 1..=6 {
        store.save_health("a", &health(at), true).await.unwrap();
    }
    for at in [20, 21] {
        store.save_health("b", &health(at), true).await.unwrap();
    }
    // By age: older than 3.
    assert_eq!(store.prune_health_history(3, 100, 100).await.unwrap(), 2);
    assert_eq!(history_of(&store, "a").await, [3, 4, 5, 6]);
    // By count, in batches of one per rule: the newest two of each strategy stay.
    assert_eq!(store.prune_health_history(0, 2, 1).await.unwrap(), 1);
    assert_eq!(store.prune_health_history(0, 2, 1).await.unwrap(), 1);
    assert_eq!(store.prune_health_history(0, 2, 1).await.unwrap(), 0);
    assert_eq!(history_of(&store, "a").await, [5, 6]);
    assert_eq!(history_of(&store, "b").await, [20, 21]);
    // The latest health is not history.
    assert_eq!(store.load_health().await.unwrap().len(), 2);
}

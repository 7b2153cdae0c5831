//! The store against a real SQLite file: typed reads, the reconciler's indexes, insert-only
//! registration. Retention has its own file. `open`, `request` and `machine` serve other
//! modules' tests too.

mod request_cache;
mod retention;
mod upsert;

use serde_json::json;
use tempfile::TempDir;

use super::hostfactory::{TO_TERMINATE, TRACKED};
use super::*;
use crate::config::StrategySpec;
use crate::domain::{EpochMillis, MachineState};
use crate::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};

pub(crate) async fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let path = path.to_str().unwrap();
    let store = Store::open(path, 5000, 2, SecretKey::load(None, path).unwrap())
        .await
        .unwrap();
    (dir, store)
}

pub(crate) fn request(
    id: &str,
    kind: RequestKind,
    state: RequestState,
    at: EpochMillis,
) -> HfRequest {
    HfRequest {
        request_id: id.into(),
        kind,
        template_id: Some("web".into()),
        template: Some(json!({"templateId": "web"})),
        requested_count: 1,
        provider_name: None,
        strategy: Some("sim".into()),
        state,
        message: String::new(),
        resource_id: None,
        provider_api: None,
        attempts: 0,
        created_at: at,
        updated_at: at,
        claimed_at: Some(at),
    }
}

pub(crate) fn machine(
    id: &str,
    request_id: &str,
    state: MachineState,
    at: EpochMillis,
) -> HfMachine {
    HfMachine {
        machine_id: id.into(),
        request_id: request_id.into(),
        strategy: "sim".into(),
        state,
        created_at: at,
        updated_at: at,
        ..HfMachine::default()
    }
}

/// Runs `sql` with the CHECK constraints off: they keep unknown words out of some columns, a
/// database written by something else may not have them.
async fn write_unchecked(store: &Store, sql: &str) {
    let mut conn = store.pool.acquire().await.unwrap();
    for statement in [
        "PRAGMA ignore_check_constraints = ON",
        sql,
        "PRAGMA ignore_check_constraints = OFF",
    ] {
        sqlx::query(statement).execute(&mut *conn).await.unwrap();
    }
}

/// The text of a `ColumnDecode` error, or a failure if it is another error.
fn column_error(e: sqlx::Error, column: &str) -> String {
    match &e {
        sqlx::Error::ColumnDecode { index, source } => {
            assert_eq!(index, column, "{e}");
            source.to_string()
        }
        other => panic!("expected a decode error on {column}, got {other:?}"),
    }
}

/// A store holding request `r1` in progress with its machine `i-1` in `state`.
async fn one_machine(state: MachineState) -> (TempDir, Store, HfMachine) {
    let (dir, store) = open().await;
    let r = request("r1", RequestKind::Acquire, RequestState::InProgress, 1);
    store.insert_hf_request(&r).await.unwrap();
    let m = machine("i-1", "r1", state, 1);
    store
        .save_observations(std::slice::from_ref(&m))
        .await
        .unwrap();
    (dir, store, m)
}

#[tokio::test]
async fn machine_state_is_stored_as_its_word_and_read_back_typed() {
    let (_dir, store, m) = one_machine(MachineState::ShuttingDown).await;
    let raw: String = sqlx::query_scalar("SELECT state FROM hf_machines")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(raw, "shutting-down");
    assert_eq!(store.hf_machines_of(&["r1".into()]).await.unwrap(), vec![m]);
}

#[tokio::test]
async fn unknown_stored_values_are_errors_naming_column_and_value() {
    let (_dir, store, _) = one_machine(MachineState::Running).await;
    write_unchecked(&store, "UPDATE hf_machines SET state = 'lost'").await;
    let e = store.hf_machines_to_track().await.unwrap_err();
    assert_eq!(column_error(e, "state"), "unknown machine state 'lost'");
    write_unchecked(
        &store,
        "UPDATE hf_machines SET state = 'running', failed = 7",
    )
    .await;
    let e = store.hf_machines_of(&["r1".into()]).await.unwrap_err();
    assert!(column_error(e, "failed").contains("7 is not a flag"));
    write_unchecked(&store, "UPDATE hf_requests SET state = 'finished'").await;
    let e = store.hf_requests(&["r1".into()]).await.unwrap_err();
    assert_eq!(column_error(e, "state"), "unknown request state 'finished'");
    write_unchecked(
        &store,
        "UPDATE hf_requests SET state = 'done', kind = 'lease'",
    )
    .await;
    let e = store.hf_requests(&["r1".into()]).await.unwrap_err();
    assert_eq!(column_error(e, "kind"), "unknown request kind 'lease'");
    write_unchecked(
        &store,
        "INSERT INTO circuit_state (strategy, state, consecutive_failures) VALUES ('s', 'ajar', 0)",
    )
    .await;
    let e = store.load_circuits().await.unwrap_err();
    assert_eq!(column_error(e, "state"), "unknown circuit state 'ajar'");
    write_unchecked(
        &store,
        "INSERT INTO health_history (strategy, state, source, at) VALUES ('s', 'sickly', 'api', 1)",
    )
    .await;
    let e = store.health_history("s", 10).await.unwrap_err();
    assert_eq!(column_error(e, "state"), "unknown health state 'sickly'");
}

#[tokio::test]
async fn the_reconciler_queries_use_their_partial_indexes() {
    let (_dir, store) = open().await;
    for (sql, index) in [
        (TRACKED, "hf_machines_tracked"),
        (TO_TERMINATE, "hf_machines_to_terminate"),
    ] {
        // Rows of (id, parent, notused, detail).
        let plan: Vec<String> =
            sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .into_iter()
                .map(|(_, _, _, detail)| detail)
                .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains(&format!("USING INDEX {index}"))),
            "{sql}: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{sql} sorts: {plan:?}"
        );
    }
}

fn spec(name: &str, priority: i64) -> StrategySpec {
    serde_json::from_value(json!({"name": name, "type": "simulated", "priority": priority}))
        .unwrap()
}

#[tokio::test]
async fn registration_inserts_once_and_never_replaces() {
    let (_dir, store) = open().await;
    let (first, second) = (spec("x", 1), spec("x", 2));
    let (a, b) = tokio::join!(
        store.insert_strategy(&first, StrategySource::Api, 10),
        store.insert_strategy(&second, StrategySource::Api, 20),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() != b.is_some(), "exactly one insert wins");
    let winner = a.or(b).unwrap();
    let stored = store.list_strategies().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].spec, winner.spec);
    assert_eq!(stored[0].created_at, winner.created_at);
    // The file's path replaces, keeping registration order and creation time.
    let replaced = store
        .upsert_strategy(&spec("x", 9), StrategySource::Config, 30)
        .await
        .unwrap();
    assert_eq!(
        (replaced.seq, replaced.created_at),
        (winner.seq, winner.created_at)
    );
    assert_eq!(replaced.updated_at, 30);
    assert_eq!(store.list_strategies().await.unwrap()[0].spec.priority, 9);
}

/// A store opened on a database that an older release, with the migrations below `version`
/// only, left holding the rows `sql` writes: the newer migrations run on them.
async fn upgraded(version: i64, sql: &str) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let path = path.to_str().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
        .unwrap()
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let mut older = sqlx::migrate!("./migrations/sqlite");
    older.migrations = older
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    older.run(&pool).await.unwrap();
    sqlx::query(sql).execute(&pool).await.unwrap();
    pool.close().await;
    let store = Store::open(path, 5000, 1, SecretKey::load(None, path).unwrap())
        .await
        .unwrap();
    (dir, store)
}

/// A bucket written before caller errors and rejections were counted apart has them moved out
/// of its failures, by its error codes, when the migration runs.
#[tokio::test]
async fn the_outcome_migration_moves_rejections_and_caller_errors_out_of_failures() {
    let (_dir, store) = upgraded(
        6,
        "INSERT INTO metric_buckets (strategy, operation, minute, count, successes, failures,
             total_ms, max_ms, histogram, error_codes, last_error)
         VALUES ('s', 'CREATE_INSTANCES', 1, 10, 3, 7, 0, 0, '[]',
             '{\"CIRCUIT_OPEN\": 2, \"INVALID_TEMPLATE\": 1, \"TIMEOUT\": 4}', NULL)",
    )
    .await;
    let b = &store.load_metric_buckets(0, Some("s")).await.unwrap()[0];
    assert_eq!(
        (
            b.count,
            b.successes,
            b.failures,
            b.caller_errors,
            b.rejected
        ),
        (10, 3, 4, 1, 2)
    );
}

/// Requests stored before HostFactory's asking was recorded count as claimed: an upgrade
/// cancels none of them.
#[tokio::test]
async fn requests_stored_before_the_claim_migration_count_as_claimed() {
    let (_dir, store) = upgraded(
        9,
        "INSERT INTO hf_requests (request_id, kind, requested_count, state, created_at, updated_at)
         VALUES ('r-old', 'acquire', 1, 'done', 10, 10)",
    )
    .await;
    let old = store
        .hf_requests(&["r-old".into()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(old.claimed_at, Some(10));
    assert!(store.unclaimed_requests(1_000).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_strategy_holds_its_unfinished_machines_and_the_requests_that_may_land_on_it() {
    let (_dir, store) = open().await;
    let mut machines = Vec::new();
    for i in 0..7 {
        machines.push(machine(&format!("i-{i}"), "r1", MachineState::Running, i));
    }
    machines.push(machine("i-gone", "r1", MachineState::Terminated, 10));
    let failed = |id: &str, sent: Option<EpochMillis>| HfMachine {
        failed: true,
        return_sent_at: sent,
        ..machine(id, "r1", MachineState::Pending, 20)
    };
    machines.push(failed("i-failed-accepted", Some(21)));
    machines.push(failed("i-failed-to-end", None));
    machines.push(HfMachine {
        strategy: "other".into(),
        ..machine("i-other", "r1", MachineState::Running, 30)
    });
    store
        .insert_hf_request(&request(
            "r1",
            RequestKind::Acquire,
            RequestState::InProgress,
            1,
        ))
        .await
        .unwrap();
    store.save_observations(&machines).await.unwrap();
    for (id, state, provider) in [
        ("r-any", RequestState::Pending, None),
        ("r-mine", RequestState::Provisioning, Some("sim")),
        ("r-theirs", RequestState::Pending, Some("other")),
        ("r-done", RequestState::Done, None),
    ] {
        let r = HfRequest {
            provider_name: provider.map(String::from),
            ..request(id, RequestKind::Acquire, state, 40)
        };
        store.insert_hf_request(&r).await.unwrap();
    }
    let held = store.hf_holdings("sim", 3).await.unwrap();
    assert_eq!(held.machines, ["i-0", "i-1", "i-2"]);
    assert_eq!(
        held.machine_count, 8,
        "7 running and the failed one not ended: {held:?}"
    );
    assert_eq!(held.requests, ["r-any", "r-mine"]);
    assert_eq!(held.request_count, 2);
    let none = store.hf_holdings("idle", 3).await.unwrap();
    assert_eq!(
        (none.machine_count, none.requests.clone()),
        (0, vec!["r-any".to_string()])
    );
}

#[tokio::test]
async fn claiming_marks_only_unclaimed_requests_and_a_claimed_one_is_never_cancelled() {
    let (_dir, store) = open().await;
    for id in ["r-asked", "r-lost", "r-old"] {
        let r = HfRequest {
            claimed_at: (id == "r-old").then_some(5),
            ..request(id, RequestKind::Acquire, RequestState::InProgress, 10)
        };
        store.insert_hf_request(&r).await.unwrap();
    }
    store
        .save_observations(&[
            machine("i-1", "r-lost", MachineState::Running, 10),
            machine("i-2", "r-lost", MachineState::Terminated, 10),
            machine("i-3", "r-asked", MachineState::Running, 10),
        ])
        .await
        .unwrap();
    store.claim_requests(&["r-asked".into()], 20).await.unwrap();
    // Claimed once: a later ask changes nothing.
    store
        .claim_requests(&["r-old".into(), "r-asked".into()], 30)
        .await
        .unwrap();
    let ids: Vec<String> = ["r-asked", "r-lost", "r-old"].map(String::from).into();
    let mut claimed: Vec<(String, Option<EpochMillis>)> = store
        .hf_requests(&ids)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.request_id, r.claimed_at))
        .collect();
    claimed.sort();
    assert_eq!(
        claimed,
        [
            ("r-asked".into(), Some(20)),
            ("r-lost".into(), None),
            ("r-old".into(), Some(5))
        ]
    );
    let due: Vec<String> = store
        .unclaimed_requests(11)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(due, ["r-lost"]);
    assert!(store.unclaimed_requests(10).await.unwrap().is_empty());

    let ret = HfRequest::new_return(0, RequestState::InProgress, 30);
    assert_eq!(
        store
            .cancel_unclaimed("r-asked", "lost", &ret)
            .await
            .unwrap(),
        None,
        "a claimed request is not cancelled"
    );
    let returned = store
        .cancel_unclaimed("r-lost", "lost", &ret)
        .await
        .unwrap();
    assert_eq!(
        returned,
        Some(vec!["i-1".to_string()]),
        "live machines only"
    );
    let lost = store
        .hf_requests(&["r-lost".into()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        (lost.state, lost.message.as_str()),
        (RequestState::Failed, "lost")
    );
    let stored = store
        .hf_requests(std::slice::from_ref(&ret.request_id))
        .await
        .unwrap();
    assert_eq!(
        (stored[0].kind, stored[0].state, stored[0].requested_count),
        (RequestKind::Return, RequestState::InProgress, 1)
    );
    let machines = store
        .hf_machines_of(std::slice::from_ref(&ret.request_id))
        .await
        .unwrap();
    let held: Vec<&str> = machines
        .iter()
        .filter(|m| m.return_request_id.as_deref() == Some(ret.request_id.as_str()))
        .map(|m| m.machine_id.as_str())
        .collect();
    assert_eq!(held, ["i-1"]);
    assert!(store.unclaimed_requests(100).await.unwrap().is_empty());

    // A machine placed after the cancel (a fleet that went on) brings the request back, once.
    store
        .save_observations(&[machine("i-4", "r-lost", MachineState::Pending, 40)])
        .await
        .unwrap();
    let due = store.unclaimed_requests(100).await.unwrap();
    assert_eq!(due.len(), 1);
    let again = HfRequest::new_return(0, RequestState::InProgress, 50);
    let returned = store
        .cancel_unclaimed("r-lost", "lost again", &again)
        .await
        .unwrap();
    assert_eq!(returned, Some(vec!["i-4".to_string()]));
    assert!(store.unclaimed_requests(100).await.unwrap().is_empty());
    assert_eq!(
        store.cancel_unclaimed("r-lost", "x", &again).await.unwrap(),
        None
    );
}

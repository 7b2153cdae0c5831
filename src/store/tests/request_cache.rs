//! The in-memory copies never answer what the database no longer holds: after every kind of
//! write, each request reads the same through the copy of requests as straight from SQLite,
//! and the tracked machines are those the reconciler's query finds.

use super::{machine, open, request};
use crate::domain::MachineState;
use crate::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};
use crate::store::hostfactory::TRACKED;
use crate::store::{HostFactoryRepo, RequestSnapshot, Store};

const IDS: [&str; 4] = ["r-a", "r-b", "r-lost", "ret-1"];

fn ids() -> Vec<String> {
    IDS.map(String::from).into()
}

/// Reads every request through the copy (filling it), then checks each against SQLite; the
/// same for the tracked machines.
async fn agrees(store: &Store, after: &str) {
    let sorted = |mut machines: Vec<HfMachine>| {
        machines.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        machines
    };
    let tracked: Vec<HfMachine> = sqlx::query_as(TRACKED)
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        sorted(store.hf_machines_to_track().await.unwrap()),
        sorted(tracked),
        "tracked machines after {after}"
    );
    let through_copy = store.hf_request_snapshots(&ids()).await.unwrap();
    // Twice: the second read is served from the copy the first one filled.
    let again = store.hf_request_snapshots(&ids()).await.unwrap();
    let fresh = RequestSnapshot::group(
        store.hf_requests(&ids()).await.unwrap(),
        store.hf_machines_of(&ids()).await.unwrap(),
    );
    for (id, (cached, cached_again)) in IDS.iter().zip(through_copy.iter().zip(&again)) {
        let expected = fresh.iter().find(|s| s.request.request_id == *id);
        assert_eq!(cached.as_deref(), expected, "{id} after {after}");
        assert_eq!(
            cached_again.as_deref(),
            expected,
            "{id} again after {after}"
        );
    }
}

fn with_state(m: &HfMachine, state: MachineState) -> HfMachine {
    HfMachine {
        state,
        updated_at: m.updated_at + 1,
        ..m.clone()
    }
}

#[tokio::test]
async fn every_write_shows_in_the_next_read_through_the_copy() {
    let (_dir, store) = open().await;
    agrees(&store, "nothing").await;
    for id in ["r-a", "r-b", "r-lost"] {
        let r = HfRequest {
            claimed_at: None,
            ..request(id, RequestKind::Acquire, RequestState::Pending, 10)
        };
        store.insert_hf_request(&r).await.unwrap();
    }
    agrees(&store, "insert_hf_request").await;
    store.claim_requests(&["r-a".into()], 11).await.unwrap();
    agrees(&store, "claim_requests").await;
    store.start_provisioning("r-a", 12).await.unwrap();
    agrees(&store, "start_provisioning").await;
    let a1 = machine("i-a1", "r-a", MachineState::Pending, 13);
    let a2 = machine("i-a2", "r-a", MachineState::Pending, 13);
    store
        .finish_provisioning(
            "r-a",
            RequestState::InProgress,
            "",
            Some("sim"),
            None,
            None,
            &[a1.clone(), a2.clone()],
            13,
        )
        .await
        .unwrap();
    agrees(&store, "finish_provisioning").await;
    let b1 = machine("i-b1", "r-b", MachineState::Running, 14);
    let lost = machine("i-l1", "r-lost", MachineState::Running, 14);
    store
        .save_observations(&[
            with_state(&a1, MachineState::Running),
            b1.clone(),
            lost.clone(),
        ])
        .await
        .unwrap();
    agrees(&store, "save_observations").await;
    store
        .set_request_state("r-b", RequestState::InProgress, "placed", 15)
        .await
        .unwrap();
    store
        .set_request_state("r-lost", RequestState::InProgress, "", 15)
        .await
        .unwrap();
    agrees(&store, "set_request_state").await;
    let ret = HfRequest {
        request_id: "ret-1".into(),
        ..HfRequest::new_return(2, RequestState::InProgress, 16)
    };
    store
        .insert_return_request(&ret, &["i-a1".into(), "i-b1".into()])
        .await
        .unwrap();
    agrees(&store, "insert_return_request").await;
    store
        .note_termination_problem(&["i-a1".into()], "throttled")
        .await
        .unwrap();
    agrees(&store, "note_termination_problem").await;
    store
        .mark_return_sent(&["i-a1".into(), "i-b1".into()], 17)
        .await
        .unwrap();
    agrees(&store, "mark_return_sent").await;
    let cancel = HfRequest::new_return(0, RequestState::InProgress, 18);
    let returned = store
        .cancel_unclaimed("r-lost", "never asked about", &cancel)
        .await
        .unwrap();
    assert_eq!(returned, Some(vec!["i-l1".to_string()]));
    agrees(&store, "cancel_unclaimed").await;
    // Everything over and gone, then pruned: the copy forgets the deleted requests.
    store
        .save_observations(&[
            with_state(&a1, MachineState::Terminated),
            with_state(&a2, MachineState::Terminated),
            with_state(&b1, MachineState::Terminated),
            with_state(&lost, MachineState::Terminated),
        ])
        .await
        .unwrap();
    for id in ["r-a", "r-b"] {
        store
            .set_request_state(id, RequestState::Done, "", 19)
            .await
            .unwrap();
    }
    agrees(&store, "the last observations").await;
    let pruned = store.prune_finished(1_000, 100).await.unwrap();
    assert!(pruned.requests >= 2, "{pruned:?}");
    agrees(&store, "prune_finished").await;
}

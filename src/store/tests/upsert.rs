//! Machines are upserted many rows per statement; the outcome is that of one upsert per
//! machine, in order, also when a machine is given twice.

use super::{machine, open, request};
use crate::domain::MachineState;
use crate::hostfactory::model::{HfMachine, RequestKind, RequestState};
use crate::store::HostFactoryRepo;

#[tokio::test]
async fn many_machines_and_a_machine_given_twice_save_as_one_by_one() {
    let (_dir, store) = open().await;
    let r = request("r1", RequestKind::Acquire, RequestState::InProgress, 1);
    store.insert_hf_request(&r).await.unwrap();
    // More than one statement's worth, with i-7 twice: first with its address, then a later
    // state without one (a stored address stays when none is given).
    let mut rows: Vec<HfMachine> = (0..450)
        .map(|i| HfMachine {
            private_ip: Some(format!("10.0.{}.{}", i / 200, i % 200)),
            ..machine(&format!("i-{i}"), "r1", MachineState::Pending, 2)
        })
        .collect();
    rows.insert(
        300,
        HfMachine {
            private_ip: None,
            ..machine("i-7", "r1", MachineState::Running, 3)
        },
    );
    store.save_observations(&rows).await.unwrap();
    let saved = store.hf_machines_of(&["r1".into()]).await.unwrap();
    assert_eq!(saved.len(), 450);
    let seven = saved.iter().find(|m| m.machine_id == "i-7").unwrap();
    assert_eq!(seven.state, MachineState::Running);
    assert_eq!(seven.private_ip.as_deref(), Some("10.0.0.7"));
    let last = saved.iter().find(|m| m.machine_id == "i-449").unwrap();
    assert_eq!(last.private_ip.as_deref(), Some("10.0.2.49"));
}

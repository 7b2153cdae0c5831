use super::*;
use crate::store::SecretKey;

fn cfg(v: Value) -> Result<SimulatedConfig, (String, String)> {
    SimulatedConfig::from_spec(v.as_object().unwrap())
}

#[test]
fn config_validation_names_the_field() {
    assert_eq!(
        cfg(json!({"failure_rate": 1.5})).unwrap_err().0,
        "config.failure_rate"
    );
    assert_eq!(
        cfg(json!({"latency_ms": [9, 1]})).unwrap_err().0,
        "config.latency_ms"
    );
    assert_eq!(
        cfg(json!({"latency_ms": "fast"})).unwrap_err().0,
        "config.latency_ms"
    );
    assert_eq!(
        cfg(json!({"capacity": -1})).unwrap_err().0,
        "config.capacity"
    );
    let err = cfg(json!({"failure_rat": 0.1})).unwrap_err();
    assert!(err.1.contains("unknown field `failure_rat`"), "{err:?}");
    let ok = cfg(json!({"latency_ms": [5, 20], "seed": 7, "capacity": 3})).unwrap();
    assert_eq!(ok.latency_ms, Latency::Range([5.0, 20.0]));
    assert_eq!(ok.supported_operations, OperationType::ALL);
    assert_eq!(
        cfg(json!({"supported_operations": ["create_instances"]}))
            .unwrap_err()
            .0,
        "config.supported_operations"
    );
    assert!(
        cfg(json!({"supported_operations": ["CREATE_INSTANCES", "FLY"]}))
            .unwrap_err()
            .1
            .contains("unknown operation type 'FLY'")
    );
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let path = path.to_str().unwrap();
    let store = Store::open(path, 1000, 2, SecretKey::load(None, path).unwrap())
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_seed_fixes_the_sequence_of_outcomes() {
    let (_dir, store) = store().await;
    let config = cfg(json!({"failure_rate": 0.5, "seed": 42, "latency_ms": [0, 1]})).unwrap();
    let outcomes = |p: SimulatedProvider| async move {
        let mut v = Vec::new();
        for _ in 0..40 {
            v.push(p.health().await.is_ok());
        }
        v
    };
    let a = outcomes(SimulatedProvider::new("a", config.clone(), store.clone())).await;
    let b = outcomes(SimulatedProvider::new("a", config, store.clone())).await;
    assert_eq!(a, b);
    let failures = a.iter().filter(|ok| !**ok).count();
    assert!((10..=30).contains(&failures), "{failures}");
}

/// Polls the state of `id` until it is `want` (the simulator's clock is the wall clock).
async fn wait_for_state(p: &SimulatedProvider, id: &str, want: MachineState) {
    let query = StatusQuery {
        instance_ids: vec![id.to_string()],
        ..StatusQuery::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let report = p.status(&query).await.unwrap();
        if report.machines[0].state == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_request(units: u32) -> CreateRequest {
    CreateRequest {
        spec: LaunchSpec::named("t"),
        units,
        request_id: None,
        tags: Vec::new(),
    }
}

#[tokio::test]
async fn instances_move_through_their_states_and_capacity_is_enforced() {
    let (_dir, store) = store().await;
    // A shutdown long enough to be seen under way however slow the machine.
    let config = cfg(json!({"capacity": 2, "boot_seconds": 0.2, "shutdown_seconds": 3.0})).unwrap();
    let p = SimulatedProvider::new("sim", config, store);
    let created = p.create(&create_request(2)).await.unwrap();
    let ids = created.instance_ids.clone();
    assert_eq!(created.instances[0].state, MachineState::Pending);
    assert!(created.instances[0].private_ip.is_none());
    let err = p.create(&create_request(1)).await.unwrap_err();
    assert_eq!(err.kind, ProviderErrorKind::Capacity);
    wait_for_state(&p, &ids[0], MachineState::Running).await;
    let status = p
        .status(&StatusQuery {
            instance_ids: ids.clone(),
            ..StatusQuery::default()
        })
        .await
        .unwrap();
    assert!(
        status.machines[0]
            .private_dns
            .as_deref()
            .unwrap()
            .starts_with("ip-10-")
    );
    let gone = p
        .terminate(&TerminateRequest {
            machines: vec![
                crate::providers::MachineRef::bare(ids[0].clone()),
                crate::providers::MachineRef::bare("i-unknown"),
            ],
            simulate_reclaim: false,
        })
        .await
        .unwrap();
    assert_eq!(gone.not_found, ["i-unknown"]);
    assert_eq!(gone.terminating, [ids[0].clone()]);
    let query = StatusQuery {
        instance_ids: vec![ids[0].clone()],
        ..StatusQuery::default()
    };
    let status = p.status(&query).await.unwrap();
    assert_eq!(status.machines[0].state, MachineState::ShuttingDown);
    wait_for_state(&p, &ids[0], MachineState::Terminated).await;
    // Capacity is free again once the instance is gone.
    p.create(&create_request(1)).await.unwrap();
}

#[tokio::test]
async fn a_weighted_spec_places_instances_that_cover_the_units() {
    let (_dir, store) = store().await;
    let p = SimulatedProvider::new("sim", cfg(json!({})).unwrap(), store);
    let mut req = create_request(5);
    req.spec.weighted = true;
    req.spec.instance_types = vec![crate::domain::WeightedType {
        instance_type: "sim.large".into(),
        weight: 2,
    }];
    let made = p.create(&req).await.unwrap();
    assert_eq!(made.count, 3);
    assert_eq!(
        made.instances[0].instance_type.as_deref(),
        Some("sim.large")
    );
    let report = p.validate(&LaunchSpec::default()).await.unwrap();
    assert!(!report.valid);
    assert_eq!(report.errors.len(), 2);
}

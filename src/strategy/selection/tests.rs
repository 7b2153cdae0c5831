use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Map, json};

use super::*;

fn caps(features: serde_json::Value) -> Capabilities {
    Capabilities {
        provider_type: "simulated".into(),
        supported_operations: OperationType::ALL.to_vec(),
        features: features.as_object().cloned().unwrap_or_default(),
        limitations: Map::new(),
        performance_metrics: None,
    }
}

fn cand(name: &str, order: u64) -> Candidate {
    Candidate {
        name: name.into(),
        enabled: true,
        priority: 0,
        weight: 1.0,
        order,
        capabilities: caps(json!({"instances": true})),
        health: HealthState::Healthy,
        health_message: None,
        circuit: CircuitState::Closed,
        in_flight: 0,
        recent: RecentStats::default(),
    }
}

fn stats(samples: u64, success_rate: f64, mean_response_ms: f64) -> RecentStats {
    RecentStats {
        samples,
        success_rate: (samples > 0).then_some(success_rate),
        mean_response_ms: (samples > 0).then_some(mean_response_ms),
    }
}

fn pick(cands: &[Candidate], policy: SelectionPolicy, state: &mut SelectorState) -> String {
    select(
        cands,
        OperationType::CreateInstances,
        &SelectionCriteria::default(),
        policy,
        state,
    )
    .expect("a candidate")
    .selected
}

fn counts(
    cands: &[Candidate],
    policy: SelectionPolicy,
    calls: usize,
    seed: u64,
) -> HashMap<String, usize> {
    let mut state = SelectorState::new(Some(seed));
    let mut out = HashMap::new();
    for _ in 0..calls {
        *out.entry(pick(cands, policy, &mut state)).or_default() += 1;
    }
    out
}

#[test]
fn policy_names_parse_in_any_case_with_alias() {
    assert_eq!(
        "performance_based".parse::<SelectionPolicy>().unwrap(),
        SelectionPolicy::PerformanceBased
    );
    assert_eq!(
        "least_response_time".parse::<SelectionPolicy>().unwrap(),
        SelectionPolicy::FastestResponse
    );
    let err = "fastest".parse::<SelectionPolicy>().unwrap_err();
    assert!(err.contains("unknown selection policy 'fastest'") && err.contains("RANDOM"));
}

#[test]
fn first_available_takes_lowest_priority_then_registration_order() {
    let mut a = cand("a", 0);
    a.priority = 5;
    let b = cand("b", 1);
    let c = cand("c", 2);
    let mut state = SelectorState::new(Some(1));
    for _ in 0..3 {
        assert_eq!(
            pick(
                &[a.clone(), c.clone(), b.clone()],
                SelectionPolicy::FirstAvailable,
                &mut state
            ),
            "b"
        );
    }
}

#[test]
fn round_robin_rotates_in_registration_order_and_survives_set_changes() {
    let all = [cand("a", 0), cand("b", 1), cand("c", 2)];
    let mut state = SelectorState::new(Some(1));
    let seq: Vec<String> = (0..6)
        .map(|_| pick(&all, SelectionPolicy::RoundRobin, &mut state))
        .collect();
    assert_eq!(seq, ["a", "b", "c", "a", "b", "c"]);
    // After "c", with "a" gone, the rotation continues at "b" rather than restarting.
    assert_eq!(pick(&all, SelectionPolicy::RoundRobin, &mut state), "a");
    let without_a = [cand("b", 1), cand("c", 2)];
    assert_eq!(
        pick(&without_a, SelectionPolicy::RoundRobin, &mut state),
        "b"
    );
    assert_eq!(
        pick(&without_a, SelectionPolicy::RoundRobin, &mut state),
        "c"
    );
}

#[test]
fn weighted_round_robin_5_3_2_is_exact_per_10_calls_and_smooth() {
    let mut a = cand("a", 0);
    a.weight = 5.0;
    let mut b = cand("b", 1);
    b.weight = 3.0;
    let mut c = cand("c", 2);
    c.weight = 2.0;
    let all = [a, b, c];
    let mut state = SelectorState::new(Some(1));
    for round in 0..10 {
        let seq: Vec<String> = (0..10)
            .map(|_| pick(&all, SelectionPolicy::WeightedRoundRobin, &mut state))
            .collect();
        let n = |x: &str| seq.iter().filter(|s| *s == x).count();
        assert_eq!(
            (n("a"), n("b"), n("c")),
            (5, 3, 2),
            "round {round}: {seq:?}"
        );
        // Smooth: the heavy member never runs three times in a row.
        assert!(
            !seq.windows(3).any(|w| w.iter().all(|s| s == "a")),
            "{seq:?}"
        );
    }
}

#[test]
fn least_connections_picks_fewest_in_flight() {
    let mut a = cand("a", 0);
    a.in_flight = 3;
    let mut b = cand("b", 1);
    b.in_flight = 1;
    let mut c = cand("c", 2);
    c.in_flight = 2;
    let mut state = SelectorState::new(Some(1));
    assert_eq!(
        pick(&[a, b, c], SelectionPolicy::LeastConnections, &mut state),
        "b"
    );
}

#[test]
fn fastest_response_and_highest_success_rate_differ() {
    let mut fast_flaky = cand("fast", 0);
    fast_flaky.recent = stats(20, 60.0, 10.0);
    let mut slow_solid = cand("solid", 1);
    slow_solid.recent = stats(20, 100.0, 400.0);
    let all = [fast_flaky, slow_solid];
    let mut state = SelectorState::new(Some(1));
    assert_eq!(
        pick(&all, SelectionPolicy::FastestResponse, &mut state),
        "fast"
    );
    assert_eq!(
        pick(&all, SelectionPolicy::HighestSuccessRate, &mut state),
        "solid"
    );
}

#[test]
fn untried_strategies_are_measured_first_by_metric_policies() {
    let mut known = cand("known", 0);
    known.recent = stats(50, 100.0, 5.0);
    let fresh = cand("fresh", 1);
    let all = [known, fresh];
    let mut state = SelectorState::new(Some(1));
    assert_eq!(
        pick(&all, SelectionPolicy::FastestResponse, &mut state),
        "fresh"
    );
    assert_eq!(
        pick(&all, SelectionPolicy::HighestSuccessRate, &mut state),
        "fresh"
    );
}

#[test]
fn performance_based_scores_success_and_latency() {
    let mut a = cand("a", 0);
    a.recent = stats(20, 90.0, 2000.0); // 0.63 + 0.15
    let mut b = cand("b", 1);
    b.recent = stats(20, 80.0, 100.0); // 0.56 + 0.30
    let mut state = SelectorState::new(Some(1));
    assert_eq!(
        pick(&[a, b], SelectionPolicy::PerformanceBased, &mut state),
        "b"
    );
}

#[test]
fn capability_based_prefers_richer_capabilities_then_priority() {
    let mut a = cand("a", 0);
    a.capabilities = caps(json!({"instances": true}));
    let mut b = cand("b", 1);
    b.capabilities = caps(json!({"instances": true, "spot_instances": true, "gpu": false}));
    let mut state = SelectorState::new(Some(1));
    assert_eq!(
        pick(&[a, b], SelectionPolicy::CapabilityBased, &mut state),
        "b"
    );
}

#[test]
fn health_based_drops_unhealthy_even_without_require_healthy_and_ranks_unknown_last() {
    let mut a = cand("a", 0);
    a.health = HealthState::Unknown;
    let mut b = cand("b", 1);
    b.priority = 9;
    let mut c = cand("c", 2);
    c.health = HealthState::Unhealthy;
    c.priority = -1;
    let criteria = SelectionCriteria {
        require_healthy: Some(false),
        ..Default::default()
    };
    let mut state = SelectorState::new(Some(1));
    let sel = select(
        &[a, b, c],
        OperationType::CreateInstances,
        &criteria,
        SelectionPolicy::HealthBased,
        &mut state,
    )
    .unwrap();
    assert_eq!(sel.selected, "b");
    assert_eq!(sel.alternatives, ["a"]);
    assert!(!sel.verdicts[2].eligible);
}

#[test]
fn random_is_roughly_uniform_and_deterministic_with_a_seed() {
    let all = [cand("a", 0), cand("b", 1), cand("c", 2)];
    let first = counts(&all, SelectionPolicy::Random, 3000, 42);
    for name in ["a", "b", "c"] {
        let n = first[name];
        assert!((850..=1150).contains(&n), "{name}: {n}");
    }
    assert_eq!(first, counts(&all, SelectionPolicy::Random, 3000, 42));
}

#[test]
fn filter_reports_every_reason() {
    let mut excluded = cand("excluded", 0);
    excluded.priority = -10;
    let mut no_op = cand("no-op", 1);
    no_op.capabilities.supported_operations = vec![OperationType::HealthCheck];
    let mut no_spot = cand("no-spot", 2);
    no_spot.capabilities = caps(json!({"instances": true}));
    let mut sick = cand("sick", 3);
    sick.health = HealthState::Unhealthy;
    sick.health_message = Some("probe timed out".into());
    let mut open = cand("open", 4);
    open.circuit = CircuitState::Open;
    let mut flaky = cand("flaky", 5);
    flaky.recent = stats(10, 50.0, 10.0);
    let mut slow = cand("slow", 6);
    slow.recent = stats(10, 100.0, 900.0);
    let mut new_flaky = cand("new", 7);
    new_flaky.recent = stats(MIN_SAMPLES_FOR_CRITERIA - 1, 0.0, 5000.0);
    for c in [
        &mut excluded,
        &mut sick,
        &mut open,
        &mut flaky,
        &mut slow,
        &mut new_flaky,
    ] {
        c.capabilities = caps(json!({"instances": true, "spot_instances": true}));
    }
    let criteria = SelectionCriteria {
        required_capabilities: Some(vec!["spot_instances".into()]),
        min_success_rate: Some(90.0),
        max_response_time_ms: Some(500.0),
        exclude_strategies: Some(vec!["excluded".into()]),
        ..Default::default()
    };
    let all = [excluded, no_op, no_spot, sick, open, flaky, slow, new_flaky];
    let mut state = SelectorState::new(Some(1));
    let sel = select(
        &all,
        OperationType::CreateInstances,
        &criteria,
        SelectionPolicy::FirstAvailable,
        &mut state,
    )
    .unwrap();
    assert_eq!(sel.selected, "new", "too few samples to be judged");
    let reason = |n: &str| {
        sel.verdicts
            .iter()
            .find(|v| v.strategy == n)
            .unwrap()
            .reason
            .clone()
    };
    assert_eq!(reason("excluded"), "excluded by exclude_strategies");
    assert_eq!(reason("no-op"), "does not support CREATE_INSTANCES");
    assert_eq!(
        reason("no-spot"),
        "lacks required capability 'spot_instances'"
    );
    assert_eq!(reason("sick"), "unhealthy: probe timed out");
    assert_eq!(reason("open"), "circuit open");
    assert!(reason("flaky").starts_with("success rate 50.0% below minimum 90%"));
    assert!(reason("slow").starts_with("mean response time 900.0 ms above maximum 500 ms"));

    let without_new = &all[..7];
    let err = select(
        without_new,
        OperationType::CreateInstances,
        &criteria,
        SelectionPolicy::FirstAvailable,
        &mut state,
    )
    .unwrap_err();
    assert_eq!(err.verdicts.len(), 7);
    let text = err.to_string();
    for name in [
        "excluded", "no-op", "no-spot", "sick", "open", "flaky", "slow",
    ] {
        assert!(text.contains(&format!("{name}: ")), "{text}");
    }
}

#[test]
fn prefer_restricts_the_policy_to_preferred_survivors() {
    let all = [cand("a", 0), cand("b", 1), cand("c", 2)];
    let criteria = SelectionCriteria {
        prefer_strategies: Some(vec!["c".into(), "zzz".into()]),
        ..Default::default()
    };
    let mut state = SelectorState::new(Some(1));
    let sel = select(
        &all,
        OperationType::CreateInstances,
        &criteria,
        SelectionPolicy::FirstAvailable,
        &mut state,
    )
    .unwrap();
    assert_eq!(sel.selected, "c");
    assert_eq!(
        sel.verdicts[0].reason,
        "eligible, but not in prefer_strategies"
    );
    // A preferred strategy that was filtered out does not restrict anything.
    let criteria = SelectionCriteria {
        prefer_strategies: Some(vec!["c".into()]),
        exclude_strategies: Some(vec!["c".into()]),
        ..Default::default()
    };
    let sel = select(
        &all,
        OperationType::CreateInstances,
        &criteria,
        SelectionPolicy::FirstAvailable,
        &mut state,
    )
    .unwrap();
    assert_eq!(sel.selected, "a");
}

#[test]
fn criteria_overlay_and_validation() {
    let base = SelectionCriteria {
        min_success_rate: Some(80.0),
        require_healthy: Some(true),
        ..Default::default()
    };
    let req = SelectionCriteria {
        require_healthy: Some(false),
        ..Default::default()
    };
    let eff = base.overlay(&req);
    assert_eq!(eff.min_success_rate, Some(80.0));
    assert!(!eff.require_healthy());
    let bad = SelectionCriteria {
        min_success_rate: Some(120.0),
        max_response_time_ms: Some(-1.0),
        ..Default::default()
    };
    let errs = bad.validate();
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].0, "min_success_rate");
}

fn arb_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        (
            -3i64..3,
            1u32..10,
            0u64..5,
            0u64..30,
            0.0f64..100.0,
            1.0f64..1000.0,
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.9),
        ),
        1..8,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(
                |(i, (prio, w, inflight, samples, rate, ms, healthy, closed))| {
                    let mut c = cand(&format!("s{i}"), i as u64);
                    c.priority = prio;
                    c.weight = f64::from(w);
                    c.in_flight = inflight;
                    c.recent = stats(samples, rate, ms);
                    c.health = if healthy {
                        HealthState::Healthy
                    } else {
                        HealthState::Unhealthy
                    };
                    c.circuit = if closed {
                        CircuitState::Closed
                    } else {
                        CircuitState::Open
                    };
                    c
                },
            )
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = SelectionPolicy> {
    prop::sample::select(SelectionPolicy::ALL.to_vec())
}

proptest! {
    #[test]
    fn every_policy_selects_an_eligible_candidate_and_explains_all(
        cands in arb_candidates(), policy in arb_policy(), seed in any::<u64>()
    ) {
        let mut state = SelectorState::new(Some(seed));
        let res = select(&cands, OperationType::CreateInstances, &SelectionCriteria::default(), policy, &mut state);
        let usable = |c: &Candidate| c.health != HealthState::Unhealthy && c.circuit != CircuitState::Open;
        match res {
            Ok(sel) => {
                prop_assert_eq!(sel.verdicts.len(), cands.len());
                prop_assert_eq!(sel.verdicts.iter().filter(|v| v.selected).count(), 1);
                let chosen = cands.iter().find(|c| c.name == sel.selected).unwrap();
                prop_assert!(usable(chosen));
                prop_assert_eq!(sel.alternatives.len() + 1, cands.iter().filter(|c| usable(c)).count());
            }
            Err(none) => {
                prop_assert!(cands.iter().all(|c| !usable(c)));
                prop_assert!(none.verdicts.iter().all(|v| !v.eligible && !v.reason.is_empty()));
            }
        }
    }

    #[test]
    fn least_connections_never_picks_a_busier_strategy(cands in arb_candidates()) {
        let mut state = SelectorState::new(Some(0));
        if let Ok(sel) = select(&cands, OperationType::CreateInstances, &SelectionCriteria::default(),
                                SelectionPolicy::LeastConnections, &mut state) {
            let chosen = cands.iter().find(|c| c.name == sel.selected).unwrap();
            for c in cands.iter().filter(|c| sel.alternatives.contains(&c.name)) {
                prop_assert!(chosen.in_flight <= c.in_flight);
            }
        }
    }

    #[test]
    fn smooth_wrr_gives_each_exactly_its_weight_per_cycle(weights in prop::collection::vec(1u32..8, 1..6)) {
        let cands: Vec<Candidate> = weights.iter().enumerate().map(|(i, w)| {
            let mut c = cand(&format!("s{i}"), i as u64);
            c.weight = f64::from(*w);
            c
        }).collect();
        let cycle: u32 = weights.iter().sum();
        let mut state = SelectorState::new(Some(0));
        for _ in 0..3 {
            let mut seen: HashMap<String, u32> = HashMap::new();
            for _ in 0..cycle {
                *seen.entry(pick(&cands, SelectionPolicy::WeightedRoundRobin, &mut state)).or_default() += 1;
            }
            for (i, w) in weights.iter().enumerate() {
                prop_assert_eq!(seen.get(&format!("s{i}")).copied().unwrap_or(0), *w);
            }
        }
    }

    #[test]
    fn round_robin_visits_each_once_per_cycle(n in 1usize..8) {
        let cands: Vec<Candidate> = (0..n).map(|i| cand(&format!("s{i}"), i as u64)).collect();
        let mut state = SelectorState::new(Some(0));
        let mut seen: Vec<String> = (0..n).map(|_| pick(&cands, SelectionPolicy::RoundRobin, &mut state)).collect();
        seen.sort();
        seen.dedup();
        prop_assert_eq!(seen.len(), n);
    }

    #[test]
    fn fastest_response_picks_minimum_mean_among_measured(cands in arb_candidates()) {
        let measured: Vec<Candidate> = cands.into_iter().map(|mut c| {
            if c.recent.samples == 0 {
                c.recent = stats(1, 100.0, 50.0);
            }
            c.health = HealthState::Healthy;
            c.circuit = CircuitState::Closed;
            c
        }).collect();
        let mut state = SelectorState::new(Some(0));
        let sel = select(&measured, OperationType::CreateInstances, &SelectionCriteria::default(),
                         SelectionPolicy::FastestResponse, &mut state).unwrap();
        let chosen = measured.iter().find(|c| c.name == sel.selected).unwrap();
        prop_assert!(measured.iter().all(|c| chosen.recent.mean_response_ms <= c.recent.mean_response_ms));
    }
}

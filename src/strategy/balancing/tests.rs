use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Map;

use super::*;
use crate::domain::Capabilities;
use crate::strategy::{CircuitState, RecentStats};

fn cand(name: &str, order: u64) -> Candidate {
    Candidate {
        name: name.into(),
        enabled: true,
        priority: 0,
        weight: 1.0,
        order,
        capabilities: Capabilities {
            provider_type: "simulated".into(),
            supported_operations: OperationType::ALL.to_vec(),
            features: Map::new(),
            limitations: Map::new(),
            performance_metrics: None,
        },
        health: HealthState::Healthy,
        health_message: None,
        circuit: CircuitState::Closed,
        in_flight: 0,
        recent: RecentStats::default(),
    }
}

fn cfg(algorithm: Algorithm) -> BalancerConfig {
    BalancerConfig {
        algorithm,
        health_check_mode: HealthCheckMode::Hybrid,
        max_connections_per_strategy: None,
        weight_adjustment_factor: 0.5,
        passive_recovery_ms: 1_000,
    }
}

fn balancer(members: &[(&str, f64)]) -> (Balancer, Vec<Candidate>) {
    let mut b = Balancer::new(Some(7));
    let list: Vec<(String, f64)> = members.iter().map(|(n, w)| (n.to_string(), *w)).collect();
    b.reconfigure(&list);
    let cands = members
        .iter()
        .enumerate()
        .map(|(i, (n, _))| cand(n, i as u64))
        .collect();
    (b, cands)
}

fn pick(b: &mut Balancer, c: &BalancerConfig, cands: &[Candidate], key: Option<&str>) -> String {
    b.pick(c, cands, OperationType::CreateInstances, key, 0)
        .expect("a member")
        .member
}

/// Picks and finishes at once, `calls` times; counts per member.
fn distribution(
    b: &mut Balancer,
    c: &BalancerConfig,
    cands: &[Candidate],
    calls: usize,
) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for _ in 0..calls {
        let m = pick(b, c, cands, None);
        b.finish(c, &m, true, true, 10.0, 0);
        *n.entry(m).or_insert(0) += 1;
    }
    n
}

#[test]
fn fnv1a_is_the_published_function() {
    assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
}

#[test]
fn round_robin_cycles_in_member_order() {
    let (mut b, cands) = balancer(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
    let c = cfg(Algorithm::RoundRobin);
    let seq: Vec<String> = (0..6).map(|_| pick(&mut b, &c, &cands, None)).collect();
    assert_eq!(seq, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn fractional_weights_split_exactly_under_smooth_wrr() {
    let (mut b, cands) = balancer(&[("heavy", 0.8), ("light", 0.2)]);
    let n = distribution(&mut b, &cfg(Algorithm::WeightedRoundRobin), &cands, 1000);
    assert_eq!(n["heavy"], 800);
    assert_eq!(n["light"], 200);
}

#[test]
fn least_connections_counts_calls_still_active() {
    let (mut b, cands) = balancer(&[("a", 1.0), ("b", 1.0)]);
    let c = cfg(Algorithm::LeastConnections);
    assert_eq!(pick(&mut b, &c, &cands, None), "a");
    assert_eq!(pick(&mut b, &c, &cands, None), "b");
    b.finish(&c, "a", true, true, 1.0, 0);
    assert_eq!(pick(&mut b, &c, &cands, None), "a");
    let stats = b.stats();
    assert_eq!(stats[0].1.active_connections, 1);
    assert_eq!(stats[1].1.active_connections, 1);
}

#[test]
fn connection_cap_sends_the_next_call_elsewhere_then_rejects() {
    let (mut b, cands) = balancer(&[("a", 1.0), ("b", 1.0)]);
    let mut c = cfg(Algorithm::RoundRobin);
    c.max_connections_per_strategy = Some(1);
    assert_eq!(pick(&mut b, &c, &cands, None), "a");
    assert_eq!(pick(&mut b, &c, &cands, None), "b");
    let verdicts = b
        .pick(&c, &cands, OperationType::CreateInstances, None, 0)
        .unwrap_err();
    assert!(
        verdicts
            .iter()
            .all(|v| v.reason.contains("max_connections_per_strategy")),
        "{verdicts:?}"
    );
    b.finish(&c, "b", true, true, 1.0, 0);
    assert_eq!(pick(&mut b, &c, &cands, None), "b");
}

#[test]
fn open_circuits_and_unhealthy_members_follow_the_mode() {
    let (mut b, mut cands) = balancer(&[("a", 1.0), ("b", 1.0)]);
    cands[0].health = HealthState::Unhealthy;
    let mut c = cfg(Algorithm::RoundRobin);
    for mode in [HealthCheckMode::Active, HealthCheckMode::Hybrid] {
        c.health_check_mode = mode;
        assert_eq!(pick(&mut b, &c, &cands, None), "b");
        assert_eq!(pick(&mut b, &c, &cands, None), "b");
    }
    c.health_check_mode = HealthCheckMode::Passive;
    let seen: Vec<String> = (0..2).map(|_| pick(&mut b, &c, &cands, None)).collect();
    assert!(
        seen.contains(&"a".to_string()),
        "passive mode ignores probe results"
    );
    cands[0].circuit = CircuitState::Open;
    assert_eq!(pick(&mut b, &c, &cands, None), "b");
    assert_eq!(pick(&mut b, &c, &cands, None), "b");
}

#[test]
fn passive_failures_take_a_member_out_until_its_recovery_time() {
    let (mut b, cands) = balancer(&[("a", 1.0), ("b", 1.0)]);
    let c = cfg(Algorithm::LeastConnections);
    for _ in 0..PASSIVE_UNHEALTHY_AFTER {
        let m = b
            .pick(&c, &cands, OperationType::CreateInstances, None, 0)
            .unwrap()
            .member;
        assert_eq!(m, "a");
        b.finish(&c, "a", false, true, 1.0, 0);
    }
    let out = |b: &mut Balancer, now| {
        b.pick(&c, &cands, OperationType::CreateInstances, None, now)
            .unwrap()
            .member
    };
    assert_eq!(out(&mut b, 10), "b");
    b.finish(&c, "b", true, true, 1.0, 10);
    assert_eq!(
        out(&mut b, 1_000),
        "a",
        "back once the recovery time has passed"
    );
    b.finish(&c, "a", true, true, 1.0, 1_000);
    assert_eq!(b.stats()[0].1.passive_down_until, None);
}

#[test]
fn caller_mistakes_do_not_count_against_a_member() {
    let (mut b, cands) = balancer(&[("a", 1.0)]);
    let c = cfg(Algorithm::RoundRobin);
    for _ in 0..5 {
        pick(&mut b, &c, &cands, None);
        b.finish(&c, "a", false, false, 1.0, 0);
    }
    let s = &b.stats()[0].1;
    assert_eq!(
        (s.total_requests, s.failed_requests, s.active_connections),
        (0, 0, 0)
    );
    assert_eq!(s.passive_down_until, None);
}

#[test]
fn adaptive_weights_move_toward_the_better_member() {
    let (mut b, cands) = balancer(&[("good", 1.0), ("bad", 1.0)]);
    let c = cfg(Algorithm::Adaptive);
    let run = |b: &mut Balancer, calls: usize| {
        let mut good = 0;
        for _ in 0..calls {
            let m = pick(b, &c, &cands, None);
            good += usize::from(m == "good");
            b.finish(
                &c,
                &m,
                m == "good",
                true,
                if m == "good" { 10.0 } else { 40.0 },
                0,
            );
        }
        good
    };
    run(&mut b, 40);
    let stats = b.stats();
    assert!(stats[0].1.effective_weight > 0.9, "{stats:?}");
    assert!(stats[1].1.effective_weight < 0.1, "{stats:?}");
    assert!(run(&mut b, 100) > 85);
}

#[test]
fn reconfiguring_keeps_statistics_and_applies_new_weights() {
    let (mut b, cands) = balancer(&[("a", 1.0), ("b", 1.0)]);
    let c = cfg(Algorithm::WeightedRoundRobin);
    distribution(&mut b, &c, &cands, 10);
    b.reconfigure(&[("a".into(), 3.0), ("b".into(), 1.0)]);
    let stats = b.stats();
    assert_eq!(stats[0].1.total_requests, 5);
    assert_eq!(stats[0].1.weight, 3.0);
    let n = distribution(&mut b, &c, &cands, 40);
    assert_eq!((n["a"], n["b"]), (30, 10));
}

proptest! {
    #[test]
    fn hashing_is_stable_and_a_leaving_member_moves_only_its_keys(
        keys in proptest::collection::vec("[a-z0-9-]{1,12}", 1..50),
        leaving in 0usize..4,
    ) {
        let members = ["m0", "m1", "m2", "m3"];
        let rest: Vec<&str> = members.iter().copied().filter(|m| *m != members[leaving]).collect();
        for key in &keys {
            let before = rendezvous(key, &members).unwrap();
            prop_assert_eq!(before, rendezvous(key, &members).unwrap());
            let after = rendezvous(key, &rest).unwrap();
            if before != members[leaving] {
                prop_assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn adaptive_weights_stay_between_the_floor_and_the_configured_weight(
        outcomes in proptest::collection::vec((any::<bool>(), 1.0f64..500.0), 1..200),
        factor in 0.01f64..=1.0,
    ) {
        let (mut b, cands) = balancer(&[("a", 2.0), ("b", 0.5)]);
        let mut c = cfg(Algorithm::Adaptive);
        c.weight_adjustment_factor = factor;
        // Only the weights are under test; passive outages could leave no member at all.
        c.health_check_mode = HealthCheckMode::Active;
        for (ok, ms) in outcomes {
            let m = pick(&mut b, &c, &cands, None);
            b.finish(&c, &m, ok, true, ms, 0);
        }
        for (_, s) in b.stats() {
            prop_assert!(s.effective_weight <= s.weight + 1e-9);
            prop_assert!(s.effective_weight >= s.weight * ADAPTIVE_MIN_SHARE - 1e-9);
            prop_assert_eq!(s.active_connections, 0);
        }
    }
}

#[test]
fn a_partial_weight_map_is_refused_naming_the_members_left_out() {
    let members: Vec<String> = ["aws", "provider1", "provider2"].map(String::from).into();
    let partial = HashMap::from([("aws".to_string(), 0.8), ("provider1".to_string(), 0.2)]);
    let problems = weight_problems(&members, &partial);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "");
    assert!(problems[0].1.contains("not provider2"), "{problems:?}");
    assert!(weight_problems(&members, &HashMap::new()).is_empty());
    let stranger = HashMap::from([("gcp".to_string(), 1.0)]);
    assert_eq!(weight_problems(&members, &stranger)[0].0, "gcp");
}

#[test]
fn setting_one_weight_keeps_the_others() {
    let members: Vec<String> = ["aws", "provider1"].map(String::from).into();
    let w = with_weight(&members, &HashMap::new(), "aws", 0.8).unwrap();
    assert_eq!(
        w,
        BTreeMap::from([("aws".into(), 0.8), ("provider1".into(), 1.0)])
    );
    assert_eq!(
        with_weight(&members, &HashMap::new(), "gcp", 1.0),
        Err(WeightError::NotAMember)
    );
    assert!(matches!(
        with_weight(&members, &HashMap::new(), "aws", 0.0),
        Err(WeightError::Invalid(_))
    ));
}

proptest! {
    /// A weight map is accepted exactly when it is empty or gives every member, and only
    /// members, a positive weight; setting one member's weight on an accepted map gives an
    /// accepted map that differs in that member only.
    #[test]
    fn weight_maps_are_all_or_nothing_and_one_weight_changes_one_member(
        n in 1usize..6,
        given in proptest::collection::vec(proptest::option::of(0.0f64..10.0), 6),
        extra in any::<bool>(),
        target in 0usize..6,
        weight in -1.0f64..10.0,
    ) {
        let members: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let mut weights: HashMap<String, f64> = members
            .iter()
            .zip(&given)
            .filter_map(|(m, w)| w.map(|w| (m.clone(), w)))
            .collect();
        if extra {
            weights.insert("stranger".into(), 1.0);
        }
        let valid = !extra
            && (weights.is_empty() || (weights.len() == n && weights.values().all(|w| *w > 0.0)));
        prop_assert_eq!(weight_problems(&members, &weights).is_empty(), valid);
        if valid {
            let member = format!("m{target}");
            match with_weight(&members, &weights, &member, weight) {
                Ok(after) => {
                    prop_assert!(target < n && weight > 0.0);
                    let after_map: HashMap<String, f64> = after.clone().into_iter().collect();
                    prop_assert!(weight_problems(&members, &after_map).is_empty());
                    for m in &members {
                        let expected = if *m == member {
                            weight
                        } else {
                            weights.get(m).copied().unwrap_or(1.0)
                        };
                        prop_assert_eq!(after[m], expected);
                    }
                }
                Err(WeightError::NotAMember) => prop_assert!(target >= n),
                Err(WeightError::Invalid(_)) => prop_assert!(weight <= 0.0),
            }
        }
    }
}

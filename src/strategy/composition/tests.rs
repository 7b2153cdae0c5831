use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

/// JSON answers merge as objects key by key: lists joined, numbers added, objects merged,
/// any other value kept from the earlier member.
impl Merge for Value {
    fn merge(&mut self, later: &Self) {
        if let (Value::Object(into), Value::Object(from)) = (self, later) {
            merge_objects(into, from);
        }
    }
}

fn merge_objects(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (None, _) => {
                into.insert(k.clone(), v.clone());
            }
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
            (Some(Value::Object(a)), Value::Object(b)) => merge_objects(a, b),
            (Some(Value::Number(a)), Value::Number(b)) => {
                let sum = a.as_i64().unwrap_or(0) + b.as_i64().unwrap_or(0);
                into.insert(k.clone(), json!(sum));
            }
            (Some(_), _) => {}
        }
    }
}

fn ok(name: &str, v: Value) -> (String, Option<Result<Value, ProviderError>>) {
    (name.into(), Some(Ok(v)))
}

fn err(name: &str, kind: ProviderErrorKind) -> (String, Option<Result<Value, ProviderError>>) {
    (
        name.into(),
        Some(Err(ProviderError::new(kind, "BOOM", "failed"))),
    )
}

fn rules(policy: AggregationPolicy) -> AggregationRules {
    AggregationRules {
        policy,
        min_success_count: 1,
        failure_threshold: 1.0,
        require_all_success: false,
    }
}

#[test]
fn require_all_success_fails_the_whole_on_any_member_failure() {
    let strict = AggregationRules {
        require_all_success: true,
        ..rules(AggregationPolicy::MergeAll)
    };
    let outcomes = [
        ok("a", json!({"count": 1})),
        err("b", ProviderErrorKind::Capacity),
        ok("c", json!({"count": 2})),
    ];
    let e = aggregate(&strict, &outcomes).unwrap_err();
    assert_eq!(e.code, "MEMBER_FAILED");
    assert_eq!(e.kind, ProviderErrorKind::Capacity);
    assert!(e.message.contains("b: BOOM"), "{}", e.message);
    // Without it, the same outcomes merge; a member that did not run counts neither way.
    assert!(aggregate(&rules(AggregationPolicy::MergeAll), &outcomes).is_ok());
    let out = aggregate(&strict, &[ok("a", json!({"count": 1})), ("b".into(), None)]).unwrap();
    assert_eq!(out.contributors, ["a"]);
}

#[test]
fn merge_all_concatenates_lists_and_adds_counts_in_member_order() {
    let out = aggregate(
        &rules(AggregationPolicy::MergeAll),
        &[
            ok(
                "a",
                json!({"instance_ids": ["i-1"], "count": 1, "region": "east"}),
            ),
            err("b", ProviderErrorKind::Transient),
            ok(
                "c",
                json!({"instance_ids": ["i-2", "i-3"], "count": 2, "region": "west"}),
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        out.data,
        json!({"instance_ids": ["i-1", "i-2", "i-3"], "count": 3, "region": "east"})
    );
    assert_eq!(out.contributors, ["a", "c"]);
}

#[test]
fn first_success_is_first_in_member_order() {
    let out = aggregate(
        &rules(AggregationPolicy::FirstSuccess),
        &[
            err("a", ProviderErrorKind::Transient),
            ok("b", json!(2)),
            ok("c", json!(3)),
        ],
    )
    .unwrap();
    assert_eq!(
        (out.data, out.contributors),
        (json!(2), vec!["b".to_string()])
    );
}

#[test]
fn majority_wins_over_a_disagreeing_member_and_needs_a_strict_majority() {
    let r = rules(AggregationPolicy::MajorityWins);
    let out = aggregate(
        &r,
        &[
            ok("a", json!({"x": 1})),
            ok("b", json!({"x": 2})),
            ok("c", json!({"x": 1})),
        ],
    )
    .unwrap();
    assert_eq!(out.data, json!({"x": 1}));
    assert_eq!(out.contributors, ["a", "c"]);
    let e = aggregate(&r, &[ok("a", json!(1)), ok("b", json!(2))]).unwrap_err();
    assert_eq!(e.code, "NO_MAJORITY");
    let e = aggregate(
        &r,
        &[
            ok("a", json!(1)),
            err("b", ProviderErrorKind::Transient),
            err("c", ProviderErrorKind::Transient),
        ],
    )
    .unwrap_err();
    assert_eq!(e.code, "NO_MAJORITY");
}

#[test]
fn thresholds_are_checked_before_the_policy() {
    let mut r = rules(AggregationPolicy::MergeAll);
    r.failure_threshold = 0.5;
    let outcomes = [
        ok("a", json!({})),
        err("b", ProviderErrorKind::Auth),
        err("c", ProviderErrorKind::Auth),
    ];
    let e = aggregate(&r, &outcomes).unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.kind),
        ("FAILURE_THRESHOLD_EXCEEDED", ProviderErrorKind::Auth)
    );
    r.failure_threshold = 1.0;
    r.min_success_count = 2;
    assert_eq!(
        aggregate(&r, &outcomes).unwrap_err().code,
        "INSUFFICIENT_SUCCESS"
    );
    let not_run: [(String, Option<Result<Value, ProviderError>>); 1] = [("a".to_string(), None)];
    assert_eq!(aggregate(&r, &not_run).unwrap_err().code, "NO_MEMBER_RAN");
}

#[test]
fn members_that_did_not_run_count_neither_way() {
    let out = aggregate(
        &rules(AggregationPolicy::MajorityWins),
        &[ok("a", json!(1)), ("b".into(), None), ok("c", json!(1))],
    )
    .unwrap();
    assert_eq!(out.contributors, ["a", "c"]);
}

#[test]
fn cycles_are_found_directly_and_through_nesting() {
    let graph: HashMap<&str, Vec<&str>> = HashMap::from([
        ("fb", vec!["lb", "sim-c"]),
        ("lb", vec!["sim-a", "sim-b"]),
        ("loop", vec!["mid"]),
        ("mid", vec!["sim-a", "loop"]),
        ("self", vec!["self"]),
    ]);
    let members = |n: &str| {
        graph
            .get(n)
            .map(|v| v.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default()
    };
    assert_eq!(find_cycle("fb", &members), None);
    assert_eq!(
        find_cycle("loop", &members).unwrap(),
        ["loop", "mid", "loop"]
    );
    assert_eq!(find_cycle("self", &members).unwrap(), ["self", "self"]);
}

proptest! {
    #[test]
    fn merge_all_does_not_depend_on_which_members_finished_first(
        counts in proptest::collection::vec(0i64..100, 1..6),
    ) {
        // The outcomes arrive in member order whatever the completion order was, so the merge
        // is a pure function of member order: lists come out in member order.
        let outcomes: Vec<_> = counts.iter().enumerate()
            .map(|(i, c)| ok(&format!("m{i}"), json!({"ids": [i], "count": c})))
            .collect();
        let out = aggregate(&rules(AggregationPolicy::MergeAll), &outcomes).unwrap();
        let ids: Vec<usize> = (0..counts.len()).collect();
        prop_assert_eq!(&out.data["ids"], &json!(ids));
        prop_assert_eq!(&out.data["count"], &json!(counts.iter().sum::<i64>()));
    }

    #[test]
    fn a_majority_answer_always_wins(agree in 2usize..6, disagree in 0usize..6) {
        prop_assume!(agree > disagree);
        let mut outcomes: Vec<_> = (0..disagree).map(|i| ok(&format!("d{i}"), json!({"v": i + 100}))).collect();
        outcomes.extend((0..agree).map(|i| ok(&format!("a{i}"), json!({"v": 1}))));
        let out = aggregate(&rules(AggregationPolicy::MajorityWins), &outcomes).unwrap();
        prop_assert_eq!(out.data, json!({"v": 1}));
        prop_assert_eq!(out.contributors.len(), agree);
    }
}

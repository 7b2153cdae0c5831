use proptest::prelude::*;
use serde_json::json;

use super::*;

#[test]
fn patches_accumulate_and_null_clears_active_strategy() {
    let first: SettingsPatch = serde_json::from_str(
        r#"{"active_strategy": "a", "circuit_breaker_config": {"failure_threshold": 2}}"#,
    )
    .unwrap();
    let second: SettingsPatch = serde_json::from_str(
        r#"{"active_strategy": null, "circuit_breaker_config": {"recovery_timeout": 9}}"#,
    )
    .unwrap();
    let both = first.then(&second);
    assert_eq!(both.active_strategy, Some(None));
    let base = StrategySettings {
        active_strategy: Some("file".into()),
        ..Default::default()
    };
    let eff = both.apply(&base);
    assert_eq!(eff.active_strategy, None);
    assert_eq!(eff.circuit_breaker.failure_threshold, 2);
    assert_eq!(eff.circuit_breaker.recovery_timeout, 9.0);
    // A stored patch reads back the same, explicit null included.
    let text = serde_json::to_string(&both).unwrap();
    assert_eq!(serde_json::from_str::<SettingsPatch>(&text).unwrap(), both);
    let absent: SettingsPatch = serde_json::from_str("{}").unwrap();
    assert_eq!(absent.active_strategy, None);
}

fn from(v: serde_json::Value) -> SettingsPatch {
    serde_json::from_value(v).unwrap()
}

fn run_time_paths(patch: &SettingsPatch, base: &StrategySettings) -> Vec<String> {
    patch
        .problems(base, &|name| ["a", "b"].contains(&name))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn problems_carry_the_request_paths_of_the_fields_the_patch_sets() {
    let patch = from(
        json!({"active_strategy": "ghost", "fallback_strategies": ["a", "a"],
        "health_check_interval": 1e20, "health_check_timeout": 1e308,
        "health_check_retries": 11, "selection_criteria": {"max_response_time_ms": 0},
        "circuit_breaker_config": {"failure_threshold": 1001, "recovery_timeout": 1e20,
            "half_open_max_calls": 0}}),
    );
    assert_eq!(
        run_time_paths(&patch, &StrategySettings::default()),
        [
            "active_strategy",
            "fallback_strategies[1]",
            "health_check_interval",
            "health_check_timeout",
            "health_check_retries",
            "circuit_breaker_config.failure_threshold",
            "circuit_breaker_config.recovery_timeout",
            "circuit_breaker_config.half_open_max_calls",
            "selection_criteria.max_response_time_ms"
        ]
    );
    // Values the patch leaves alone are not its problem (a fallback since unregistered).
    let base = StrategySettings {
        fallback_strategies: vec!["gone".into()],
        ..Default::default()
    };
    let patch =
        from(json!({"health_check_interval": 60, "circuit_breaker_config": {"enabled": false}}));
    assert!(run_time_paths(&patch, &base).is_empty());
}

#[test]
fn stored_overrides_out_of_bounds_are_left_out_field_by_field() {
    let stored = from(
        json!({"health_check_interval": 1e20, "health_check_retries": 3,
        "circuit_breaker_config": {"failure_threshold": 2, "recovery_timeout": 1e308}}),
    );
    let file = StrategySettings::default();
    let kept = without_problems(stored, &file);
    assert_eq!(
        kept,
        from(json!({"health_check_retries": 3,
            "circuit_breaker_config": {"failure_threshold": 2}}))
    );
    let eff = kept.apply(&file);
    assert_eq!(eff.health_check_interval, file.health_check_interval);
    assert_eq!(
        eff.circuit_breaker.recovery_timeout,
        file.circuit_breaker.recovery_timeout
    );
    assert!(eff.problems(&|_| true).is_empty());
}

/// The file's `strategy.<field>` and the request's field (its name in the API).
const FIELDS: [(&str, &str); 6] = [
    ("health_check_interval", "health_check_interval"),
    ("health_check_timeout", "health_check_timeout"),
    ("health_check_retries", "health_check_retries"),
    (
        "circuit_breaker.failure_threshold",
        "circuit_breaker_config.failure_threshold",
    ),
    (
        "circuit_breaker.recovery_timeout",
        "circuit_breaker_config.recovery_timeout",
    ),
    (
        "circuit_breaker.half_open_max_calls",
        "circuit_breaker_config.half_open_max_calls",
    ),
];

/// `{"a": {"b": value}}` for the path `a.b`. The file's `circuit_breaker` is given whole (its
/// four fields are required there), the others at their defaults.
fn nested(path: &str, value: serde_json::Value) -> serde_json::Value {
    match path.split_once('.') {
        Some(("circuit_breaker", field)) => {
            let mut breaker = serde_json::to_value(BreakerConfig::default()).unwrap();
            breaker[field] = value;
            json!({ "circuit_breaker": breaker })
        }
        _ => path
            .rsplit('.')
            .fold(value, |inner, key| json!({ key: inner })),
    }
}

/// Whether the configuration file accepts `strategy` (with strategies `a` and `b` defined).
fn file_accepts(strategy: serde_json::Value) -> bool {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    let text = json!({"strategy": strategy, "providers": [
        {"name": "a", "type": "simulated"}, {"name": "b", "type": "simulated"}]});
    std::io::Write::write_all(&mut f, text.to_string().as_bytes()).unwrap();
    crate::config::load_with_env(&[f.path()], &[], &|_| None).is_ok()
}

/// Whether `PUT /api/v1/providers/configuration` accepts `body` (with `a` and `b` registered):
/// it reads (else 422) and has no problems (else 422).
fn run_time_accepts(body: serde_json::Value) -> bool {
    serde_json::from_value::<SettingsPatch>(body)
        .is_ok_and(|p| run_time_paths(&p, &StrategySettings::default()).is_empty())
}

fn number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |v| v.is_finite())
            .prop_map(|v| json!(v)),
        (-10.0f64..100_000.0).prop_map(|v| json!(v)),
        any::<i64>().prop_map(|v| json!(v)),
        (-5i64..5_000).prop_map(|v| json!(v)),
        prop::sample::select(vec![
            0.0, 1.0, 0.5, 10.0, 11.0, 100.0, 101.0, 1000.0, 1001.0, 3600.0, 3600.5, 86400.0,
            86400.5, 1e20, 1e308, -1.0
        ])
        .prop_map(|v| json!(v)),
    ]
}

proptest! {
    #[test]
    fn the_file_and_the_api_accept_the_same_numbers(field in 0..FIELDS.len(), value in number()) {
        let (file, api) = FIELDS[field];
        prop_assert_eq!(
            file_accepts(nested(file, value.clone())),
            run_time_accepts(nested(api, value.clone())),
            "{} = {}", file, value
        );
    }

    #[test]
    fn the_file_and_the_api_accept_the_same_names(
        active in prop::option::of(prop::sample::select(vec!["a", "b", "ghost", "bad name"])),
        fallback in prop::collection::vec(prop::sample::select(vec!["a", "b", "ghost", "-x"]), 0..5),
    ) {
        prop_assert_eq!(
            file_accepts(json!({"active_strategy": active})),
            run_time_accepts(json!({"active_strategy": active}))
        );
        prop_assert_eq!(
            file_accepts(json!({"fallback_strategies": fallback})),
            run_time_accepts(json!({"fallback_strategies": fallback}))
        );
    }
}

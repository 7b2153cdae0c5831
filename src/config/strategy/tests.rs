use super::*;

fn paths(s: &StrategySettings) -> Vec<String> {
    s.problems(&|name| ["a", "b", "c"].contains(&name))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn the_defaults_are_valid() {
    assert!(paths(&StrategySettings::default()).is_empty());
}

#[test]
fn huge_seconds_are_refused_with_the_bound_in_the_message() {
    for value in [1e20, 1e308, f64::INFINITY, f64::NAN, -1.0] {
        let s = StrategySettings {
            health_check_interval: value,
            health_check_initial_delay: value,
            health_check_timeout: value,
            operation_timeout: value,
            circuit_breaker: BreakerConfig {
                recovery_timeout: value,
                ..Default::default()
            },
            ..Default::default()
        };
        let problems = s.problems(&|_| true);
        let found: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            found,
            [
                "health_check_interval",
                "health_check_initial_delay",
                "health_check_timeout",
                "operation_timeout",
                "circuit_breaker.recovery_timeout"
            ],
            "{value}"
        );
        assert!(
            problems[0].1.contains("at most 86400 seconds"),
            "{problems:?}"
        );
        assert!(
            problems[2].1.contains("at most 3600 seconds"),
            "{problems:?}"
        );
    }
}

#[test]
fn the_bounds_themselves_are_accepted_and_one_step_beyond_refused() {
    let at_bounds = StrategySettings {
        health_check_interval: MAX_INTERVAL_SECONDS,
        health_check_initial_delay: MAX_INTERVAL_SECONDS,
        health_check_timeout: MAX_TIMEOUT_SECONDS,
        health_check_retries: MAX_HEALTH_CHECK_RETRIES,
        operation_timeout: MAX_TIMEOUT_SECONDS,
        circuit_breaker: BreakerConfig {
            enabled: true,
            failure_threshold: MAX_FAILURE_THRESHOLD,
            recovery_timeout: MAX_RECOVERY_TIMEOUT_SECONDS,
            half_open_max_calls: MAX_HALF_OPEN_MAX_CALLS,
        },
        ..Default::default()
    };
    assert!(paths(&at_bounds).is_empty());
    let low = StrategySettings {
        health_check_interval: MIN_HEALTH_CHECK_INTERVAL_SECONDS,
        health_check_initial_delay: 0.0,
        health_check_retries: 0,
        circuit_breaker: BreakerConfig {
            failure_threshold: 1,
            half_open_max_calls: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(paths(&low).is_empty());
    let beyond = StrategySettings {
        health_check_interval: MAX_INTERVAL_SECONDS + 0.5,
        health_check_initial_delay: -0.5,
        health_check_timeout: 0.0,
        health_check_retries: MAX_HEALTH_CHECK_RETRIES + 1,
        operation_timeout: MAX_TIMEOUT_SECONDS + 0.5,
        circuit_breaker: BreakerConfig {
            enabled: true,
            failure_threshold: MAX_FAILURE_THRESHOLD + 1,
            recovery_timeout: 0.0,
            half_open_max_calls: 0,
        },
        ..Default::default()
    };
    assert_eq!(
        paths(&beyond),
        [
            "health_check_interval",
            "health_check_initial_delay",
            "health_check_timeout",
            "health_check_retries",
            "operation_timeout",
            "circuit_breaker.failure_threshold",
            "circuit_breaker.recovery_timeout",
            "circuit_breaker.half_open_max_calls"
        ]
    );
    let too_often = StrategySettings {
        health_check_interval: 0.5,
        ..Default::default()
    };
    assert_eq!(paths(&too_often), ["health_check_interval"]);
}

#[test]
fn strategy_names_must_be_known_valid_and_listed_once() {
    let s = StrategySettings {
        active_strategy: Some("ghost".into()),
        fallback_strategies: vec!["a".into(), "b".into(), "a".into(), "bad name".into()],
        ..Default::default()
    };
    let problems = s.problems(&|name| ["a", "b", "c"].contains(&name));
    assert_eq!(
        problems,
        [
            (
                "active_strategy".to_string(),
                "no strategy named 'ghost'".to_string()
            ),
            (
                "fallback_strategies[2]".to_string(),
                "'a' is listed more than once".to_string()
            ),
            (
                "fallback_strategies[3]".to_string(),
                check_strategy_name("bad name").unwrap_err()
            ),
        ]
    );
    let many = StrategySettings {
        fallback_strategies: (0..=MAX_FALLBACK_STRATEGIES)
            .map(|i| format!("s{i}"))
            .collect(),
        ..Default::default()
    };
    let problems = many.problems(&|_| true);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "fallback_strategies");
    assert!(problems[0].1.contains("at most 100 entries"));
    let enough = StrategySettings {
        fallback_strategies: many.fallback_strategies[..MAX_FALLBACK_STRATEGIES].to_vec(),
        ..Default::default()
    };
    assert!(enough.problems(&|_| true).is_empty());
}

#[test]
fn selection_criteria_are_checked_below_their_key() {
    let s = StrategySettings {
        selection_criteria: SelectionCriteria {
            min_success_rate: Some(101.0),
            max_response_time_ms: Some(1e20),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        paths(&s),
        [
            "selection_criteria.min_success_rate",
            "selection_criteria.max_response_time_ms"
        ]
    );
}

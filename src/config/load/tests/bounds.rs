//! Settings out of their bounds, each an error named at its key.

use super::{env_of, load_text};
use crate::config::load::load_with_env;

#[test]
fn retention_defaults_are_the_documented_ones_and_bad_values_name_their_key() {
    let (vars, lookup) = env_of(&[("OHFP_DATABASE__RETENTION__HOSTFACTORY_DAYS", "3")]);
    let c = load_with_env(&[], &vars, &lookup).unwrap();
    assert_eq!(
        c.database.retention,
        crate::config::RetentionConfig {
            hostfactory_days: 3.0,
            ..Default::default()
        },
        "config/default.json shows the built-in defaults"
    );
    let err = load_text(
        r#"{"database": {"retention": {"hostfactory_days": 0, "batch_size": 0}}}"#,
        &[],
    )
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "database.retention.hostfactory_days",
            "database.retention.batch_size"
        ]
    );
}

#[test]
fn strategy_settings_out_of_bounds_are_errors_at_their_key() {
    let err = load_text(
        r#"{"strategy": {"health_check_interval": 1e20, "operation_timeout": 1e308,
            "fallback_strategies": ["a", "a"]},
            "providers": [{"name": "a", "type": "simulated"}]}"#,
        &[],
    )
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "strategy.fallback_strategies[1]",
            "strategy.health_check_interval",
            "strategy.operation_timeout"
        ]
    );
    assert!(
        err.to_string().contains(
            "strategy.health_check_interval: must be at least 1 and at most 86400 seconds, got 1e20"
        ),
        "{err}"
    );
}

#[test]
fn a_strategys_own_breaker_is_laid_over_the_global_one_with_the_same_bounds() {
    let err = load_text(
        r#"{"providers": [{"name": "a", "type": "simulated",
            "circuit_breaker": {"failure_threshold": 1001, "recovery_timeout": 0}}]}"#,
        &[],
    )
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "providers[0].circuit_breaker.failure_threshold",
            "providers[0].circuit_breaker.recovery_timeout"
        ]
    );
    let cfg = load_text(
        r#"{"strategy": {"circuit_breaker": {"failure_threshold": 5, "recovery_timeout": 30}},
            "providers": [{"name": "a", "type": "simulated", "circuit_breaker": {"failure_threshold": 10}}]}"#,
        &[],
    )
    .unwrap();
    let own = cfg.providers[0].breaker(&cfg.strategy.circuit_breaker);
    assert_eq!((own.failure_threshold, own.recovery_timeout), (10, 30.0));
}

#[test]
fn the_strategy_settings_config_default_json_shows_are_the_ones_used() {
    let c = load_with_env(&[], &[], &|_| None).unwrap();
    // Its fallback list names its own two providers; everything else is a default.
    let shown = crate::config::StrategySettings {
        fallback_strategies: Vec::new(),
        ..c.strategy
    };
    assert_eq!(shown, crate::config::StrategySettings::default());
    // And a file that leaves the section out gets the same values.
    let bare = load_text(r#"{"providers": []}"#, &[]).unwrap();
    assert_eq!(bare.strategy, crate::config::StrategySettings::default());
}

#[test]
fn connection_settings_have_bounds_named_at_their_key() {
    let c = load_text(
        r#"{"server": {"header_read_timeout_seconds": 2.5, "max_connections": 64}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.server.header_read_timeout_seconds, 2.5);
    assert_eq!(c.server.max_connections, 64);
    for (text, path) in [
        (
            r#"{"server": {"header_read_timeout_seconds": 0}}"#,
            "server.header_read_timeout_seconds",
        ),
        (
            r#"{"server": {"header_read_timeout_seconds": 1e20}}"#,
            "server.header_read_timeout_seconds",
        ),
        (
            r#"{"server": {"max_connections": 0}}"#,
            "server.max_connections",
        ),
        (
            r#"{"server": {"max_connections": 1000000}}"#,
            "server.max_connections",
        ),
    ] {
        let err = load_text(text, &[]).unwrap_err();
        assert_eq!(err.errors[0].path, path, "{text}");
    }
}

#[test]
fn a_token_rate_limit_is_bounded_at_its_key() {
    let text = r#"{"server": {"auth": {"enabled": true, "tokens": [
        {"name": "a", "scope": "read-write", "token": "a", "rate_limit": {"per_second": 0, "burst": 0}},
        {"name": "b", "scope": "read-only", "token": "b", "rate_limit": {"per_second": 1e9, "burst": 1000000}},
        {"name": "c", "scope": "hostfactory", "token": "c", "rate_limit": {"per_second": 0.5, "burst": 1}}
    ]}}}"#;
    let e = load_text(text, &[]).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.auth.tokens[0].rate_limit.per_second",
            "server.auth.tokens[0].rate_limit.burst",
            "server.auth.tokens[1].rate_limit.per_second",
            "server.auth.tokens[1].rate_limit.burst",
        ],
        "{e}"
    );
    let e = load_text(
        r#"{"server": {"auth": {"tokens": [{"name": "x", "scope": "read-only", "token": "t",
            "rate_limit": {"per_second": 5, "burst": -1}}]}}}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.errors[0].path, "server.auth.tokens[0].rate_limit.burst",
        "{e}"
    );
    let c = load_text(
        r#"{"server": {"auth": {"tokens": [{"name": "x", "scope": "read-only", "token": "t",
            "rate_limit": {"per_second": 50, "burst": 100}}]}}}"#,
        &[],
    )
    .unwrap();
    let limit = c.server.auth.tokens[0].rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.burst), (50.0, 100));
}

#[test]
fn auth_tokens_are_checked_at_their_key() {
    let text = r#"{"server": {"auth": {"enabled": true, "tokens": [
        {"name": "ops", "scope": "read-write", "token": "${OPS_TOKEN}"},
        {"name": "ops", "scope": "read-only", "token": "a"},
        {"name": "bad name", "scope": "hostfactory"},
        {"name": "twin", "scope": "read-only", "token": "a"}
    ]}}}"#;
    let e = load_text(text, &[("OPS_TOKEN", "o")]).unwrap_err();
    let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.auth.tokens[1].name",
            "server.auth.tokens[2].name",
            "server.auth.tokens[2].token",
            "server.auth.tokens",
        ],
        "{e}"
    );
    let e = load_text(
        r#"{"server": {"auth": {"tokens": [{"name": "x", "scope": "admin", "token": "t"}]}}}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(e.errors[0].path, "server.auth.tokens[0].scope", "{e}");
    let c = load_text(
        r#"{"server": {"auth": {"enabled": true, "token": "${OHFP_TOKEN}"}}}"#,
        &[("OHFP_TOKEN", "t")],
    )
    .unwrap();
    let all: Vec<_> = c.server.auth.credentials().collect();
    assert_eq!(
        all,
        [("default", crate::config::TokenScope::ReadWrite, "t")]
    );
}

#[test]
fn every_timer_of_the_file_has_an_upper_bound() {
    let err = load_text(
        r#"{"server": {"request_timeout_seconds": 1e308},
            "hostfactory": {"reconcile_interval_seconds": 1e308, "pending_timeout_seconds": 1e308,
                            "spot_grace_seconds": 9223372036854775807,
                            "unclaimed_request_timeout_seconds": 1e308},
            "database": {"retention": {"prune_interval_seconds": 1e308, "events_days": 1e308}}}"#,
        &[],
    )
    .unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "server.request_timeout_seconds",
            "database.retention.prune_interval_seconds",
            "database.retention.events_days",
            "hostfactory.reconcile_interval_seconds",
            "hostfactory.pending_timeout_seconds",
            "hostfactory.unclaimed_request_timeout_seconds",
            "hostfactory.spot_grace_seconds"
        ]
    );
    assert!(err.to_string().contains("at most 86400"), "{err}");
}

#[test]
fn the_unclaimed_request_timeout_is_on_by_default_and_zero_turns_it_off() {
    let c = load_text("{}", &[]).unwrap();
    assert_eq!(c.hostfactory.unclaimed_request_timeout_seconds, 300.0);
    let c = load_text(
        r#"{"hostfactory": {"unclaimed_request_timeout_seconds": 0}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.hostfactory.unclaimed_request_timeout_seconds, 0.0);
    let err = load_text(
        r#"{"hostfactory": {"unclaimed_request_timeout_seconds": -1}}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(
        err.errors[0].path,
        "hostfactory.unclaimed_request_timeout_seconds"
    );
    assert!(err.to_string().contains("from 0 (never cancel)"), "{err}");
}

#[test]
fn database_url_names_sqlite_or_postgres_and_keeps_its_password_out_of_messages() {
    let ok = load_text(
        r#"{"database": {"url": "postgres://ohfp:${PGPASSWORD}@db.example:5432/ohfp"}}"#,
        &[("PGPASSWORD", "s3cret-pw")],
    )
    .unwrap();
    let location = ok.database.location().unwrap();
    assert_eq!(location.shown(), "postgres://ohfp:***@db.example:5432/ohfp");
    let lite = load_text(r#"{"database": {"url": "sqlite://var/ohfp.db"}}"#, &[]).unwrap();
    assert_eq!(
        lite.database.location().unwrap(),
        crate::store::Location::SqliteFile("var/ohfp.db".into())
    );
    let err = load_text(
        r#"{"database": {"url": "mysql://root:hunter2@db/ohfp"}}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(err.errors[0].path, "database.url");
    assert!(
        err.errors[0].message.contains("postgres://"),
        "{}",
        err.errors[0].message
    );
    assert!(
        !err.errors[0].message.contains("hunter2"),
        "{}",
        err.errors[0].message
    );
    let err = load_text(r#"{"database": {"url": "sqlite://"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "database.url");
}

mod bounds;

use std::io::Write;

use super::*;
use crate::strategy::SelectionPolicy;

pub(super) fn env_of(
    pairs: &[(&str, &str)],
) -> (Vec<(String, String)>, impl Fn(&str) -> Option<String>) {
    let vars: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup_vars = vars.clone();
    let lookup = move |name: &str| {
        lookup_vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    (vars, lookup)
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

pub(super) fn load_text(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let f = file_with(text);
    let (vars, lookup) = env_of(pairs);
    load_with_env(&[f.path()], &vars, &lookup)
}

#[test]
fn embedded_default_has_two_simulated_providers() {
    let (vars, lookup) = env_of(&[]);
    let c = load_with_env(&[], &vars, &lookup).unwrap();
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sim-primary", "sim-secondary"]);
    assert!(c.providers.iter().all(|p| p.provider_type == "simulated"));
    assert_eq!(c.server.bind, "127.0.0.1:8000");
    assert_eq!(c.database.path, "data/ohfp.db");
}

#[test]
fn shipped_config_files_are_valid() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
    for name in ["default.json", "aws.json"] {
        let path = dir.join(name);
        let res = load_with_env(&[&path], &[], &|_| None);
        assert!(res.is_ok(), "{name}: {}", res.unwrap_err());
    }
    // The environment files are overlays of the default.
    for env in ["development", "production"] {
        let pairs = [("OHFP_ENV", env)];
        let (vars, lookup) = env_of(&pairs);
        let res = load_with_env(&[&dir.join("default.json")], &vars, &lookup);
        assert!(res.is_ok(), "{env}: {}", res.unwrap_err());
    }
}

#[test]
fn files_are_laid_over_each_other_in_order() {
    let base = file_with(
        r#"{"server": {"bind": "127.0.0.1:7000", "request_timeout_seconds": 5},
            "providers": [{"name": "a", "type": "simulated", "config": {"region": "r1", "capacity": 5}}]}"#,
    );
    let overlay = file_with(
        r#"{"server": {"bind": "127.0.0.1:7001"},
            "providers": [{"name": "a", "config": {"capacity": 50}}, {"name": "b", "type": "simulated"}]}"#,
    );
    let c = load_with_env(&[base.path(), overlay.path()], &[], &|_| None).unwrap();
    assert_eq!(c.server.bind, "127.0.0.1:7001");
    assert_eq!(c.server.request_timeout_seconds, 5.0);
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.providers[0].config["region"], "r1");
    assert_eq!(c.providers[0].config["capacity"], 50);
    // A problem of the merged result names every layer.
    let bad = file_with(r#"{"providers": [{"name": "a", "config": {"capacity": -1}}]}"#);
    let err = load_with_env(&[base.path(), bad.path()], &[], &|_| None).unwrap_err();
    assert_eq!(err.errors[0].path, "providers[0].config.capacity");
    assert!(err.source.contains(" + "), "{}", err.source);
    // A layer that is not JSON is named alone.
    let broken = file_with("{");
    let err = load_with_env(&[base.path(), broken.path()], &[], &|_| None).unwrap_err();
    assert_eq!(err.source, broken.path().display().to_string());
}

#[test]
fn ohfp_env_lays_its_file_over_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("site.json");
    std::fs::write(
        &base,
        r#"{"providers": [{"name": "sim-a", "type": "simulated"}, {"name": "sim-b", "type": "simulated", "priority": 1}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("staging.json"),
        r#"{"provider": {"strategy": {"health_check_interval_seconds": 45}, "fallback": {"circuit_breaker_threshold": 3}}}"#,
    )
    .unwrap();
    let (vars, lookup) = env_of(&[("OHFP_ENV", "staging")]);
    let c = load_with_env(&[&base], &vars, &lookup).unwrap();
    assert_eq!(c.strategy.health_check_interval, 45.0);
    assert_eq!(c.strategy.active_strategy.as_deref(), Some("fallback"));
    let fallback = c.providers.iter().find(|p| p.name == "fallback").unwrap();
    assert_eq!(fallback.config["primary"], "sim-a");
    assert_eq!(fallback.config["fallbacks"], serde_json::json!(["sim-b"]));

    let (vars, lookup) = env_of(&[("OHFP_ENV", "nowhere")]);
    let err = load_with_env(&[&base], &vars, &lookup).unwrap_err();
    assert_eq!(err.errors[0].path, "OHFP_ENV");
    assert!(err.to_string().contains("nowhere.json"), "{err}");
    let (vars, lookup) = env_of(&[("OHFP_ENV", "../etc/passwd")]);
    let err = load_with_env(&[&base], &vars, &lookup).unwrap_err();
    assert!(err.to_string().contains("not an environment name"), "{err}");
}

#[test]
fn the_guides_configuration_file_loads_as_written() {
    // The usage guide's "Configuration File Structure", as printed.
    let guide = include_str!("../../../tests/fixtures/guides/config.json");
    let c = load_text(
        guide,
        &[("PROVIDER1_API_KEY", "k1"), ("PROVIDER2_API_KEY", "k2")],
    )
    .unwrap();
    let kinds: Vec<(&str, &str)> = c
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.provider_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("aws", "aws"),
            ("provider1", "http"),
            ("provider2", "http"),
            ("load_balancer", "load_balancer"),
            ("fallback", "fallback")
        ]
    );
    assert_eq!(c.providers[1].config["api_key"], "k1");
    assert_eq!(
        c.providers[3].config["strategies"],
        serde_json::json!(["aws", "provider1", "provider2"])
    );
    assert_eq!(c.strategy.active_strategy.as_deref(), Some("fallback"));
    assert!(c.strategy.failover_enabled && c.strategy.metrics_collection_enabled);

    // The guide's production.json over it keeps the members and changes the thresholds.
    let base = file_with(guide);
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
    let env = [("PROVIDER1_API_KEY", "k1"), ("PROVIDER2_API_KEY", "k2")];
    let (vars, lookup) = env_of(&env);
    let c = load_with_env(&[base.path(), &dir.join("production.json")], &vars, &lookup).unwrap();
    assert_eq!(c.strategy.health_check_interval, 30.0);
    assert_eq!(c.strategy.selection_criteria.min_success_rate, Some(99.5));
    let fallback = c.providers.iter().find(|p| p.name == "fallback").unwrap();
    assert_eq!(fallback.config["primary"], "aws");
    assert_eq!(fallback.config["circuit_breaker_threshold"], 3);
    let lb = c
        .providers
        .iter()
        .find(|p| p.name == "load_balancer")
        .unwrap();
    assert_eq!(lb.config["weights"]["aws"], 0.6);
    assert_eq!(lb.config["health_check_mode"], "active");

    // `provider.type` must name a section or a provider type.
    let err = load_text(r#"{"provider": {"type": "azure"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "provider.type");
    let c = load_text(
        r#"{"provider": {"type": "simulated", "one": {"type": "simulated"}, "two": {"type": "simulated"}}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.strategy.active_strategy.as_deref(), Some("one"));
}

#[test]
fn log_files_kept_are_configurable_and_at_least_one() {
    let (vars, lookup) = env_of(&[]);
    assert_eq!(
        load_with_env(&[], &vars, &lookup)
            .unwrap()
            .logging
            .max_files,
        7
    );
    let c = load_text(r#"{"logging": {"max_files": 30}}"#, &[]).unwrap();
    assert_eq!(c.logging.max_files, 30);
    let err = load_text(r#"{"logging": {"max_files": 0}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "logging.max_files");
}

#[test]
fn env_overrides_nest_with_double_underscore_and_index_providers_by_name() {
    let (vars, lookup) = env_of(&[
        ("OHFP_SERVER__BIND", "0.0.0.0:9000"),
        ("OHFP_STRATEGY__SELECTION_POLICY", "round_robin"),
        ("OHFP_PROVIDERS__SIM_SECONDARY__CONFIG__FAILURE_RATE", "0.5"),
        ("OHFP_PROVIDERS__0__PRIORITY", "7"),
        ("OHFP_URL", "http://elsewhere"),
    ]);
    let c = load_with_env(&[], &vars, &lookup).unwrap();
    assert_eq!(c.server.bind, "0.0.0.0:9000");
    assert_eq!(c.strategy.selection_policy, SelectionPolicy::RoundRobin);
    assert_eq!(c.providers[1].config["failure_rate"], 0.5);
    assert_eq!(c.providers[0].priority, 7);
}

#[test]
fn unset_variable_is_named_with_its_path() {
    let err = load_text(r#"{"database": {"path": "${OHFP_TEST_DB_DIR}/x.db"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "database.path");
    assert!(
        err.errors[0]
            .message
            .contains("OHFP_TEST_DB_DIR is not set")
    );
    let ok = load_text(
        r#"{"database": {"path": "${OHFP_TEST_DB_DIR:-/tmp}/x.db"}, "server": {"bind": "127.0.0.1:${PORT}"}}"#,
        &[("PORT", "8123")],
    )
    .unwrap();
    assert_eq!(ok.database.path, "/tmp/x.db");
    assert_eq!(ok.server.bind, "127.0.0.1:8123");
}

#[test]
fn wrong_type_unknown_policy_and_duplicates_are_reported_with_paths() {
    let err = load_text(r#"{"server": {"request_timeout_seconds": "soon"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "server.request_timeout_seconds");
    let err = load_text(r#"{"strategy": {"selection_policy": "fastest"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "strategy.selection_policy");
    assert!(
        err.errors[0]
            .message
            .contains("unknown selection policy 'fastest'")
    );
    let err = load_text(
        r#"{"providers": [{"name": "a", "type": "simulated"}, {"name": "a", "type": "simulated"}]}"#,
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("providers[1].name: duplicate strategy name 'a'"),
        "{err}"
    );
    let err = load_text(
        r#"{"providers": [{"name": "health", "type": "simulated"}]}"#,
        &[],
    )
    .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = load_text(r#"{"servre": {}}"#, &[]).unwrap_err();
    assert!(err.to_string().contains("unknown field `servre`"), "{err}");
    let err = load_text("{ not json", &[]).unwrap_err();
    assert!(
        err.to_string().contains("not valid JSON at line 1"),
        "{err}"
    );
    let err = load_text(
        r#"{"providers": [{"name": "a", "type": "simulated", "config": {"failure_rate": 3}}]}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(err.errors[0].path, "providers[0].config.failure_rate");
    let err = load_text(
        r#"{"providers": [{"name": "a", "type": "openstack"}]}"#,
        &[],
    )
    .unwrap_err();
    assert_eq!(err.errors[0].path, "providers[0].type");
    let err = load_text(r#"{"strategy": {"active_strategy": "nope"}}"#, &[]).unwrap_err();
    assert_eq!(err.errors[0].path, "strategy.active_strategy");
}

#[test]
fn guide_shape_maps_onto_the_model() {
    let c = load_text(
        r#"{
          "version": "2.0",
          "provider": {
            "strategy": {
              "selection_policy": "performance_based",
              "health_check_interval_seconds": 15,
              "failover_enabled": false,
              "metrics_collection_enabled": false,
              "selection_criteria": {"min_success_rate": 95.0, "max_response_time_ms": 5000, "require_healthy": true}
            },
            "sim-east": {"type": "simulated", "region": "sim-east-1", "failure_rate": 0.1,
                         "circuit_breaker": {"failure_threshold": 10}},
            "sim-west": {"type": "simulated", "region": "sim-west-1"}
          }
        }"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        c.strategy.selection_policy,
        SelectionPolicy::PerformanceBased
    );
    assert_eq!(c.strategy.health_check_interval, 15.0);
    assert!(!c.strategy.failover_enabled && !c.strategy.metrics_collection_enabled);
    assert_eq!(c.strategy.selection_criteria.min_success_rate, Some(95.0));
    let names: Vec<&str> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["sim-east", "sim-west"]);
    assert_eq!(c.providers[0].config["region"], "sim-east-1");
    assert!(!c.providers[0].config.contains_key("type"));
    // A section's own breaker settings belong to the strategy, not to its provider config.
    let own = c.providers[0].circuit_breaker.as_ref().unwrap();
    assert_eq!(own.failure_threshold, Some(10));
    assert!(!c.providers[0].config.contains_key("circuit_breaker"));
}

#[test]
fn reference_schema_shape_maps_onto_the_model() {
    let c = load_text(
        r#"{"provider": {
            "selection_policy": "ROUND_ROBIN",
            "active_provider": "b",
            "health_check_interval": 45,
            "circuit_breaker": {"enabled": true, "failure_threshold": 2, "recovery_timeout": 10, "half_open_max_calls": 1},
            "providers": [
              {"name": "a", "type": "simulated", "priority": 1, "weight": 10, "config": {"region": "r1"}},
              {"name": "b", "type": "simulated", "enabled": false, "config": {}}
            ]}}"#,
        &[],
    )
    .unwrap();
    assert_eq!(c.strategy.selection_policy, SelectionPolicy::RoundRobin);
    assert_eq!(c.strategy.active_strategy.as_deref(), Some("b"));
    assert_eq!(c.strategy.circuit_breaker.failure_threshold, 2);
    assert_eq!(c.providers[0].weight, 10.0);
    assert!(!c.providers[1].enabled);
}

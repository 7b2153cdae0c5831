//! Every example of the two guides that define the product, run as written:
//! - the Provider Strategy Guide: each `python run.py <command> --data '…'` as
//!   `ohfp <command> --data '…'` with the guide's JSON unchanged, against strategies carrying
//!   the guide's names (`aws-primary`, `aws-backup`, …) on simulated clouds (the AWS provider
//!   itself is proven against moto in `aws.rs`);
//! - the Provider Strategy Pattern usage guide: each Python call that has a service meaning, as
//!   the route or command the README maps it to, and its configuration files as printed, with
//!   only environment variables set.

use std::path::Path;
use std::process::{Output, Stdio};

use ohfp::config::Config;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, eventually, get, post, serve, test_config};
use crate::support::example_provider::ExampleProvider;
use crate::support::moto::Moto;

const BIN: &str = env!("CARGO_BIN_EXE_ohfp");

/// `ohfp <command> [args] --data '<json>'` against `app`; the answer on stdout, parsed.
async fn ohfp(app: &TestApp, command: &str, args: &[&str], data: Option<&str>) -> Value {
    let out = run(app, command, args, data).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command} {args:?} {data:?}: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{command}: {e}: {stdout}"))
}

/// The problem a command was refused with (exit 1, problem+json on stderr).
async fn ohfp_refused(app: &TestApp, command: &str, args: &[&str], data: Option<&str>) -> Value {
    let out = run(app, command, args, data).await;
    assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
    serde_json::from_slice(&out.stderr).expect("a problem on stderr")
}

async fn run(app: &TestApp, command: &str, args: &[&str], data: Option<&str>) -> Output {
    let url = format!("http://{}", app.addr);
    let mut cmd = Command::new(BIN);
    cmd.arg(command).args(args).args(["--url", &url]);
    if let Some(data) = data {
        cmd.args(["--data", data]);
    }
    cmd.env_remove("OHFP_URL")
        .env_remove("OHFP_TOKEN")
        .output()
        .await
        .expect("run ohfp")
}

/// One HostFactory template named as the guide's requestMachines example names it.
fn web_template(dir: &Path) -> String {
    let path = dir.join("templates.json");
    let templates = json!({"templates": [{
        "templateId": "web", "maxNumber": 10, "imageId": "ami-0123456789abcdef0",
        "vmType": "m5.large", "subnetId": "subnet-0123456789abcdef0",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"],
                       "nram": ["Numeric", "8192"]}
    }]});
    std::fs::write(&path, templates.to_string()).unwrap();
    path.display().to_string()
}

/// The strategies the Provider Strategy Guide's examples name.
fn strategy_guide_config(dir: &Path) -> Config {
    let mut cfg = test_config(&dir.join("ohfp.db"));
    let sim = |name: &str, priority: i64, capabilities: Value| {
        serde_json::from_value(json!({
            "name": name, "type": "simulated", "priority": priority,
            "capabilities": capabilities,
            "config": {"region": format!("{name}-1"), "latency_ms": 0, "boot_seconds": 0.2,
                       "shutdown_seconds": 0.2}
        }))
        .unwrap()
    };
    cfg.providers = vec![
        sim("aws-primary", 0, json!(["instances", "load_balancers"])),
        sim("aws-secondary", 1, json!(["instances"])),
        sim("aws-backup", 2, json!(["instances"])),
        sim("aws-spot", 3, json!(["instances", "spot_instances"])),
    ];
    cfg.strategy.fallback_strategies = vec!["aws-secondary".into(), "aws-backup".into()];
    cfg.hostfactory.templates_path = Some(web_template(dir));
    cfg.hostfactory.reconcile_interval_seconds = 0.1;
    cfg
}

#[tokio::test]
async fn the_provider_strategy_guide_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(strategy_guide_config(dir.path())).await;

    // GETTING STARTED 1: health of all providers, then of one.
    let all = ohfp(&app, "getProviderHealth", &[], None).await;
    assert_eq!(all["strategies"].as_array().unwrap().len(), 4, "{all}");
    let one = ohfp(&app, "getProviderHealth", &["--name", "aws-primary"], None).await;
    assert_eq!(one["strategy_name"], "aws-primary", "{one}");

    // 2: every provider, then the healthy ones.
    let listed = ohfp(&app, "listAvailableProviders", &[], None).await;
    assert_eq!(listed["count"], 4, "{listed}");
    let healthy = ohfp(
        &app,
        "listAvailableProviders",
        &[],
        Some(r#"{"healthy_only": true}"#),
    )
    .await;
    assert!(healthy["count"].as_u64().unwrap() <= 4, "{healthy}");

    // 3: an operation with automatic selection, then on a named provider.
    let created = ohfp(
        &app,
        "executeProviderOperation",
        &[],
        Some(
            r#"{
"operation_type": "CREATE_INSTANCES",
"parameters": {
"template_id": "web-server",
"count": 2
}
}"#,
        ),
    )
    .await;
    assert_eq!(created["success"], true, "{created}");
    assert_eq!(created["data"]["instance_ids"].as_array().unwrap().len(), 2);
    let overridden = ohfp(
        &app,
        "executeProviderOperation",
        &[],
        Some(
            r#"{
"operation_type": "CREATE_INSTANCES",
"parameters": {
"template_id": "web-server",
"count": 2
},
"strategy_override": "aws-primary"
}"#,
        ),
    )
    .await;
    assert_eq!(overridden["metadata"]["strategy_used"], "aws-primary");

    // PROVIDER OPERATIONS: each of the six operation types.
    let ids = overridden["data"]["instance_ids"].clone();
    for (operation, parameters) in [
        ("GET_INSTANCE_STATUS", json!({"instance_ids": ids})),
        (
            "VALIDATE_TEMPLATE",
            json!({"template_config": {"templateId": "t", "imageId": "ami-1", "vmType": "m5.large"}}),
        ),
        ("VALIDATE_TEMPLATE", json!({"template_id": "web"})),
        ("GET_AVAILABLE_TEMPLATES", json!({})),
        ("HEALTH_CHECK", json!({})),
        ("TERMINATE_INSTANCES", json!({"instance_ids": ids})),
    ] {
        let body = json!({"operation_type": operation, "parameters": parameters,
                          "strategy_override": "aws-primary"});
        let answer = ohfp(
            &app,
            "executeProviderOperation",
            &[],
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(answer["success"], true, "{operation}: {answer}");
    }

    // Provider Selection Criteria, as printed.
    let criteria = r#"{
"required_capabilities": ["instances", "load_balancers"],
"min_success_rate": 95.0,
"max_response_time_ms": 5000,
"require_healthy": true,
"exclude_strategies": ["aws-backup"],
"prefer_strategies": ["aws-primary"]
}"#;
    let body =
        format!(r#"{{"operation_type": "CREATE_INSTANCES", "selection_criteria": {criteria}}}"#);
    let selected = ohfp(&app, "selectProviderStrategy", &[], Some(&body)).await;
    assert_eq!(selected["selected_strategy"], "aws-primary", "{selected}");

    // CONFIGURATION: each selection policy, then the guide's configureProviderStrategy.
    for policy in [
        "FIRST_AVAILABLE",
        "ROUND_ROBIN",
        "WEIGHTED_ROUND_ROBIN",
        "LEAST_CONNECTIONS",
        "FASTEST_RESPONSE",
        "HIGHEST_SUCCESS_RATE",
        "CAPABILITY_BASED",
        "HEALTH_BASED",
        "RANDOM",
    ] {
        let body = format!(r#"{{"default_selection_policy": "{policy}"}}"#);
        ohfp(&app, "configureProviderStrategy", &[], Some(&body)).await;
        let selected = ohfp(
            &app,
            "selectProviderStrategy",
            &[],
            Some(r#"{"operation_type": "CREATE_INSTANCES"}"#),
        )
        .await;
        assert_eq!(selected["selection_policy"], policy, "{selected}");
        assert!(selected["selected_strategy"].is_string(), "{selected}");
    }
    let configured = ohfp(
        &app,
        "configureProviderStrategy",
        &[],
        Some(
            r#"{
"default_selection_policy": "CAPABILITY_BASED",
"selection_criteria": {
"min_success_rate": 95.0,
"require_healthy": true
},
"fallback_strategies": ["aws-backup", "aws-secondary"],
"health_check_interval": 300,
"circuit_breaker_config": {
"failure_threshold": 5,
"recovery_timeout": 60
}
}"#,
        ),
    )
    .await;
    let shown = &configured["configuration"];
    assert_eq!(shown["default_selection_policy"], "CAPABILITY_BASED");
    assert_eq!(
        shown["fallback_strategies"],
        json!(["aws-backup", "aws-secondary"])
    );
    assert_eq!(shown["health_check_interval"], 300.0);
    assert_eq!(shown["circuit_breaker_config"]["failure_threshold"], 5);
    assert_eq!(shown["circuit_breaker_config"]["recovery_timeout"], 60.0);

    // MONITORING & METRICS.
    let metrics = ohfp(
        &app,
        "getProviderMetrics",
        &[],
        Some(
            r#"{
"provider_name": "aws-primary",
"time_range_hours": 24,
"include_operation_breakdown": true
}"#,
        ),
    )
    .await;
    assert_eq!(metrics["strategy_name"], "aws-primary", "{metrics}");
    assert!(
        metrics["operations"]["CREATE_INSTANCES"]["count"]
            .as_u64()
            .unwrap()
            >= 1,
        "{metrics}"
    );
    let capabilities = ohfp(
        &app,
        "getProviderCapabilities",
        &[],
        Some(
            r#"{
"provider_name": "aws-primary",
"include_performance_metrics": true,
"include_limitations": true
}"#,
        ),
    )
    .await;
    assert_eq!(capabilities["strategy_name"], "aws-primary");
    assert!(
        capabilities["performance_metrics"].is_object(),
        "{capabilities}"
    );
    assert!(capabilities["limitations"].is_object(), "{capabilities}");

    // INTEGRATION WITH EXISTING OPERATIONS: templates, a request, its status.
    let templates = ohfp(&app, "getAvailableTemplates", &[], None).await;
    assert_eq!(
        templates["templates"][0]["template_id"], "web",
        "{templates}"
    );
    let requested = ohfp(
        &app,
        "requestMachines",
        &[],
        Some(r#"{"template_id": "web", "machine_count": 2}"#),
    )
    .await;
    let request_id = requested["request_id"].as_str().unwrap().to_string();
    let done = eventually("the guide's request completes", || {
        let (app, id) = (&app, request_id.clone());
        async move {
            let v = ohfp(app, "getRequestStatus", &["--request-id", &id], None).await;
            (v["status"] == "complete").then_some(v)
        }
    })
    .await;
    assert_eq!(done["machines"].as_array().unwrap().len(), 2, "{done}");
    // The guide's own id names no request here: a clear 404, not an empty answer.
    let unknown = ohfp_refused(
        &app,
        "getRequestStatus",
        &["--request-id", "req-12345"],
        None,
    )
    .await;
    assert_eq!(unknown["status"], 404);

    // ADVANCED USAGE: custom selection, registration, health status updates.
    let spot = ohfp(
        &app,
        "selectProviderStrategy",
        &[],
        Some(
            r#"{
"operation_type": "CREATE_INSTANCES",
"selection_criteria": {
"required_capabilities": ["spot_instances"],
"max_response_time_ms": 3000,
"prefer_strategies": ["aws-spot"]
}
}"#,
        ),
    )
    .await;
    assert_eq!(spot["selected_strategy"], "aws-spot", "{spot}");
    let registered = ohfp(
        &app,
        "registerProviderStrategy",
        &[],
        Some(
            r#"{
"strategy_name": "aws-west",
"provider_type": "aws",
"strategy_config": {
"region": "us-west-2",
"profile": "production"
},
"capabilities": {
"instances": true,
"spot_instances": true,
"load_balancers": false
},
"priority": 1
}"#,
        ),
    )
    .await;
    assert_eq!(registered["strategy_name"], "aws-west");
    assert_eq!(registered["provider_type"], "aws");
    let marked = ohfp(
        &app,
        "updateProviderHealth",
        &[],
        Some(
            r#"{
"provider_name": "aws-primary",
"health_status": {
"is_healthy": false,
"status_message": "Rate limit exceeded",
"error_details": {
"error_code": "RATE_LIMIT",
"retry_after": 300
}
},
"source": "monitoring_system"
}"#,
        ),
    )
    .await;
    assert_eq!(marked["is_healthy"], false, "{marked}");
    let health = ohfp(&app, "getProviderHealth", &["--name", "aws-primary"], None).await;
    assert_eq!(health["is_healthy"], false, "{health}");
    assert_eq!(health["status_message"], "Rate limit exceeded");

    // TROUBLESHOOTING: with aws-primary marked down, healthy selection passes it over, and
    // relaxing the health requirement (the guide's comment included) lets it be chosen again.
    ohfp(&app, "listAvailableProviders", &[], None).await;
    ohfp(&app, "getProviderHealth", &[], None).await;
    let strict = ohfp(
        &app,
        "selectProviderStrategy",
        &[],
        Some(r#"{"operation_type": "CREATE_INSTANCES", "selection_criteria": {"prefer_strategies": ["aws-primary"]}}"#),
    )
    .await;
    assert_ne!(strict["selected_strategy"], "aws-primary", "{strict}");
    let relaxed = ohfp(
        &app,
        "selectProviderStrategy",
        &[],
        Some(
            r#"{
"operation_type": "CREATE_INSTANCES",
"selection_criteria": {
"require_healthy": false # Relax health requirement
}
}"#,
        ),
    )
    .await;
    assert!(relaxed["selected_strategy"].is_string(), "{relaxed}");
    let recent = ohfp(
        &app,
        "getProviderMetrics",
        &[],
        Some(
            r#"{
"time_range_hours": 1,
"include_operation_breakdown": true,
"include_error_details": true
}"#,
        ),
    )
    .await;
    assert!(recent["totals"]["count"].as_u64().unwrap() >= 7, "{recent}");
    assert!(recent["strategies"][0]["errors"].is_object(), "{recent}");

    // Debug Mode: the health check the guide runs with HF_LOG_LEVEL=DEBUG.
    let checked = ohfp(
        &app,
        "executeProviderOperation",
        &[],
        Some(r#"{"operation_type": "HEALTH_CHECK", "parameters": {}}"#),
    )
    .await;
    assert_eq!(checked["success"], true, "{checked}");
    app.stop().await;
}

/// A strategy of the usage guide through the API; `config` is its `strategy_config`.
async fn register(app: &TestApp, name: &str, provider_type: &str, config: Value) {
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": name, "provider_type": provider_type, "strategy_config": config}),
        )
        .await;
    assert_eq!(status, 201, "{name}: {v}");
}

/// `context.execute_operation(operation)` on `strategy` (None: selection decides).
async fn execute_on(app: &TestApp, strategy: Option<&str>, operation: &str) -> Value {
    let mut body = json!({"operation_type": operation, "parameters": {}});
    if let Some(name) = strategy {
        body["strategy_override"] = json!(name);
    }
    let (status, v) = app.post("/api/v1/providers/operations", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A `composite` over the usage guide's three providers, registered with `config`, then
/// `operation` run on it.
async fn composite_run(app: &TestApp, name: &str, mut config: Value, operation: &str) -> Value {
    config["strategies"] = json!(["aws", "provider1", "provider2"]);
    register(app, name, "composite", config).await;
    execute_on(app, Some(name), operation).await
}

/// How many members a composite's call reached.
fn members_called(v: &Value) -> usize {
    v["metadata"]["attempted"][0]["members"]
        .as_array()
        .map_or(0, Vec::len)
}

/// The usage guide's three providers, as simulated clouds.
async fn usage_guide_app() -> TestApp {
    let app = TestApp::spawn_with(|cfg| cfg.providers.clear()).await;
    for name in ["aws", "provider1", "provider2"] {
        register(&app, name, "simulated", json!({"latency_ms": 0})).await;
    }
    app
}

#[tokio::test]
async fn the_usage_guide_quick_start_switching_and_load_balancing() {
    let app = usage_guide_app().await;

    // Quick Start 1: a HEALTH_CHECK operation.
    let result = execute_on(&app, None, "HEALTH_CHECK").await;
    assert_eq!(result["success"], true, "{result}");

    // 2. Runtime Provider Switching: set_strategy is the active strategy.
    for name in ["aws", "provider1"] {
        let (status, v) = app
            .put(
                "/api/v1/providers/configuration",
                json!({"active_strategy": name}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let used = execute_on(&app, None, "HEALTH_CHECK").await;
        assert_eq!(used["metadata"]["strategy_used"], name, "{used}");
        let (_, current) = app.get("/api/v1/providers/configuration").await;
        assert_eq!(current["active_strategy"], name);
    }

    // Load Balancing: the guide's setup, then each of its algorithms.
    register(
        &app,
        "load_balancer",
        "load_balancer",
        json!({"algorithm": "ROUND_ROBIN", "health_check_mode": "HYBRID",
               "max_connections_per_strategy": 50,
               "strategies": ["aws", "provider1", "provider2"],
               "weights": {"aws": 0.5, "provider1": 0.3, "provider2": 0.2}}),
    )
    .await;
    let result = execute_on(&app, Some("load_balancer"), "HEALTH_CHECK").await;
    assert_eq!(result["success"], true, "{result}");
    for extra in [
        json!({"algorithm": "WEIGHTED_ROUND_ROBIN"}),
        json!({"algorithm": "LEAST_CONNECTIONS"}),
        json!({"algorithm": "ADAPTIVE", "weight_adjustment_factor": 0.1}),
        json!({"algorithm": "HASH_BASED"}),
    ] {
        let mut config = json!({"strategies": ["aws", "provider1", "provider2"],
                                "weights": {"aws": 0.5, "provider1": 0.3, "provider2": 0.2}});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, v) = app
            .put(
                "/api/v1/providers/load_balancer",
                json!({"provider_type": "load_balancer", "strategy_config": config}),
            )
            .await;
        assert_eq!(status, 200, "{extra}: {v}");
        for _ in 0..3 {
            let result = execute_on(&app, Some("load_balancer"), "GET_AVAILABLE_TEMPLATES").await;
            assert_eq!(result["success"], true, "{extra}: {result}");
        }
    }

    // Load Balancer Monitoring: strategy_stats per member, and its health.
    let (_, metrics) = app.get("/api/v1/providers/load_balancer/metrics").await;
    let stats = metrics["live"]["strategy_stats"]["member_stats"]
        .as_array()
        .unwrap();
    assert_eq!(stats.len(), 3, "{metrics}");
    for member in stats {
        assert!(member["active_connections"].is_number(), "{member}");
        assert!(member["average_response_time_ms"].is_number(), "{member}");
    }
    let calls: u64 = stats
        .iter()
        .map(|m| m["total_requests"].as_u64().unwrap())
        .sum();
    // Each balanced call reached one member (a HEALTH_CHECK asks the balancer itself).
    assert_eq!(
        calls, metrics["operations"]["GET_AVAILABLE_TEMPLATES"]["count"],
        "{metrics}"
    );
    let (_, health) = app.get("/api/v1/providers/load_balancer/health").await;
    assert!(health["is_healthy"].is_boolean(), "{health}");

    // Runtime Configuration Updates: a policy by the reference's name, and new criteria.
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"active_strategy": null, "selection_policy": "LEAST_RESPONSE_TIME",
                   "selection_criteria": {"min_success_rate": 99.0, "max_response_time_ms": 1000,
                                          "require_healthy": true}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["configuration"]["default_selection_policy"],
        "FASTEST_RESPONSE"
    );
    assert_eq!(
        v["configuration"]["selection_criteria"]["min_success_rate"],
        99.0
    );

    // Update load balancing weights: set_strategy_weight, one member at a time, by the CLI.
    for (member, weight) in [("aws", 0.8), ("provider1", 0.2)] {
        let data = json!({"member": member, "weight": weight}).to_string();
        let v = ohfp(
            &app,
            "setStrategyWeight",
            &["--name", "load_balancer"],
            Some(&data),
        )
        .await;
        assert_eq!(v["strategy_config"]["weights"][member], weight, "{v}");
    }
    let (_, lb) = app.get("/api/v1/providers/load_balancer").await;
    assert_eq!(
        lb["strategy_config"]["weights"],
        json!({"aws": 0.8, "provider1": 0.2, "provider2": 0.2}),
        "the member left alone keeps its weight"
    );

    // Monitoring and Metrics: one strategy's figures, then all of them.
    let (_, aws) = app.get("/api/v1/providers/aws/metrics").await;
    assert!(aws["totals"]["count"].as_u64().unwrap() >= 2, "{aws}");
    assert_eq!(aws["totals"]["success_rate"], 100.0);
    assert!(aws["totals"]["mean_response_time_ms"].is_number());
    let (_, all) = app.get("/api/v1/providers/metrics").await;
    assert!(all["strategies"].as_array().unwrap().len() >= 4, "{all}");

    // Health Monitoring: check_strategy_health is a fresh check, for each strategy.
    for name in ["aws", "provider1", "provider2"] {
        let (status, v) = app
            .post(&format!("/api/v1/providers/{name}/health/check"), json!({}))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["check"]["is_healthy"], true, "{v}");
        assert!(v["check"]["status_message"].is_string(), "{v}");
    }

    // Debug Mode: the operation's context.
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "parameters": {},
                   "context": {"debug": true, "trace_id": "debug-123"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["metadata"]["trace_id"], "debug-123", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn the_usage_guides_new_provider_answers_unsupported_operation() {
    let app = TestApp::spawn_with(|cfg| cfg.providers.clear()).await;
    // Provider1Strategy's capabilities: four operations; anything else is UNSUPPORTED_OPERATION.
    register(
        &app,
        "provider1",
        "simulated",
        json!({"supported_operations": ["CREATE_INSTANCES", "TERMINATE_INSTANCES",
                                        "GET_INSTANCE_STATUS", "HEALTH_CHECK"]}),
    )
    .await;
    let (_, caps) = app.get("/api/v1/providers/provider1/capabilities").await;
    assert_eq!(
        caps["supported_operations"].as_array().unwrap().len(),
        4,
        "{caps}"
    );
    let refused = execute_on(&app, Some("provider1"), "GET_AVAILABLE_TEMPLATES").await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["error_code"], "UNSUPPORTED_OPERATION");
    let created = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "CREATE_INSTANCES",
                   "parameters": {"template_config": {"templateId": "t", "imageId": "ami-1"}, "count": 2},
                   "strategy_override": "provider1"}),
        )
        .await;
    assert_eq!(created.0, 200, "{}", created.1);
    assert_eq!(
        created.1["data"]["instance_ids"].as_array().unwrap().len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn the_usage_guide_fallback_and_composition() {
    let app = usage_guide_app().await;

    // Basic Fallback Setup, then Retry with Exponential Backoff.
    register(
        &app,
        "fallback",
        "fallback",
        json!({"mode": "CIRCUIT_BREAKER", "max_retries": 3, "circuit_breaker_threshold": 5,
               "circuit_breaker_timeout_seconds": 60.0,
               "primary": "aws", "fallbacks": ["provider1", "provider2"]}),
    )
    .await;
    let result = execute_on(&app, Some("fallback"), "HEALTH_CHECK").await;
    assert_eq!(result["success"], true, "{result}");
    register(
        &app,
        "retrying",
        "fallback",
        json!({"mode": "RETRY_THEN_FALLBACK", "max_retries": 5, "retry_delay_seconds": 1.0,
               "primary": "aws", "fallbacks": ["provider1", "provider2"]}),
    )
    .await;
    let result = execute_on(&app, Some("retrying"), "HEALTH_CHECK").await;
    assert_eq!(result["success"], true, "{result}");

    // Circuit Breaker Pattern: threshold 10, two minutes, graceful degradation; then
    // circuit_metrics. The primary's own breaker counts the same failures, so aws carries one
    // at least as high for the fallback's 10 to decide (the README's composition).
    let aws = |extra: Value| {
        let mut body = json!({"provider_type": "simulated", "strategy_config": {"latency_ms": 0}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, v) = app
        .put(
            "/api/v1/providers/aws",
            aws(
                json!({"strategy_config": {"latency_ms": 0, "failure_rate": 1.0},
                       "circuit_breaker": {"failure_threshold": 20}}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    register(
        &app,
        "guarded",
        "fallback",
        json!({"mode": "CIRCUIT_BREAKER", "circuit_breaker_threshold": 10,
               "circuit_breaker_timeout_seconds": 120.0, "enable_graceful_degradation": true,
               "primary": "aws", "fallbacks": ["provider1", "provider2"]}),
    )
    .await;
    for _ in 0..10 {
        let result = execute_on(&app, Some("guarded"), "GET_AVAILABLE_TEMPLATES").await;
        assert_eq!(result["success"], true, "{result}");
    }
    let (_, caps) = app.get("/api/v1/providers/guarded/capabilities").await;
    let metrics = &caps["performance_metrics"]["circuit_metrics"];
    assert_eq!(
        (
            &metrics["state"],
            &metrics["failure_count"],
            &metrics["failure_rate"]
        ),
        (&json!("open"), &json!(10), &json!(100.0)),
        "{caps}"
    );
    // aws recovers; its own breaker is reset by hand (Circuit Breaker Stuck Open).
    app.put(
        "/api/v1/providers/aws",
        aws(json!({"circuit_breaker": null})),
    )
    .await;
    for mode in ["closed", "auto"] {
        let (status, v) = app
            .put(
                "/api/v1/providers/aws/circuit",
                json!({"mode": mode, "source": "guide"}),
            )
            .await;
        assert_eq!((status, &v["state"]), (200, &json!("closed")), "{v}");
    }

    // Multi-Provider Composition: parallel, sequential, redundant.
    let merged = composite_run(
        &app,
        "parallel",
        json!({"mode": "PARALLEL", "aggregation_policy": "MERGE_ALL",
               "max_concurrent_operations": 5, "timeout_seconds": 30.0}),
        "GET_AVAILABLE_TEMPLATES",
    )
    .await;
    assert_eq!(merged["success"], true, "{merged}");
    assert_eq!(
        members_called(&merged),
        3,
        "every provider answers: {merged}"
    );
    let first = composite_run(
        &app,
        "sequential",
        json!({"mode": "SEQUENTIAL", "aggregation_policy": "FIRST_SUCCESS",
               "require_all_success": false}),
        "GET_AVAILABLE_TEMPLATES",
    )
    .await;
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(
        members_called(&first),
        1,
        "the first success ends it: {first}"
    );
    let agreed = composite_run(
        &app,
        "redundant",
        json!({"mode": "REDUNDANT", "aggregation_policy": "MAJORITY_WINS",
               "min_success_count": 2, "failure_threshold": 0.3}),
        "HEALTH_CHECK",
    )
    .await;
    assert_eq!(agreed["success"], true, "{agreed}");
    app.stop().await;
}

#[tokio::test]
async fn the_usage_guides_load_test_succeeds_throughout() {
    let app = usage_guide_app().await;
    // 1000 HEALTH_CHECK operations, 50 at a time, as the guide's load test runs them.
    let app = std::sync::Arc::new(app);
    let mut successes = 0;
    for _ in 0..20 {
        let batch: Vec<_> = (0..50)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { execute_on(&app, None, "HEALTH_CHECK").await })
            })
            .collect();
        for call in batch {
            let v = call.await.unwrap();
            successes += usize::from(v["success"] == true);
        }
    }
    assert_eq!(successes, 1000);
    let app = std::sync::Arc::into_inner(app).unwrap();
    app.stop().await;
}

#[tokio::test]
async fn the_usage_guides_configuration_files_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    // The usage guide's "Configuration File Structure" and its environment files, as printed;
    // OHFP_ENV finds the environment's file beside it.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guides/config.json");
    let moto = Moto::start().await;
    let provider1 = ExampleProvider::start(&["--api-key", "key-1"]);
    let provider2 = ExampleProvider::start(&["--api-key", "key-2"]);
    // Only environment variables: the keys the file asks for, where this machine's clouds are
    // (the guide's hosts are not reachable from a test), and where the service keeps its data.
    let env = |name: &str| -> Vec<(String, String)> {
        [
            ("OHFP_ENV", name),
            ("PROVIDER1_API_KEY", "key-1"),
            ("PROVIDER2_API_KEY", "key-2"),
            (
                "OHFP_PROVIDERS__PROVIDER1__CONFIG__ENDPOINT_URL",
                &provider1.url,
            ),
            (
                "OHFP_PROVIDERS__PROVIDER2__CONFIG__ENDPOINT_URL",
                &provider2.url,
            ),
            ("OHFP_PROVIDERS__AWS__CONFIG__ENDPOINT_URL", &moto.url),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("OHFP_LOGGING__DIR", "null"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(crate::helpers::database_env(
            &dir.path().join(format!("{name}.db")),
        ))
        .collect()
    };

    let (mut service, base) = serve(&config, &env("production"), Stdio::null()).await;
    let listed = get(&base, "/api/v1/providers").await;
    let kinds: Vec<(String, String)> = listed["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["strategy_name"].as_str().unwrap().to_string(),
                p["provider_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("aws", "aws"),
        ("provider1", "http"),
        ("provider2", "http"),
        ("load_balancer", "load_balancer"),
        ("fallback", "fallback"),
    ]
    .map(|(n, t)| (n.to_string(), t.to_string()));
    assert_eq!(kinds, expected, "{listed}");
    assert_eq!(
        listed["providers"][1]["strategy_config"]["api_key"], "***",
        "{listed}"
    );
    // production.json over the file: its thresholds, the file's members.
    let configuration = get(&base, "/api/v1/providers/configuration").await;
    assert_eq!(
        configuration["active_strategy"], "fallback",
        "{configuration}"
    );
    assert_eq!(
        configuration["default_selection_policy"],
        "PERFORMANCE_BASED"
    );
    assert_eq!(configuration["health_check_interval"], 30.0);
    assert_eq!(
        configuration["selection_criteria"]["min_success_rate"],
        99.5
    );
    let fallback = get(&base, "/api/v1/providers/fallback").await;
    assert_eq!(fallback["strategy_config"]["primary"], "aws", "{fallback}");
    assert_eq!(fallback["strategy_config"]["circuit_breaker_threshold"], 3);
    let balancer = get(&base, "/api/v1/providers/load_balancer").await;
    assert_eq!(
        balancer["strategy_config"]["weights"]["aws"], 0.6,
        "{balancer}"
    );
    assert_eq!(
        balancer["strategy_config"]["max_connections_per_strategy"],
        100
    );

    // The AWS section reaches its cloud (moto here) with the profile the guide names.
    let v = post(&base, "/api/v1/providers/aws/health/check", json!({})).await;
    assert_eq!(v["check"]["is_healthy"], true, "{v}");
    // Operations go to the active fallback, whose primary is AWS.
    let v = post(
        &base,
        "/api/v1/providers/operations",
        json!({"operation_type": "GET_AVAILABLE_TEMPLATES", "parameters": {}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "fallback", "{v}");
    assert_eq!(
        v["metadata"]["attempted"][0]["members"][0]["strategy"], "aws",
        "{v}"
    );
    // provider1 answers on its own, with its key.
    let v = post(
        &base,
        "/api/v1/providers/operations",
        json!({"operation_type": "HEALTH_CHECK", "parameters": {}, "strategy_override": "provider1"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    service.kill().await.unwrap();

    // development.json over the same file.
    let (mut service, base) = serve(&config, &env("development"), Stdio::null()).await;
    let configuration = get(&base, "/api/v1/providers/configuration").await;
    assert_eq!(configuration["default_selection_policy"], "FIRST_AVAILABLE");
    assert_eq!(configuration["health_check_interval"], 60.0);
    assert_eq!(
        configuration["selection_criteria"]["min_success_rate"],
        80.0
    );
    service.kill().await.unwrap();
}

//! Load balancer, fallback and composite strategies over simulated providers, over HTTP.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute, register_sim};

async fn register(app: &TestApp, name: &str, provider_type: &str, config: Value) -> (u16, Value) {
    app.post(
        "/api/v1/providers",
        json!({"strategy_name": name, "provider_type": provider_type, "strategy_config": config}),
    )
    .await
}

async fn register_ok(app: &TestApp, name: &str, provider_type: &str, config: Value) {
    let (status, v) = register(app, name, provider_type, config).await;
    assert_eq!(status, 201, "{v}");
}

async fn run_on(app: &TestApp, strategy: &str, operation: &str, parameters: Value) -> Value {
    execute(
        app,
        json!({"operation_type": operation, "parameters": parameters, "strategy_override": strategy}),
    )
    .await
}

/// The member strategies a composite's call reached, in order.
fn members_called(v: &Value) -> Vec<String> {
    v["metadata"]["attempted"][0]["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["strategy"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn circuit_state(app: &TestApp, name: &str) -> String {
    let (_, h) = app.get(&format!("/api/v1/providers/{name}/health")).await;
    h["circuit"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn weighted_load_balancer_splits_calls_by_fractional_weights() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-a", json!({}), json!({})).await;
    register_sim(&app, "sim-b", json!({}), json!({})).await;
    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-a", "sim-b"],
        "weights": {"sim-a": 0.8, "sim-b": 0.2}, "algorithm": "weighted_round_robin"}),
    )
    .await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1000 {
        let v = run_on(&app, "lb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        assert_eq!(v["success"], true, "{v}");
        *counts.entry(members_called(&v)[0].clone()).or_default() += 1;
    }
    let heavy = counts["sim-a"];
    assert!((750..=850).contains(&heavy), "{counts:?}");
    // Per-member statistics are in the load balancer's metrics.
    let (_, m) = app.get("/api/v1/providers/lb/metrics").await;
    let stats = &m["live"]["strategy_stats"]["member_stats"];
    assert_eq!(stats[0]["strategy"], "sim-a", "{m}");
    assert_eq!(stats[0]["total_requests"], heavy);
    assert_eq!(stats[0]["success_rate"], 100.0);
    assert_eq!(stats[1]["active_connections"], 0);
    assert!(stats[1]["average_response_time_ms"].is_number());

    // New weights at run time keep the statistics.
    let (status, v) = app
        .put("/api/v1/providers/lb", json!({"provider_type": "load_balancer", "strategy_config":
            {"strategies": ["sim-a", "sim-b"], "weights": {"sim-a": 1, "sim-b": 1}, "algorithm": "WEIGHTED_ROUND_ROBIN"}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let mut after = HashMap::<String, usize>::new();
    for _ in 0..10 {
        let v = run_on(&app, "lb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        *after.entry(members_called(&v)[0].clone()).or_default() += 1;
    }
    assert_eq!((after["sim-a"], after["sim-b"]), (5, 5));
    let (_, m) = app.get("/api/v1/providers/lb/metrics").await;
    assert_eq!(
        m["live"]["strategy_stats"]["member_stats"][0]["total_requests"],
        heavy + 5
    );

    // A PUT naming some members' weights only is refused, naming the ones left out.
    let (status, v) = app
        .put("/api/v1/providers/lb", json!({"provider_type": "load_balancer", "strategy_config":
            {"strategies": ["sim-a", "sim-b"], "weights": {"sim-a": 3}, "algorithm": "WEIGHTED_ROUND_ROBIN"}}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "strategy_config.weights", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not sim-b"),
        "{v}"
    );

    // One member's weight (the guide's set_strategy_weight); the other keeps its own.
    let (status, v) = app
        .put("/api/v1/providers/lb/weights/sim-a", json!({"weight": 3}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["strategy_config"]["weights"],
        json!({"sim-a": 3.0, "sim-b": 1.0})
    );
    let mut third = HashMap::<String, usize>::new();
    for _ in 0..8 {
        let v = run_on(&app, "lb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        *third.entry(members_called(&v)[0].clone()).or_default() += 1;
    }
    assert_eq!((third["sim-a"], third["sim-b"]), (6, 2), "{third:?}");
    for (path, body, status) in [
        (
            "/api/v1/providers/lb/weights/sim-c",
            json!({"weight": 1}),
            404,
        ),
        (
            "/api/v1/providers/lb/weights/sim-a",
            json!({"weight": -1}),
            422,
        ),
        (
            "/api/v1/providers/sim-a/weights/sim-b",
            json!({"weight": 1}),
            409,
        ),
        (
            "/api/v1/providers/nope/weights/sim-a",
            json!({"weight": 1}),
            404,
        ),
    ] {
        let (got, v) = app.put(path, body).await;
        assert_eq!(got, status, "{path}: {v}");
    }
    app.stop().await;
}

#[tokio::test]
async fn least_connections_load_balancer_spreads_50_overlapping_calls() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-a", json!({"latency_ms": 300}), json!({})).await;
    register_sim(&app, "sim-b", json!({"latency_ms": 300}), json!({})).await;
    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-a", "sim-b"], "algorithm": "least_connections"}),
    )
    .await;
    let calls = (0..50).map(|_| run_on(&app, "lb", "GET_AVAILABLE_TEMPLATES", json!({})));
    let results = futures::future::join_all(calls).await;
    let on_a = results
        .iter()
        .filter(|v| members_called(v)[0] == "sim-a")
        .count();
    assert!(
        (20..=30).contains(&on_a),
        "50 overlapping calls split about evenly, got {on_a} on sim-a"
    );
    app.stop().await;
}

#[tokio::test]
async fn connection_cap_rejects_with_a_clear_code_when_every_member_is_full() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-slow", json!({"latency_ms": 5000}), json!({})).await;
    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-slow"], "max_connections_per_strategy": 1}),
    )
    .await;
    let first = run_on(&app, "lb", "GET_AVAILABLE_TEMPLATES", json!({}));
    let second = async {
        // Once the first call holds the only connection (for 5 s), the second one comes.
        let app = &app;
        eventually(
            "the first call takes sim-slow's connection",
            || async move {
                let (_, m) = app.get("/api/v1/providers/lb/metrics").await;
                let stats = &m["live"]["strategy_stats"]["member_stats"][0];
                (stats["active_connections"] == 1).then_some(())
            },
        )
        .await;
        run_on(app, "lb", "GET_AVAILABLE_TEMPLATES", json!({})).await
    };
    let (a, b) = tokio::join!(first, second);
    assert_eq!(a["success"], true, "{a}");
    assert_eq!(b["error_code"], "MAX_CONNECTIONS_REACHED", "{b}");
    assert!(
        b["error_message"]
            .as_str()
            .unwrap()
            .contains("sim-slow: at max_connections_per_strategy (1)")
    );
    app.stop().await;
}

#[tokio::test]
async fn hash_based_balancing_keeps_a_request_on_one_member() {
    let app = TestApp::spawn().await;
    for n in ["sim-a", "sim-b", "sim-c"] {
        register_sim(&app, n, json!({}), json!({})).await;
    }
    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-a", "sim-b", "sim-c"], "algorithm": "Hash_Based"}),
    )
    .await;
    let mut placed = HashMap::new();
    for i in 0..30 {
        let key = format!("req-{i}");
        let first = members_called(
            &run_on(
                &app,
                "lb",
                "CREATE_INSTANCES",
                json!({"count": 1, "request_id": key}),
            )
            .await,
        );
        let again = members_called(
            &run_on(
                &app,
                "lb",
                "CREATE_INSTANCES",
                json!({"count": 1, "request_id": key}),
            )
            .await,
        );
        assert_eq!(first, again);
        *placed.entry(first[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(placed.len(), 3, "30 keys land on every member: {placed:?}");
    app.stop().await;
}

#[tokio::test]
async fn fallback_fails_over_within_one_call_and_retries_only_retryable_errors() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    register_sim(&app, "sim-good", json!({}), json!({})).await;
    register_ok(
        &app,
        "fb",
        "fallback",
        json!({"primary": "sim-bad", "fallbacks": ["sim-good"],
        "mode": "retry_then_fallback", "max_retries": 2, "retry_delay_seconds": 0.01}),
    )
    .await;
    let v = run_on(&app, "fb", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "fb");
    assert_eq!(
        members_called(&v),
        ["sim-bad", "sim-bad", "sim-bad", "sim-good"]
    );
    let tried = &v["metadata"]["attempted"][0]["members"];
    assert_eq!(tried[0]["error_code"], "SIMULATED_FAILURE");
    assert_eq!(tried[3]["success"], true);
    // A validation error is the caller's: no retry, no fallback.
    register_ok(
        &app,
        "fb-2",
        "fallback",
        json!({"primary": "sim-good", "fallbacks": ["sim-bad"],
        "mode": "RETRY_THEN_FALLBACK", "retry_delay_seconds": 0.01}),
    )
    .await;
    let v = run_on(&app, "fb-2", "VALIDATE_TEMPLATE", json!({"template": {}})).await;
    assert_eq!(v["success"], false);
    assert_eq!(v["error_code"], "INVALID_TEMPLATE");
    assert_eq!(members_called(&v), ["sim-good"]);
    app.stop().await;
}

#[tokio::test]
async fn fallback_circuit_breaker_mode_stops_calling_the_primary() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    register_sim(&app, "sim-good", json!({}), json!({})).await;
    register_ok(&app, "fb", "fallback", json!({"primary": "sim-bad", "fallbacks": ["sim-good"],
        "mode": "circuit_breaker", "circuit_breaker_threshold": 2, "circuit_breaker_timeout_seconds": 3600})).await;
    for _ in 0..2 {
        let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        assert_eq!(members_called(&v), ["sim-bad", "sim-good"]);
    }
    let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true);
    assert_eq!(
        members_called(&v),
        ["sim-good"],
        "the open circuit skips the primary"
    );
    let (_, caps) = app.get("/api/v1/providers/fb/capabilities").await;
    let circuit = &caps["performance_metrics"]["circuit_metrics"];
    assert_eq!(
        (
            &circuit["state"],
            &circuit["failure_count"],
            &circuit["failure_rate"]
        ),
        (&json!("open"), &json!(2), &json!(100.0)),
        "{caps}"
    );
    app.stop().await;
}

/// The guide's fallback with `circuit_breaker_threshold` 10 over a primary whose own breaker
/// (the global threshold, 5) opens first; then over a primary with a breaker of its own.
#[tokio::test]
async fn a_fallback_threshold_above_the_primarys_takes_effect_with_the_primarys_own_breaker() {
    let app = TestApp::spawn().await;
    let fallback = |primary: &str| {
        json!({"primary": primary, "fallbacks": ["sim-good"], "mode": "circuit_breaker",
            "circuit_breaker_threshold": 10, "circuit_breaker_timeout_seconds": 120})
    };
    register_sim(&app, "sim-good", json!({}), json!({})).await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    register_ok(&app, "fb", "fallback", fallback("sim-bad")).await;
    for _ in 0..10 {
        let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        assert_eq!(v["success"], true, "{v}");
    }
    let (_, caps) = app.get("/api/v1/providers/fb/capabilities").await;
    let circuit = &caps["performance_metrics"]["circuit_metrics"];
    assert_eq!(
        (
            &circuit["effective_threshold"],
            &circuit["primary_breaker_threshold"]
        ),
        (&json!(5), &json!(5)),
        "{circuit}"
    );
    assert!(
        circuit["note"]
            .as_str()
            .unwrap()
            .contains("circuit_breaker.failure_threshold of at least 10"),
        "{circuit}"
    );
    assert_eq!(circuit["state"], "closed", "the primary's own opened first");
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["circuit"]["state"], "open", "{h}");

    // The primary's own breaker with a higher threshold: the fallback's 10 now decides.
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "sim-bad-2", "provider_type": "simulated",
                "strategy_config": {"failure_rate": 1.0}, "circuit_breaker": {"failure_threshold": 0}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "circuit_breaker.failure_threshold");
    register_sim(
        &app,
        "sim-bad-2",
        json!({"failure_rate": 1.0}),
        json!({"circuit_breaker": {"failure_threshold": 20}}),
    )
    .await;
    register_ok(&app, "fb-2", "fallback", fallback("sim-bad-2")).await;
    for _ in 0..10 {
        let v = run_on(&app, "fb-2", "GET_AVAILABLE_TEMPLATES", json!({})).await;
        assert_eq!(members_called(&v), ["sim-bad-2", "sim-good"], "{v}");
    }
    let v = run_on(&app, "fb-2", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(members_called(&v), ["sim-good"], "open after 10: {v}");
    let (_, caps) = app.get("/api/v1/providers/fb-2/capabilities").await;
    let circuit = &caps["performance_metrics"]["circuit_metrics"];
    assert_eq!(
        (
            &circuit["state"],
            &circuit["failure_count"],
            &circuit["effective_threshold"],
            &circuit["failure_rate"]
        ),
        (&json!("open"), &json!(10), &json!(10), &json!(100.0)),
        "{circuit}"
    );
    assert!(circuit["note"].is_null());
    let (_, h) = app.get("/api/v1/providers/sim-bad-2/health").await;
    assert_eq!(
        (
            &h["circuit"]["state"],
            &h["circuit"]["settings"]["failure_threshold"]
        ),
        (&json!("closed"), &json!(20)),
        "{h}"
    );

    // An update that leaves it out keeps the strategy's own breaker; null removes it.
    let update = |extra: Value| {
        let mut body =
            json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 1.0}});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (status, v) = app
        .put("/api/v1/providers/sim-bad-2", update(json!({})))
        .await;
    assert_eq!(
        (status, &v["circuit_breaker"]),
        (200, &json!({"failure_threshold": 20})),
        "{v}"
    );
    let (status, v) = app
        .put(
            "/api/v1/providers/sim-bad-2",
            update(json!({"circuit_breaker": null})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("circuit_breaker").is_none(), "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-bad-2/health").await;
    assert_eq!(h["circuit"]["settings"]["failure_threshold"], 5, "{h}");
    app.stop().await;
}

#[tokio::test]
async fn graceful_degradation_answers_an_empty_template_list_only() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-down", json!({"healthy": false}), json!({})).await;
    register_sim(&app, "sim-down-2", json!({"healthy": false}), json!({})).await;
    register_ok(
        &app,
        "fb",
        "fallback",
        json!({"primary": "sim-down", "fallbacks": ["sim-down-2"],
        "enable_graceful_degradation": true}),
    )
    .await;
    let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["templates"], json!([]));
    assert_eq!(v["data"]["degraded"], true);
    let v = run_on(&app, "fb", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["error_code"], "ALL_STRATEGIES_FAILED", "{v}");
    app.stop().await;
}

#[tokio::test]
async fn composite_majority_wins_over_a_disagreeing_member() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-x1", json!({"region": "sim-x-1"}), json!({})).await;
    register_sim(&app, "sim-odd", json!({"region": "sim-odd-1"}), json!({})).await;
    register_sim(&app, "sim-x2", json!({"region": "sim-x-1"}), json!({})).await;
    register_ok(
        &app,
        "vote",
        "composite",
        json!({"strategies": ["sim-x1", "sim-odd", "sim-x2"],
        "mode": "parallel", "aggregation_policy": "majority_wins"}),
    )
    .await;
    let v = run_on(&app, "vote", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["templates"][0]["region"], "sim-x-1");
    assert_eq!(
        v["data"]["contributing_strategies"],
        json!(["sim-x1", "sim-x2"])
    );
    assert_eq!(
        members_called(&v),
        ["sim-x1", "sim-odd", "sim-x2"],
        "member order, not completion order"
    );
    app.stop().await;
}

#[tokio::test]
async fn composite_merges_in_member_order_and_keeps_partial_results_past_a_timeout() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-slow", json!({"latency_ms": 5000}), json!({})).await;
    register_sim(&app, "sim-fast-1", json!({"latency_ms": 30}), json!({})).await;
    register_sim(&app, "sim-fast-2", json!({}), json!({})).await;
    register_ok(
        &app,
        "all",
        "composite",
        json!({"strategies": ["sim-slow", "sim-fast-1", "sim-fast-2"],
        "timeout_seconds": 1}),
    )
    .await;
    let v = run_on(&app, "all", "CREATE_INSTANCES", json!({"count": 2})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["count"], 4);
    let ids = v["data"]["instance_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(v["data"]["instances"][0]["instance_id"], ids[0]);
    assert_eq!(
        v["data"]["contributing_strategies"],
        json!(["sim-fast-1", "sim-fast-2"])
    );
    let members = &v["metadata"]["attempted"][0]["members"];
    assert_eq!(members[0]["error_code"], "TIMEOUT");
    assert_eq!(members_called(&v), ["sim-slow", "sim-fast-1", "sim-fast-2"]);
    app.stop().await;
}

#[tokio::test]
async fn members_must_exist_cycles_are_refused_and_used_members_stay() {
    let app = TestApp::spawn().await;
    let (status, v) = register(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-primary", "nope"]}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"], "strategy_config.strategies[1]",
        "{v}"
    );
    let (status, v) = register(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-primary"], "algorithm": "fastest"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "strategy_config.algorithm", "{v}");
    let (status, v) = register(&app, "me", "composite", json!({"strategies": ["me"]})).await;
    assert_eq!(status, 422);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{v}"
    );

    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-primary", "sim-secondary"]}),
    )
    .await;
    register_ok(
        &app,
        "fb",
        "fallback",
        json!({"primary": "lb", "fallbacks": ["sim-secondary"], "mode": "Health_Based"}),
    )
    .await;
    let (status, v) = app
        .put("/api/v1/providers/lb", json!({"provider_type": "load_balancer", "strategy_config": {"strategies": ["sim-primary", "fb"]}}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "strategy_config.strategies[1]");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("lb -> fb -> lb"),
        "{v}"
    );

    let (status, v) = app.delete("/api/v1/providers/lb").await;
    assert_eq!(status, 409, "{v}");
    let (status, _) = app.delete("/api/v1/providers/fb").await;
    assert_eq!(status, 200);
    let (status, _) = app.delete("/api/v1/providers/lb").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn composites_from_the_configuration_file_nest_and_report_health() {
    let app = TestApp::spawn_with(|cfg| {
        let specs = json!([
            {"name": "lb", "type": "load_balancer", "config": {"strategies": ["sim-primary", "sim-secondary"], "algorithm": "adaptive"}},
            {"name": "fb", "type": "fallback", "config": {"primary": "lb", "fallbacks": ["sim-secondary"], "mode": "circuit_breaker"}}
        ]);
        cfg.providers.extend(serde_json::from_value::<Vec<ohfp::config::StrategySpec>>(specs).unwrap());
        cfg.strategy.active_strategy = Some("fb".into());
    })
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "fb");
    let via_lb = &v["metadata"]["attempted"][0]["members"][0];
    assert_eq!(via_lb["strategy"], "lb");
    assert_eq!(via_lb["members"].as_array().unwrap().len(), 1, "{v}");
    let v = run_on(&app, "fb", "HEALTH_CHECK", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["members"].as_array().unwrap().len(), 2);
    let (_, list) = app.get("/api/v1/providers?provider_type=fallback").await;
    assert_eq!(list["count"], 1);
    app.stop().await;
}

/// The operator story of issue 5, over HTTP only: a fallback over a load balancer of two
/// simulated providers; one provider fails, its circuit opens, calls keep succeeding, it
/// recovers and its circuit closes again.
#[tokio::test]
async fn operator_story_circuit_opens_calls_keep_succeeding_and_it_closes_again() {
    let app = TestApp::spawn().await;
    // No probe while the open circuit is checked, however slow the machine; the timeout is
    // shortened once the provider recovers.
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 2, "recovery_timeout": 3600}}),
    )
    .await;
    register_sim(&app, "sim-a", json!({}), json!({})).await;
    register_sim(&app, "sim-b", json!({}), json!({})).await;
    register_sim(&app, "sim-c", json!({}), json!({})).await;
    register_ok(
        &app,
        "lb",
        "load_balancer",
        json!({"strategies": ["sim-a", "sim-b"], "algorithm": "ROUND_ROBIN"}),
    )
    .await;
    register_ok(
        &app,
        "fb",
        "fallback",
        json!({"primary": "lb", "fallbacks": ["sim-c"]}),
    )
    .await;

    let (status, _) = app
        .put(
            "/api/v1/providers/sim-a",
            json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 1.0}}),
        )
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while circuit_state(&app, "sim-a").await != "open" {
        assert!(Instant::now() < deadline, "sim-a's circuit never opened");
        let v = run_on(&app, "fb", "CREATE_INSTANCES", json!({"count": 1})).await;
        assert_eq!(v["success"], true, "calls keep succeeding: {v}");
    }
    // While open, sim-a is not called at all.
    for _ in 0..4 {
        let v = run_on(&app, "fb", "CREATE_INSTANCES", json!({"count": 1})).await;
        assert_eq!(v["success"], true, "{v}");
        let lb = &v["metadata"]["attempted"][0]["members"][0];
        assert_eq!(lb["members"][0]["strategy"], "sim-b", "{v}");
    }
    let (_, health) = app.get("/api/v1/providers/health").await;
    assert!(
        health["summary"]["open_circuits"].as_u64().unwrap() >= 1,
        "{health}"
    );
    let (_, m) = app
        .get("/api/v1/providers/sim-a/metrics?include_error_details=true")
        .await;
    assert!(
        m["errors"]["error_codes"]["SIMULATED_FAILURE"]
            .as_u64()
            .unwrap()
            >= 2,
        "{m}"
    );

    // The provider recovers; the circuit half-opens on time and a probe call closes it.
    app.put(
        "/api/v1/providers/sim-a",
        json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 0.0}}),
    )
    .await;
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"circuit_breaker_config": {"failure_threshold": 2, "recovery_timeout": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while circuit_state(&app, "sim-a").await != "closed" {
        assert!(Instant::now() < deadline, "sim-a's circuit never closed");
        let v = run_on(&app, "fb", "CREATE_INSTANCES", json!({"count": 1})).await;
        assert_eq!(v["success"], true, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, m) = app.get("/api/v1/providers/lb/metrics").await;
    let stats = &m["live"]["strategy_stats"]["member_stats"];
    assert_eq!(stats[0]["strategy"], "sim-a");
    assert!(stats[0]["failed_requests"].as_u64().unwrap() >= 2, "{m}");
    app.stop().await;
}

#[tokio::test]
async fn registered_composites_and_member_circuits_survive_a_restart() {
    let app = TestApp::spawn().await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 3600}}),
    )
    .await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    register_ok(
        &app,
        "fb",
        "fallback",
        json!({"primary": "sim-bad", "fallbacks": ["sim-primary"]}),
    )
    .await;
    let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(members_called(&v), ["sim-bad", "sim-primary"]);
    assert_eq!(circuit_state(&app, "sim-bad").await, "open");

    let cfg = crate::helpers::test_config(&app.db);
    let dir = app.stop().await;
    let app = TestApp::start(cfg).await;
    assert_eq!(circuit_state(&app, "sim-bad").await, "open");
    let v = run_on(&app, "fb", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    let tried = &v["metadata"]["attempted"][0]["members"];
    assert_eq!(tried[0]["error_code"], "CIRCUIT_OPEN", "{v}");
    assert_eq!(tried[1]["strategy"], "sim-primary");
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_new_health_check_interval_applies_at_once() {
    let app = TestApp::spawn().await;
    let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
    assert_eq!(h["state"], "unknown", "{h}");
    app.put(
        "/api/v1/providers/configuration",
        json!({"health_check_interval": 1}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
        if h["source"] == "health_check" {
            assert_eq!(h["state"], "healthy", "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "no health check ran: {h}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn sequential_stops_at_the_first_success_and_redundant_answers_without_the_slow_member() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-down", json!({"failure_rate": 1.0}), json!({})).await;
    register_sim(&app, "sim-up-1", json!({"region": "up-1"}), json!({})).await;
    register_sim(&app, "sim-up-2", json!({"region": "up-2"}), json!({})).await;
    register_ok(
        &app,
        "chain",
        "composite",
        json!({"strategies": ["sim-down", "sim-up-1", "sim-up-2"],
        "mode": "sequential", "aggregation_policy": "first_success"}),
    )
    .await;
    let v = run_on(&app, "chain", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["templates"][0]["region"], "up-1");
    assert_eq!(
        members_called(&v),
        ["sim-down", "sim-up-1"],
        "sim-up-2 never runs"
    );

    register_sim(&app, "sim-slow", json!({"latency_ms": 3000}), json!({})).await;
    register_ok(
        &app,
        "race",
        "composite",
        json!({"strategies": ["sim-slow", "sim-up-2"], "mode": "redundant",
        "aggregation_policy": "first_success", "min_success_count": 1}),
    )
    .await;
    let v = run_on(&app, "race", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["templates"][0]["region"], "up-2");
    assert!(
        !members_called(&v).contains(&"sim-slow".to_string()),
        "the slow member is left out of the answer: {v}"
    );
    app.stop().await;
}

#[tokio::test]
async fn require_all_success_fails_the_composite_on_any_member_failure() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-down", json!({"failure_rate": 1.0}), json!({})).await;
    register_sim(&app, "sim-up", json!({}), json!({})).await;
    let members = json!(["sim-up", "sim-down"]);
    register_ok(
        &app,
        "all-or-nothing",
        "composite",
        json!({"strategies": members, "mode": "parallel", "aggregation_policy": "merge_all",
            "require_all_success": true}),
    )
    .await;
    register_ok(
        &app,
        "best-effort",
        "composite",
        json!({"strategies": members, "mode": "parallel", "aggregation_policy": "merge_all",
            "require_all_success": false}),
    )
    .await;
    let v = run_on(&app, "all-or-nothing", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], "MEMBER_FAILED");
    assert!(
        v["error_message"]
            .as_str()
            .unwrap()
            .contains("sim-down: SIMULATED_FAILURE"),
        "{v}"
    );
    let v = run_on(&app, "best-effort", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["success"], true, "{v}");
    // SEQUENTIAL stops at the first failure: the members after it are not called.
    register_ok(
        &app,
        "chain",
        "composite",
        json!({"strategies": ["sim-down", "sim-up"], "mode": "sequential",
            "aggregation_policy": "merge_all", "require_all_success": true}),
    )
    .await;
    let v = run_on(&app, "chain", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(v["error_code"], "MEMBER_FAILED", "{v}");
    assert_eq!(members_called(&v), ["sim-down"]);
    let (_, c) = app.get("/api/v1/providers/chain/capabilities").await;
    assert_eq!(c["performance_metrics"]["require_all_success"], true, "{c}");
    let (status, v) = register(
        &app,
        "bad",
        "composite",
        json!({"strategies": members, "require_all_success": "yes"}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"],
        "strategy_config.require_all_success"
    );
    app.stop().await;
}

//! Health observed when it matters: a new or changed strategy is checked in the background
//! without waiting for a round, a HEALTH_CHECK operation updates the cached health, and an
//! on-demand check answers fresh health. Outside reports that hold (`retry_after`) stay.

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute, register_sim};

/// The strategy's cached health once `want` says it is reached.
async fn health_when(app: &TestApp, name: &str, what: &str, want: fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/providers/{name}/health");
    eventually(what, || {
        let path = path.clone();
        async move {
            let (_, h) = app.get(&path).await;
            want(&h).then_some(h)
        }
    })
    .await
}

/// Waits for the round at start to be over (with `health_check_initial_delay` 0): the next is
/// an hour away, so only the check of a new or changed strategy reaches one registered now.
async fn first_round_over(app: &TestApp) {
    health_when(app, "sim-secondary", "the first round ran", |h| {
        h["source"] == "health_check"
    })
    .await;
}

/// How many HEALTH_CHECKs of `name` the metrics count.
async fn checks_of(app: &TestApp, name: &str) -> u64 {
    let (_, m) = app.get(&format!("/api/v1/providers/{name}/metrics")).await;
    m["operations"]["HEALTH_CHECK"]["count"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_new_or_changed_strategy_is_checked_without_waiting_for_a_round() {
    // Rounds an hour apart; checks of new strategies after the (zero) initial delay.
    let app = TestApp::spawn_with(|cfg| cfg.strategy.health_check_initial_delay = 0.0).await;
    first_round_over(&app).await;
    register_sim(&app, "sim-up", json!({}), json!({})).await;
    register_sim(
        &app,
        "sim-down",
        json!({"healthy": false}),
        json!({"priority": -1}),
    )
    .await;
    let h = health_when(&app, "sim-up", "sim-up is checked", |h| {
        h["source"] == "health_check"
    })
    .await;
    assert_eq!(h["is_healthy"], true, "{h}");
    let h = health_when(&app, "sim-down", "sim-down is checked", |h| {
        h["source"] == "health_check"
    })
    .await;
    assert_eq!(h["is_healthy"], false, "{h}");
    assert_eq!(h["error_details"]["error_code"], "PROVIDER_UNAVAILABLE");
    // Selection no longer takes it on "unknown", though it ranks first.
    let (_, sel) = app
        .post(
            "/api/v1/providers/selection",
            json!({"operation_type": "CREATE_INSTANCES"}),
        )
        .await;
    assert_eq!(sel["selected_strategy"], "sim-primary", "{sel}");

    // A change (updateProviderStrategy) is checked again.
    let (status, v) = app
        .put(
            "/api/v1/providers/sim-down",
            json!({"provider_type": "simulated", "strategy_config": {"healthy": true}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    health_when(
        &app,
        "sim-down",
        "sim-down is checked after the change",
        |h| h["is_healthy"] == true,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_automatic_check_leaves_a_held_report_alone() {
    let app = TestApp::spawn_with(|cfg| cfg.strategy.health_check_initial_delay = 0.0).await;
    first_round_over(&app).await;
    register_sim(&app, "sim-x", json!({}), json!({})).await;
    // A check's metric is recorded after its health was decided on.
    let app_ref = &app;
    eventually("sim-x is checked after its registration", || async move {
        (checks_of(app_ref, "sim-x").await == 1).then_some(())
    })
    .await;
    let (status, v) = app
        .post(
            "/api/v1/providers/sim-x/health",
            json!({"health_status": {"is_healthy": false, "status_message": "maintenance",
                "error_details": {"retry_after": 3600}}, "source": "operator"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["held_until"].is_string(), "{v}");
    // The check after a change leaves the mark alone, without probing. It is due before
    // that of a strategy registered after the change, so once that one is checked, it has
    // been passed over.
    app.put(
        "/api/v1/providers/sim-x",
        json!({"provider_type": "simulated", "strategy_config": {"region": "sim-x-2"}}),
    )
    .await;
    register_sim(&app, "sim-y", json!({}), json!({})).await;
    health_when(&app, "sim-y", "sim-y is checked", |h| {
        h["source"] == "health_check"
    })
    .await;
    assert_eq!(checks_of(&app, "sim-x").await, 1);
    let (_, h) = app.get("/api/v1/providers/sim-x/health").await;
    assert_eq!(h["source"], "operator", "{h}");
    assert_eq!(h["is_healthy"], false, "{h}");
    app.stop().await;
}

#[tokio::test]
async fn a_health_check_operation_updates_the_cached_health() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-bad"}),
    )
    .await;
    assert_eq!(v["error_code"], "SIMULATED_FAILURE", "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["is_healthy"], false, "{h}");
    assert_eq!(h["source"], "health_check_operation");
    app.put(
        "/api/v1/providers/sim-bad",
        json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 0.0}}),
    )
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "health_check", "strategy_override": "sim-bad"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["is_healthy"], true, "{h}");

    // Other operations say nothing of health; a held report stays.
    app.post(
        "/api/v1/providers/sim-primary/health",
        json!({"health_status": {"is_healthy": false, "error_details": {"retry_after": 300}},
            "source": "monitoring_system"}),
    )
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
    assert_eq!(h["source"], "monitoring_system", "{h}");
    app.stop().await;
}

#[tokio::test]
async fn an_on_demand_check_answers_fresh_health() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .post("/api/v1/providers/sim-primary/health/check", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["check"]["is_healthy"], true, "{v}");
    assert_eq!(v["check"]["recorded"], true);
    assert_eq!(v["health"]["is_healthy"], true);
    assert_eq!(v["health"]["source"], "on_demand_check");
    let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
    assert_eq!(
        h["source"], "on_demand_check",
        "GET answers the cached result: {h}"
    );
    let (_, m) = app.get("/api/v1/providers/sim-primary/metrics").await;
    assert_eq!(m["operations"]["HEALTH_CHECK"]["count"], 1, "{m}");

    register_sim(&app, "sim-down", json!({"healthy": false}), json!({})).await;
    let (_, v) = app
        .post("/api/v1/providers/sim-down/health/check", json!({}))
        .await;
    assert_eq!(v["check"]["is_healthy"], false, "{v}");
    assert_eq!(
        v["check"]["error_details"]["error_code"],
        "PROVIDER_UNAVAILABLE"
    );
    assert_eq!(v["health"]["is_healthy"], false);

    // A held report stays in force: the check answers what it saw, unrecorded.
    app.post(
        "/api/v1/providers/sim-primary/health",
        json!({"health_status": {"is_healthy": false, "status_message": "Rate limit exceeded",
            "error_details": {"error_code": "RATE_LIMIT", "retry_after": 300}},
            "source": "monitoring_system"}),
    )
    .await;
    let (_, v) = app
        .post("/api/v1/providers/sim-primary/health/check", json!({}))
        .await;
    assert_eq!(v["check"]["is_healthy"], true, "{v}");
    assert_eq!(v["check"]["recorded"], false);
    assert_eq!(v["health"]["source"], "monitoring_system");
    assert_eq!(v["health"]["is_healthy"], false);
    assert!(v["health"]["held_until"].is_string(), "{v}");

    let (status, _) = app
        .post("/api/v1/providers/nope/health/check", json!({}))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

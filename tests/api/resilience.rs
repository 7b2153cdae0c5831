use serde_json::{Value, json};

use crate::helpers::{
    TestApp, eventually, execute, next_event, open_circuit_on_failing_sim, register_sim,
};

#[tokio::test]
async fn failover_within_one_call_when_the_first_strategy_fails() {
    let app = TestApp::spawn().await;
    register_sim(
        &app,
        "sim-broken",
        json!({"failure_rate": 1.0, "seed": 1}),
        json!({"priority": -1}),
    )
    .await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"fallback_strategies": ["sim-broken", "sim-primary"]}),
    )
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary");
    assert_eq!(v["metadata"]["fallback_used"], true);
    assert_eq!(v["metadata"]["attempts"], 2);
    assert_eq!(v["metadata"]["attempted"][0]["strategy"], "sim-broken");
    assert_eq!(
        v["metadata"]["attempted"][0]["error_code"],
        "SIMULATED_FAILURE"
    );
    app.stop().await;
}

#[tokio::test]
async fn breaker_opens_rejects_without_calling_and_persists() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 2, "recovery_timeout": 3600}}),
    )
    .await;
    // Not HEALTH_CHECK: its failure would also mark sim-bad unhealthy, and selection would
    // name that reason before the circuit.
    for _ in 0..2 {
        let v = execute(
            &app,
            json!({"operation_type": "GET_AVAILABLE_TEMPLATES", "strategy_override": "sim-bad"}),
        )
        .await;
        assert_eq!(v["error_code"], "SIMULATED_FAILURE");
    }
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["circuit"]["state"], "open", "{h}");
    assert!(h["circuit"]["next_probe_at"].is_string());
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-bad"}),
    )
    .await;
    assert_eq!(v["error_code"], "CIRCUIT_OPEN");
    // Selection skips the open circuit; the provider itself saw only the first two calls.
    let (_, sel) = app
        .post("/api/v1/providers/selection", json!({"operation_type": "HEALTH_CHECK", "selection_criteria": {"prefer_strategies": ["sim-bad"]}}))
        .await;
    assert_eq!(sel["selected_strategy"], "sim-primary");
    let bad = sel["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["strategy"] == "sim-bad")
        .unwrap()
        .clone();
    assert_eq!(bad["reason"], "circuit open");
    let (_, m) = app
        .get("/api/v1/providers/sim-bad/metrics?include_error_details=true")
        .await;
    assert_eq!(m["errors"]["error_codes"]["SIMULATED_FAILURE"], 2);
    assert_eq!(m["errors"]["error_codes"]["CIRCUIT_OPEN"], 1);

    // The open circuit survives a restart.
    let cfg = crate::helpers::test_config(&app.db);
    let dir = app.stop().await;
    let app = TestApp::start(cfg).await;
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["circuit"]["state"], "open", "{h}");
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-bad"}),
    )
    .await;
    assert_eq!(v["error_code"], "CIRCUIT_OPEN");
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn circuit_half_opens_after_the_timeout_and_closes_on_success() {
    let app = TestApp::spawn().await;
    // The circuit stays open until it has been seen open, however slow the machine; then the
    // timeout is shortened.
    open_circuit_on_failing_sim(&app, "sim-flappy").await;
    let (_, h) = app.get("/api/v1/providers/sim-flappy/health").await;
    assert_eq!(h["circuit"]["state"], "open");
    // The provider recovers.
    let (status, _) = app
        .put(
            "/api/v1/providers/sim-flappy",
            json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 0.0}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // The background task moves it to half open once the timeout has passed.
    let app_ref = &app;
    eventually("sim-flappy's circuit half-opens", || async move {
        let (_, h) = app_ref.get("/api/v1/providers/sim-flappy/health").await;
        (h["circuit"]["state"] == "half_open").then_some(())
    })
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-flappy"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-flappy/health").await;
    assert_eq!(h["circuit"]["state"], "closed");
    assert_eq!(h["circuit"]["last_reason"], "half-open probe succeeded");
    app.stop().await;
}

#[tokio::test]
async fn least_connections_spreads_concurrent_calls() {
    let app = TestApp::spawn_with(|cfg| {
        for p in &mut cfg.providers {
            p.config.insert("latency_ms".into(), json!(150));
        }
    })
    .await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"default_selection_policy": "LEAST_CONNECTIONS"}),
    )
    .await;
    let calls = (0..20).map(|_| execute(&app, json!({"operation_type": "HEALTH_CHECK"})));
    let results = futures::future::join_all(calls).await;
    let primary = results
        .iter()
        .filter(|v| v["metadata"]["strategy_used"] == "sim-primary")
        .count();
    assert!(
        (8..=12).contains(&primary),
        "20 concurrent calls split about evenly, got {primary} on sim-primary"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_operator_forces_a_circuit_open_closed_and_back_to_auto() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 3600}}),
    )
    .await;
    let mut events = app.events().await;
    let health_check =
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"});

    // Forced open: recorded with its source, announced, and no call reaches the provider.
    let (status, c) = app
        .put(
            "/api/v1/providers/sim-primary/circuit",
            json!({"mode": "open", "source": "ops-alice", "reason": "provider maintenance"}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (
            &c["state"],
            &c["mode"],
            &c["mode_source"],
            &c["mode_reason"]
        ),
        (
            &json!("open"),
            &json!("forced_open"),
            &json!("ops-alice"),
            &json!("provider maintenance")
        ),
        "{c}"
    );
    assert!(
        c["next_probe_at"].is_null(),
        "no recovery while forced: {c}"
    );
    let control = next_event(&mut events, "circuit_control").await;
    assert_eq!(control["strategy"], "sim-primary");
    assert_eq!(
        (&control["detail"]["mode"], &control["detail"]["source"]),
        (&json!("forced_open"), &json!("ops-alice"))
    );
    let transition = next_event(&mut events, "circuit_transition").await;
    assert_eq!(transition["detail"]["to"], "open");
    assert_eq!(
        execute(&app, health_check.clone()).await["error_code"],
        "CIRCUIT_OPEN"
    );

    // Forced closed: every call goes through and failures do not open it.
    let (status, c) = app
        .put(
            "/api/v1/providers/sim-bad/circuit",
            json!({"mode": "closed", "source": "ops-bob"}),
        )
        .await;
    assert_eq!((status, &c["mode"]), (200, &json!("forced_closed")), "{c}");
    let bad_check = json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-bad"});
    for _ in 0..3 {
        assert_eq!(
            execute(&app, bad_check.clone()).await["error_code"],
            "SIMULATED_FAILURE"
        );
    }
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["circuit"]["state"], "closed", "{h}");

    // Both choices survive a restart.
    let cfg = crate::helpers::test_config(&app.db);
    drop(events);
    let dir = app.stop().await;
    let app = TestApp::start(cfg).await;
    let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
    assert_eq!(
        (&h["circuit"]["mode"], &h["circuit"]["mode_source"]),
        (&json!("forced_open"), &json!("ops-alice")),
        "{h}"
    );
    assert_eq!(
        execute(&app, health_check.clone()).await["error_code"],
        "CIRCUIT_OPEN"
    );
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(h["circuit"]["mode"], "forced_closed", "{h}");

    // Back to auto: the breaker's rules decide again (threshold 1 opens at the next failure).
    let (status, c) = app
        .put("/api/v1/providers/sim-bad/circuit", json!({"mode": "auto"}))
        .await;
    assert_eq!(
        (status, &c["mode"], &c["mode_source"]),
        (200, &json!("auto"), &json!("api"))
    );
    execute(&app, bad_check.clone()).await;
    assert_eq!(execute(&app, bad_check).await["error_code"], "CIRCUIT_OPEN");

    for (path, body, status) in [
        (
            "/api/v1/providers/sim-bad/circuit",
            json!({"mode": "ajar"}),
            422,
        ),
        (
            "/api/v1/providers/sim-bad/circuit",
            json!({"mode": "auto", "source": "x".repeat(65)}),
            422,
        ),
        (
            "/api/v1/providers/nope/circuit",
            json!({"mode": "auto"}),
            404,
        ),
    ] {
        let (got, v) = app.put(path, body).await;
        assert_eq!(got, status, "{path}: {v}");
    }
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn failover_can_be_turned_off() {
    let app = TestApp::spawn().await;
    register_sim(
        &app,
        "sim-broken",
        json!({"failure_rate": 1.0}),
        json!({"priority": -1}),
    )
    .await;
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"fallback_strategies": ["sim-broken", "sim-primary"], "failover_enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["failover_enabled"], false);
    assert!(
        v["configuration"]["overridden_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("failover_enabled")),
        "{v}"
    );
    let create = json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}});
    let v = execute(&app, create.clone()).await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], "SIMULATED_FAILURE");
    assert_eq!(v["metadata"]["attempts"], 1);
    // Back on: the same call fails over.
    app.put(
        "/api/v1/providers/configuration",
        json!({"failover_enabled": true}),
    )
    .await;
    let v = execute(&app, create).await;
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary", "{v}");
    assert_eq!(v["metadata"]["fallback_used"], true);
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"failover_enabled": "no"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "failover_enabled");
    app.stop().await;
}

#[tokio::test]
async fn an_open_circuit_stops_creates_but_not_status_polls_or_terminations() {
    let app = TestApp::spawn().await;
    register_sim(
        &app,
        "sim-small",
        json!({"capacity": 2}),
        json!({"circuit_breaker": {"failure_threshold": 2, "recovery_timeout": 3600}}),
    )
    .await;
    let run = |operation: &'static str, parameters: Value| {
        let app = &app;
        async move {
            execute(
                app,
                json!({"operation_type": operation, "parameters": parameters,
                       "strategy_override": "sim-small"}),
            )
            .await
        }
    };
    let made = run("CREATE_INSTANCES", json!({"template_id": "t", "count": 2})).await;
    assert_eq!(made["success"], true, "{made}");
    let ids = made["data"]["instance_ids"].clone();
    // Two creates the region has no room for open the circuit.
    for _ in 0..2 {
        let v = run("CREATE_INSTANCES", json!({"template_id": "t", "count": 1})).await;
        assert_eq!(v["error_code"], "INSUFFICIENT_CAPACITY", "{v}");
    }
    let v = run("CREATE_INSTANCES", json!({"template_id": "t", "count": 1})).await;
    assert_eq!(v["error_code"], "CIRCUIT_OPEN", "{v}");
    // The machines already made are still polled and returned.
    let v = run("GET_INSTANCE_STATUS", json!({"instance_ids": ids})).await;
    assert_eq!(v["success"], true, "{v}");
    let v = run("TERMINATE_INSTANCES", json!({"instance_ids": ids})).await;
    assert_eq!(v["success"], true, "{v}");
    let (_, h) = app.get("/api/v1/providers/sim-small/health").await;
    assert_eq!(
        h["circuit"]["state"], "open",
        "they neither probe nor close it: {h}"
    );
    // An operator's forced open stops them too.
    let (status, v) = app
        .put(
            "/api/v1/providers/sim-small/circuit",
            json!({"mode": "open", "source": "ops"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let v = run("GET_INSTANCE_STATUS", json!({"instance_ids": ids})).await;
    assert_eq!(v["error_code"], "CIRCUIT_OPEN", "{v}");
    app.stop().await;
}

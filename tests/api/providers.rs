use serde_json::{Value, json};

use crate::helpers::{TestApp, error_paths, eventually, execute, register_sim, test_config};

#[tokio::test]
async fn lists_both_simulated_providers() {
    let app = TestApp::spawn().await;
    let (status, v) = app.get("/api/v1/providers").await;
    assert_eq!(status, 200);
    assert_eq!(v["count"], 2);
    let names: Vec<&str> = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["strategy_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim-primary", "sim-secondary"]);
    assert_eq!(v["providers"][0]["provider_type"], "simulated");
    assert_eq!(v["providers"][0]["source"], "config");
    assert_eq!(
        v["providers"][0]["capabilities"]["features"]["simulated"],
        true
    );
    app.stop().await;
}

#[tokio::test]
async fn guide_request_body_runs_on_the_override() {
    let app = TestApp::spawn().await;
    let v = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"template_id": "web-server", "count": 2},
               "strategy_override": "sim-secondary"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "sim-secondary");
    assert_eq!(v["metadata"]["chosen_by"], "strategy_override");
    assert_eq!(v["metadata"]["attempts"], 1);
    assert_eq!(v["metadata"]["fallback_used"], false);
    assert_eq!(v["data"]["instance_ids"].as_array().unwrap().len(), 2);
    assert!(v["error_code"].is_null());
    // Lower-case operation names work too, and FIRST_AVAILABLE picks the lowest priority.
    let v = execute(&app, json!({"operation_type": "health_check"})).await;
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary");
    assert_eq!(
        v["metadata"]["chosen_by"],
        "selection policy FIRST_AVAILABLE"
    );
    app.stop().await;
}

#[tokio::test]
async fn instance_lifecycle_through_operations() {
    let app = TestApp::spawn().await;
    let v = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}}),
    )
    .await;
    let ids = v["data"]["instance_ids"].clone();
    let strategy = v["metadata"]["strategy_used"].clone();
    let (app_ref, ids_ref, strategy_ref) = (&app, &ids, &strategy);
    eventually("the instance boots", || async move {
        let status = execute(
            app_ref,
            json!({"operation_type": "GET_INSTANCE_STATUS", "parameters": {"instance_ids": ids_ref}, "strategy_override": strategy_ref}),
        )
        .await;
        (status["data"]["machines"][0]["state"] == "running").then_some(())
    })
    .await;
    let gone = execute(
        &app,
        json!({"operation_type": "TERMINATE_INSTANCES", "parameters": {"instance_ids": ids}, "strategy_override": strategy}),
    )
    .await;
    assert_eq!(gone["data"]["terminating"], ids);
    app.stop().await;
}

#[tokio::test]
async fn a_disabled_strategy_takes_no_new_work_but_still_polls_and_returns_its_machines() {
    let app = TestApp::spawn().await;
    let made = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"template_id": "web-server", "count": 2},
               "strategy_override": "sim-secondary"}),
    )
    .await;
    assert_eq!(made["success"], true, "{made}");
    let ids = made["data"]["instance_ids"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 2);

    // Disabled, with its settings kept.
    let (_, current) = app.get("/api/v1/providers/sim-secondary").await;
    let (status, v) = app
        .put(
            "/api/v1/providers/sim-secondary",
            json!({"provider_type": "simulated", "strategy_config": current["strategy_config"],
                   "enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["enabled"], false);

    // No new work: refused by name, passed over as the active strategy.
    let create = json!({"operation_type": "CREATE_INSTANCES",
                        "parameters": {"template_id": "web-server", "count": 1}});
    let mut named = create.clone();
    named["strategy_override"] = json!("sim-secondary");
    let (status, v) = app.post("/api/v1/providers/operations", named).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("strategy 'sim-secondary' is disabled"),
        "{v}"
    );
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"active_strategy": "sim-secondary"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let v = execute(&app, create).await;
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary", "{v}");
    assert_eq!(
        v["metadata"]["chosen_by"],
        "selection policy FIRST_AVAILABLE (active_strategy 'sim-secondary' is disabled)"
    );
    let (status, v) = app
        .post(
            "/api/v1/providers/selection",
            json!({"operation_type": "CREATE_INSTANCES"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["selected_strategy"], "sim-primary");
    assert!(
        v["selection_reason"]
            .as_str()
            .unwrap()
            .ends_with("(active_strategy 'sim-secondary' is disabled)"),
        "{v}"
    );

    // Its machines are still polled and given back on it by name.
    let status = execute(
        &app,
        json!({"operation_type": "GET_INSTANCE_STATUS", "parameters": {"instance_ids": ids},
               "strategy_override": "sim-secondary"}),
    )
    .await;
    assert_eq!(status["success"], true, "{status}");
    assert_eq!(status["metadata"]["strategy_used"], "sim-secondary");
    assert_eq!(status["data"]["machines"].as_array().unwrap().len(), 2);
    let gone = execute(
        &app,
        json!({"operation_type": "TERMINATE_INSTANCES", "parameters": {"instance_ids": ids},
               "strategy_override": "sim-secondary"}),
    )
    .await;
    assert_eq!(gone["success"], true, "{gone}");
    assert_eq!(gone["data"]["terminating"], ids);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_problem_answers_naming_the_field() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .header("content-type", "application/json")
        .body("{\"operation_type\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    assert!(body["request_id"].is_string(), "{body}");

    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "LAUNCH"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "operation_type");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("CREATE_INSTANCES")
    );

    let (status, v) = app
        .post("/api/v1/providers/operations", json!({"parameters": {}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "operation_type");
    assert_eq!(v["errors"][0]["message"], "is required");

    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "selection_criteria": {"min_success_rate": "high"}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        v["errors"][0]["path"],
        "selection_criteria.min_success_rate"
    );

    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "selection_criteria": {"min_success_rate": 150}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"],
        "selection_criteria.min_success_rate"
    );

    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "strategy_overide": "x"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `strategy_overide`"),
        "{v}"
    );

    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "nope"}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(v["detail"].as_str().unwrap().contains("'nope'"));

    // Parameters are read once, at the edge: a bad one is a 422 naming it, before any
    // strategy is chosen or called.
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 0}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "parameters.count");
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "TERMINATE_INSTANCES", "parameters": {"instance_id": "i-1"}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "parameters.instance_id", "{v}");
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "GET_INSTANCE_STATUS",
                   "parameters": {"resources": [{"resource_id": "fleet-1", "provider_api": "Lambda"}]}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"], "parameters.resources[0].provider_api",
        "{v}"
    );
    // A launch spec the provider rejects is a result with an error code, not an HTTP error,
    // and no other strategy is tried for it.
    let v = execute(
        &app,
        json!({"operation_type": "VALIDATE_TEMPLATE", "parameters": {"template": {}}}),
    )
    .await;
    assert_eq!(v["success"], false);
    assert_eq!(v["error_code"], "INVALID_TEMPLATE");
    assert!(
        v["error_message"].as_str().unwrap().contains("templateId"),
        "{v}"
    );
    assert_eq!(
        v["metadata"]["attempts"], 1,
        "validation errors do not fail over"
    );

    let (status, _) = app.get("/api/v1/providers?healthy_only=maybe").await;
    assert_eq!(status, 422);
    let (status, v) = app
        .get("/api/v1/providers/metrics?time_range_hours=0")
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "time_range_hours");
    let (status, _) = app
        .get("/api/v1/providers/metrics?time_range_hours=-3")
        .await;
    assert_eq!(status, 422);
    app.stop().await;
}

#[tokio::test]
async fn no_candidate_lists_every_strategy_and_why() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .post(
            "/api/v1/providers/selection",
            json!({"operation_type": "CREATE_INSTANCES",
                   "selection_criteria": {"exclude_strategies": ["sim-primary"], "required_capabilities": ["spot_instances"]}}),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(v["title"], "No strategy available");
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["reason"], "excluded by exclude_strategies");
    assert_eq!(c[1]["reason"], "lacks required capability 'spot_instances'");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("sim-secondary: lacks required capability")
    );

    let (status, v) = app
        .post(
            "/api/v1/providers/selection",
            json!({"operation_type": "CREATE_INSTANCES",
            "selection_criteria": {"prefer_strategies": ["sim-secondary"]}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["selected_strategy"], "sim-secondary");
    assert_eq!(v["selection_policy"], "FIRST_AVAILABLE");
    assert_eq!(
        v["candidates"][0]["reason"],
        "eligible, but not in prefer_strategies"
    );
    app.stop().await;
}

#[tokio::test]
async fn register_update_unregister() {
    let app = TestApp::spawn().await;
    let v = register_sim(
        &app,
        "sim-eu",
        json!({"region": "sim-eu-1", "seed": 3}),
        json!({"priority": 5, "weight": 20, "capabilities": ["instances", "gpu"]}),
    )
    .await;
    assert_eq!(v["strategy_name"], "sim-eu");
    assert_eq!(v["source"], "api");
    assert_eq!(v["capabilities"]["features"]["gpu"], true);

    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "sim-eu", "provider_type": "simulated"}),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "metrics", "provider_type": "simulated"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "strategy_name");
    let (status, v) = app
        .post("/api/v1/providers", json!({"strategy_name": "x", "provider_type": "simulated", "strategy_config": {"failure_rate": 2}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "strategy_config.failure_rate");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "x", "provider_type": "gcp"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "provider_type");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "x", "provider_type": "simulated", "weight": 0}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "weight");

    for _ in 0..3 {
        execute(
            &app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-eu"}),
        )
        .await;
    }
    let (status, v) = app
        .put("/api/v1/providers/sim-eu", json!({"provider_type": "simulated", "strategy_config": {"region": "sim-eu-2"}, "weight": 80}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["weight"], 80.0);
    assert_eq!(v["priority"], 5, "priority kept when not given");
    assert_eq!(v["strategy_config"]["region"], "sim-eu-2");
    let (_, m) = app.get("/api/v1/providers/sim-eu/metrics").await;
    assert_eq!(m["totals"]["count"], 3, "metrics survive an update: {m}");
    let (status, _) = app
        .put(
            "/api/v1/providers/sim-eu",
            json!({"strategy_name": "other", "provider_type": "simulated"}),
        )
        .await;
    assert_eq!(status, 422);

    let (status, v) = app.delete("/api/v1/providers/sim-eu").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("unregistered")));
    let (status, _) = app.get("/api/v1/providers/sim-eu").await;
    assert_eq!(status, 404);
    let (status, _) = app.delete("/api/v1/providers/sim-eu").await;
    assert_eq!(status, 404);
    let (status, v) = app.delete("/api/v1/providers/sim-primary").await;
    assert_eq!(status, 409, "sim-primary is a configured fallback: {v}");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_registrations_of_one_name_give_one_201_and_one_409() {
    let app = TestApp::spawn().await;
    let body = |region: &str, priority: i64| {
        json!({"strategy_name": "sim-race", "provider_type": "simulated",
               "strategy_config": {"region": region}, "priority": priority})
    };
    let ((s1, v1), (s2, v2)) = tokio::join!(
        app.post("/api/v1/providers", body("sim-a-1", 1)),
        app.post("/api/v1/providers", body("sim-b-1", 2)),
    );
    let mut statuses = [s1, s2];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{v1} {v2}");
    let (winner, loser) = if s1 == 201 { (v1, v2) } else { (v2, v1) };
    assert!(
        loser["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already registered"),
        "{loser}"
    );
    let (status, now) = app.get("/api/v1/providers/sim-race").await;
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["priority"], winner["priority"]);
    assert_eq!(now["strategy_config"], winner["strategy_config"]);
    // What is stored is the first's too: it is what a restart reads back.
    let cfg = test_config(&app.db);
    let dir = app.stop().await;
    let app = TestApp::start(cfg).await;
    let (_, stored) = app.get("/api/v1/providers/sim-race").await;
    assert_eq!(stored["priority"], winner["priority"]);
    assert_eq!(stored["strategy_config"], winner["strategy_config"]);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn configuration_switches_policy_and_active_strategy() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"default_selection_policy": "round_robin"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["configuration"]["default_selection_policy"],
        "ROUND_ROBIN"
    );
    let mut used = Vec::new();
    for _ in 0..4 {
        let v = execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
        used.push(v["metadata"]["strategy_used"].as_str().unwrap().to_string());
    }
    assert_eq!(
        used,
        [
            "sim-primary",
            "sim-secondary",
            "sim-primary",
            "sim-secondary"
        ]
    );

    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"active_strategy": "sim-secondary"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["configuration"]["active_strategy"], "sim-secondary");
    for _ in 0..3 {
        let v = execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
        assert_eq!(v["metadata"]["strategy_used"], "sim-secondary");
        assert_eq!(v["metadata"]["chosen_by"], "active_strategy");
    }
    let (_, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"active_strategy": null}),
        )
        .await;
    assert!(v["configuration"]["active_strategy"].is_null());
    let (_, v) = app.get("/api/v1/providers/configuration").await;
    assert_eq!(v["default_selection_policy"], "ROUND_ROBIN");
    let fields: Vec<&str> = v["overridden_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(fields, ["default_selection_policy", "active_strategy"]);

    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"active_strategy": "ghost", "fallback_strategies": ["sim-primary", "nope"],
            "circuit_breaker_config": {"failure_threshold": 0}, "health_check_interval": 0}),
        )
        .await;
    assert_eq!(status, 422);
    let paths = error_paths(&v);
    assert_eq!(
        paths,
        [
            "active_strategy",
            "fallback_strategies[1]",
            "health_check_interval",
            "circuit_breaker_config.failure_threshold"
        ]
    );
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"health_check_timeout": 2.5, "health_check_retries": 2}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["health_check_timeout"], 2.5);
    assert_eq!(v["configuration"]["health_check_retries"], 2);
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"health_check_timeout": 0, "health_check_retries": 99}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"default_selection_policy": "best"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "default_selection_policy");
    app.stop().await;
}

#[tokio::test]
async fn huge_seconds_are_refused_by_name_and_the_service_keeps_working() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"health_check_interval": 1e20}),
        json!({"circuit_breaker_config": {"recovery_timeout": 1e308}}),
    ] {
        let (status, v) = app
            .put("/api/v1/providers/configuration", body.clone())
            .await;
        assert_eq!(status, 422, "{body}: {v}");
        let field = if body.get("health_check_interval").is_some() {
            "health_check_interval"
        } else {
            "circuit_breaker_config.recovery_timeout"
        };
        assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["errors"][0]["path"], field, "{v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("at most 86400 seconds"),
            "{v}"
        );
    }
    // Nothing changed, and the service still answers and runs operations.
    let (status, v) = app.get("/api/v1/providers/configuration").await;
    assert_eq!(status, 200);
    assert_eq!(v["overridden_fields"], json!([]));
    assert_eq!(v["health_check_interval"], 3600.0);
    let v = execute(&app, json!({"operation_type": "health_check"})).await;
    assert_eq!(v["success"], true, "{v}");
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"health_check_interval": 86400}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["health_check_interval"], 86400.0);
    app.stop().await;
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let app = TestApp::spawn().await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"default_selection_policy": "WEIGHTED_ROUND_ROBIN"}),
    )
    .await;
    let mut primary = 0;
    for _ in 0..10 {
        let v = execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
        if v["metadata"]["strategy_used"] == "sim-primary" {
            primary += 1;
        }
    }
    assert_eq!(primary, 7, "weights 70/30 give exactly 7 of 10");
    app.stop().await;
}

#[tokio::test]
async fn external_health_reports_take_effect_at_once() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .post("/api/v1/providers/sim-primary/health",
            json!({"health_status": {"is_healthy": false, "status_message": "maintenance"}, "source": "nagios"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["is_healthy"], false);
    assert_eq!(v["source"], "nagios");
    let v = execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
    assert_eq!(v["metadata"]["strategy_used"], "sim-secondary");
    let (_, list) = app.get("/api/v1/providers?healthy_only=true").await;
    assert_eq!(list["count"], 1);
    let (_, h) = app
        .get("/api/v1/providers/sim-primary/health?include_history=true")
        .await;
    assert_eq!(h["status_message"], "maintenance", "{h}");
    assert_eq!(h["history"][0]["source"], "nagios");
    let (_, all) = app.get("/api/v1/providers/health").await;
    assert_eq!(all["summary"]["unhealthy"], 1);
    let (status, v) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"health_status": {"status_message": "?"}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "health_status.is_healthy");
    app.stop().await;
}

#[tokio::test]
async fn metrics_and_capabilities() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        execute(&app, json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}, "strategy_override": "sim-primary"})).await;
    }
    // A caller error that reaches the provider: counted in the metrics, not in the window.
    execute(&app, json!({"operation_type": "VALIDATE_TEMPLATE", "parameters": {"template": {}}, "strategy_override": "sim-primary"})).await;
    let (status, v) = app
        .get("/api/v1/providers/sim-primary/metrics?include_error_details=true")
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["totals"]["count"], 4);
    assert_eq!(v["totals"]["successes"], 3);
    assert_eq!(
        (&v["totals"]["failures"], &v["totals"]["caller_errors"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(
        v["totals"]["success_rate"], 100.0,
        "a caller's mistake is not the provider's failure"
    );
    assert!(v["totals"]["mean_response_time_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["operations"]["CREATE_INSTANCES"]["count"], 3);
    assert_eq!(v["operations"]["VALIDATE_TEMPLATE"]["count"], 1);
    assert_eq!(v["errors"]["error_codes"]["INVALID_TEMPLATE"], 1);
    assert_eq!(
        v["live"]["recent"]["samples"], 3,
        "caller errors stay out of the selection window"
    );
    let (_, all) = app
        .get("/api/v1/providers/metrics?time_range_hours=1&include_operation_breakdown=false")
        .await;
    assert_eq!(all["totals"]["count"], 4);
    assert!(all["strategies"][0].get("operations").is_none());

    // Calls refused by an open circuit are counted apart too: no rate without provider outcomes.
    let (_, v) = app.get("/api/v1/providers/sim-secondary").await;
    assert!(v["recent"]["success_rate"].is_null(), "null, not 0: {v}");
    app.put(
        "/api/v1/providers/sim-secondary/circuit",
        json!({"mode": "open"}),
    )
    .await;
    for _ in 0..2 {
        execute(
            &app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-secondary"}),
        )
        .await;
    }
    let (_, v) = app.get("/api/v1/providers/sim-secondary/metrics").await;
    assert_eq!(
        (
            &v["totals"]["count"],
            &v["totals"]["rejected"],
            &v["totals"]["failures"]
        ),
        (&json!(2), &json!(2), &json!(0)),
        "{v}"
    );
    assert!(v["totals"]["success_rate"].is_null(), "{v}");
    assert!(v["live"]["recent"]["success_rate"].is_null(), "{v}");

    let (status, c) = app.get("/api/v1/providers/sim-primary/capabilities").await;
    assert_eq!(status, 200);
    assert_eq!(c["supported_operations"].as_array().unwrap().len(), 6);
    assert_eq!(c["features"]["spot_instances"], true);
    assert_eq!(c["performance_metrics"]["last_24h"]["count"], 4);
    let (_, c) = app.get("/api/v1/providers/sim-primary/capabilities?include_limitations=false&include_performance_metrics=false").await;
    assert!(c.get("limitations").is_none() && c.get("performance_metrics").is_none());
    let (status, _) = app.get("/api/v1/providers/nope/capabilities").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn the_guides_health_report_is_taken_and_holds_for_its_retry_after() {
    let app = TestApp::spawn().await;
    // The guide's body, as its CLI example sends it.
    let (status, v) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"provider_name": "sim-primary",
                   "health_status": {"is_healthy": false, "status_message": "Rate limit exceeded",
                       "error_details": {"error_code": "RATE_LIMIT", "retry_after": 300}},
                   "source": "monitoring_system"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"provider_name": "sim-secondary", "health_status": {"is_healthy": true}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "provider_name");
    let (status, v) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"health_status": {"is_healthy": false, "error_details": {"retry_after": "soon"}}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"],
        "health_status.error_details.retry_after"
    );
    // Background checks every second: they reach sim-secondary, and leave the mark alone.
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"health_check_interval": 1}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let app_ref = &app;
    eventually(
        "sim-secondary is checked in the background",
        || async move {
            let (_, h) = app_ref.get("/api/v1/providers/sim-secondary/health").await;
            (h["source"] == "health_check").then_some(())
        },
    )
    .await;
    eventually("a second round has run", || async move {
        let (_, m) = app_ref.get("/api/v1/providers/sim-secondary/metrics").await;
        (m["operations"]["HEALTH_CHECK"]["count"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let (_, h) = app.get("/api/v1/providers/sim-primary/health").await;
    assert_eq!(h["source"], "monitoring_system", "{h}");
    assert_eq!(h["is_healthy"], false, "{h}");
    // A report without a hold is replaced by the next check.
    let (status, _) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"health_status": {"is_healthy": false}, "source": "operator"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually(
        "the next check replaces a report without a hold",
        || async move {
            let (_, h) = app_ref.get("/api/v1/providers/sim-primary/health").await;
            (h["source"] == "health_check" && h["is_healthy"] == true).then_some(())
        },
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn metrics_collection_can_be_turned_off_and_breakers_still_count() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"metrics_collection_enabled": false}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["metrics_collection_enabled"], false);
    let on = |name: &str| json!({"operation_type": "GET_AVAILABLE_TEMPLATES", "strategy_override": name});
    execute(&app, on("sim-primary")).await;
    execute(&app, on("sim-bad")).await;
    app.post("/api/v1/providers/sim-primary/health/check", json!({}))
        .await;
    let (_, m) = app.get("/api/v1/providers/sim-primary/metrics").await;
    assert_eq!(m["totals"]["count"], 0, "{m}");
    assert_eq!(
        m["live"]["recent"]["samples"], 1,
        "the selection window still sees it: {m}"
    );
    let (_, h) = app.get("/api/v1/providers/sim-bad/health").await;
    assert_eq!(
        h["circuit"]["consecutive_failures"], 1,
        "the breaker still sees it: {h}"
    );
    let (_, text) = app.get("/metrics").await;
    assert!(
        !text.as_str().unwrap().contains("ohfp_operations_total{"),
        "{text}"
    );
    app.put(
        "/api/v1/providers/configuration",
        json!({"metrics_collection_enabled": true}),
    )
    .await;
    execute(&app, on("sim-primary")).await;
    let (_, m) = app.get("/api/v1/providers/sim-primary/metrics").await;
    assert_eq!(m["totals"]["count"], 1, "{m}");
    app.stop().await;
}

#[tokio::test]
async fn the_guides_operation_context_is_echoed_and_checked() {
    let app = TestApp::spawn().await;
    // The guide's debug example.
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "parameters": {},
            "context": {"debug": true, "trace_id": "debug-123"}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["trace_id"], "debug-123");
    let v = execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
    assert!(v["metadata"].get("trace_id").is_none(), "{v}");
    for (context, path) in [
        (json!({"trace_id": "x".repeat(129)}), "context.trace_id"),
        (json!({"trace_id": ""}), "context.trace_id"),
        (json!({"trace_id": "a\nb"}), "context.trace_id"),
        (json!({"trace_id": 7}), "context.trace_id"),
        (json!({"debug": "yes"}), "context.debug"),
        (json!({"user": "x"}), "context.user"),
    ] {
        let (status, v) = app
            .post(
                "/api/v1/providers/operations",
                json!({"operation_type": "HEALTH_CHECK", "context": context}),
            )
            .await;
        assert_eq!(status, 422, "{context}: {v}");
        assert_eq!(v["errors"][0]["path"], path, "{context}: {v}");
    }
    let (_, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "context": {"user": "x"}}),
        )
        .await;
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `user`"),
        "{v}"
    );
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "context": {"trace_id": "x".repeat(128)}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn an_operation_a_strategy_does_not_support_is_unsupported_operation() {
    let app = TestApp::spawn().await;
    // The operations the guide's Provider1 supports.
    register_sim(
        &app,
        "provider1",
        json!({"supported_operations": ["CREATE_INSTANCES", "TERMINATE_INSTANCES",
            "GET_INSTANCE_STATUS", "HEALTH_CHECK"]}),
        json!({"priority": -1}),
    )
    .await;
    let v = execute(
        &app,
        json!({"operation_type": "VALIDATE_TEMPLATE", "parameters": {"template_id": "web-server"},
            "strategy_override": "provider1"}),
    )
    .await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], "UNSUPPORTED_OPERATION");
    assert!(
        v["error_message"]
            .as_str()
            .unwrap()
            .contains("does not support VALIDATE_TEMPLATE"),
        "{v}"
    );
    let (_, h) = app.get("/api/v1/providers/provider1/health").await;
    assert_eq!(
        h["circuit"]["consecutive_failures"], 0,
        "not the strategy's failure: {h}"
    );
    let (_, c) = app.get("/api/v1/providers/provider1/capabilities").await;
    assert_eq!(
        c["supported_operations"].as_array().unwrap().len(),
        4,
        "{c}"
    );
    // Selection passes it over; as the active strategy it is refused and failover goes on.
    let (_, sel) = app
        .post(
            "/api/v1/providers/selection",
            json!({"operation_type": "GET_AVAILABLE_TEMPLATES"}),
        )
        .await;
    assert_eq!(sel["selected_strategy"], "sim-primary", "{sel}");
    app.put(
        "/api/v1/providers/configuration",
        json!({"active_strategy": "provider1", "fallback_strategies": ["sim-primary"]}),
    )
    .await;
    let v = execute(&app, json!({"operation_type": "GET_AVAILABLE_TEMPLATES"})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(
        v["metadata"]["attempted"][0]["error_code"],
        "UNSUPPORTED_OPERATION"
    );
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "no-health", "provider_type": "simulated",
                "strategy_config": {"supported_operations": ["CREATE_INSTANCES"]}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["path"],
        "strategy_config.supported_operations"
    );
    app.stop().await;
}

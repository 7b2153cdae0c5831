use serde_json::json;

use crate::helpers::{TestApp, register_sim, test_config};

#[tokio::test]
async fn registered_strategies_and_configuration_survive_a_restart() {
    let app = TestApp::spawn().await;
    register_sim(
        &app,
        "sim-api",
        json!({"region": "sim-api-1", "capacity": 9}),
        json!({"priority": 3, "weight": 42}),
    )
    .await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"default_selection_policy": "RANDOM", "health_check_interval": 120}),
    )
    .await;
    app.post(
        "/api/v1/providers/sim-secondary/health",
        json!({"health_status": {"is_healthy": false}, "source": "ops"}),
    )
    .await;
    let cfg = test_config(&app.db);
    let dir = app.stop().await;

    let app = TestApp::start(cfg.clone()).await;
    let (status, v) = app.get("/api/v1/providers/sim-api").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "api");
    assert_eq!(v["priority"], 3);
    assert_eq!(v["weight"], 42.0);
    assert_eq!(
        v["strategy_config"],
        json!({"region": "sim-api-1", "capacity": 9})
    );
    let (_, list) = app.get("/api/v1/providers").await;
    let names: Vec<&str> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["strategy_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sim-primary", "sim-secondary", "sim-api"],
        "config strategies first, then API ones"
    );
    let (_, c) = app.get("/api/v1/providers/configuration").await;
    assert_eq!(c["default_selection_policy"], "RANDOM");
    assert_eq!(c["health_check_interval"], 120.0);
    let (_, h) = app.get("/api/v1/providers/sim-secondary/health").await;
    assert_eq!(h["source"], "ops");
    assert_eq!(h["is_healthy"], false);
    app.stop().await;

    // The file is authoritative for its own names: a strategy dropped from it goes away,
    // API-registered ones stay.
    let mut cfg = cfg;
    cfg.providers.retain(|p| p.name == "sim-primary");
    cfg.strategy.fallback_strategies = vec!["sim-primary".into()];
    let app = TestApp::start(cfg).await;
    let (_, list) = app.get("/api/v1/providers").await;
    let names: Vec<&str> = list["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["strategy_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sim-primary", "sim-api"]);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn a_stored_strategy_that_cannot_be_built_can_be_deleted_and_registered_again() {
    let app = TestApp::spawn().await;
    register_sim(&app, "sim-api", json!({"capacity": 9}), json!({})).await;
    let cfg = test_config(&app.db);
    let dir = app.stop().await;
    // What an older version stored and this one refuses to build.
    match &cfg.database.url {
        Some(url) => {
            crate::support::postgres::psql(
                url,
                "UPDATE strategies SET spec = jsonb_set(spec::jsonb, '{config,capacity}', '-1')::text
                 WHERE name = 'sim-api'",
            );
        }
        None => {
            let url = format!("sqlite://{}", cfg.database.path);
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query("UPDATE strategies SET spec = json_set(spec, '$.config.capacity', -1) WHERE name = 'sim-api'")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }

    let app = TestApp::start(cfg).await;
    let (status, _) = app.get("/api/v1/providers/sim-api").await;
    assert_eq!(status, 404, "skipped at start-up");
    let (status, v) = app.delete("/api/v1/providers/sim-api").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "unregistered");
    register_sim(&app, "sim-api", json!({"capacity": 3}), json!({})).await;
    let (status, _) = app.delete("/api/v1/providers/nowhere").await;
    assert_eq!(status, 404);
    app.stop().await;
    drop(dir);
}

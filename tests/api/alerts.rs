//! Alert rules: raised once and cleared once, stored, listed, emitted as events, shown in
//! /metrics and POSTed to webhooks (retried when the webhook fails); rules set at run time.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute, open_circuit_on_failing_sim, test_config};

/// A webhook that refuses its first call (so that delivery is retried) and keeps the rest.
#[derive(Clone, Default)]
struct Hook {
    calls: Arc<Mutex<u32>>,
    received: Arc<Mutex<Vec<Value>>>,
}

async fn receive(State(hook): State<Hook>, Json(body): Json<Value>) -> StatusCode {
    let first = {
        let mut calls = hook.calls.lock().unwrap();
        *calls += 1;
        *calls == 1
    };
    if first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    hook.received.lock().unwrap().push(body);
    StatusCode::NO_CONTENT
}

impl Hook {
    async fn start() -> (Self, String) {
        let hook = Hook::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }

    /// (status, strategy) of each notice delivered so far.
    fn notices(&self) -> Vec<(String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["status"].as_str().unwrap().to_string(),
                    n["alert"]["strategy"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect()
    }
}

fn circuit_rule() -> Value {
    json!([{"name": "circuit-open", "condition": {"type": "circuit_open"}, "clear_seconds": 0}])
}

#[tokio::test]
async fn an_alert_fires_once_to_the_webhook_and_clears_once_after_recovery() {
    let (hook, url) = Hook::start().await;
    let app = TestApp::spawn_with(|cfg| {
        cfg.alerts.evaluate_every_seconds = 1.0;
        cfg.alerts.webhooks = vec![url];
        cfg.alerts.webhook_backoff_seconds = 0.05;
        cfg.alerts.rules = serde_json::from_value(circuit_rule()).unwrap();
    })
    .await;
    // A burst with injected failures opens the circuit; more calls while it is open change
    // nothing.
    open_circuit_on_failing_sim(&app, "sim-flappy").await;
    for _ in 0..5 {
        execute(
            &app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-flappy"}),
        )
        .await;
    }
    let hook_ref = &hook;
    eventually("the raise reaches the webhook", || async move {
        (hook_ref.notices() == [("raised".to_string(), "sim-flappy".to_string())]).then_some(())
    })
    .await;
    let (_, alerts) = app.get("/api/v1/alerts").await;
    assert_eq!(alerts["active"].as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts["active"][0]["rule"], "circuit-open");
    assert_eq!(alerts["active"][0]["condition"], "circuit_open");
    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ohfp_alerts_active{rule=\"circuit-open\"} 1"),
        "{metrics}"
    );
    // Recovery: the provider works again and the circuit closes through a half-open probe.
    app.put(
        "/api/v1/providers/sim-flappy",
        json!({"provider_type": "simulated", "strategy_config": {"failure_rate": 0.0}}),
    )
    .await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 1}}),
    )
    .await;
    let app_ref = &app;
    eventually("sim-flappy's circuit closes", || async move {
        let (_, h) = app_ref.get("/api/v1/providers/sim-flappy/health").await;
        if h["circuit"]["state"] == "half_open" {
            execute(
                app_ref,
                json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-flappy"}),
            )
            .await;
        }
        (h["circuit"]["state"] == "closed").then_some(())
    })
    .await;
    eventually("the clear reaches the webhook", || async move {
        (hook_ref.notices().len() == 2).then_some(())
    })
    .await;
    // A marker raised by a later evaluation: by then a second raise of sim-flappy would show.
    open_circuit_on_failing_sim(&app, "sim-marker").await;
    eventually("the marker's raise reaches the webhook", || async move {
        hook_ref
            .notices()
            .contains(&("raised".to_string(), "sim-marker".to_string()))
            .then_some(())
    })
    .await;
    let flappy: Vec<(String, String)> = hook
        .notices()
        .into_iter()
        .filter(|(_, s)| s == "sim-flappy")
        .collect();
    assert_eq!(
        flappy,
        [
            ("raised".to_string(), "sim-flappy".to_string()),
            ("cleared".to_string(), "sim-flappy".to_string())
        ]
    );
    assert!(
        *hook.calls.lock().unwrap() > hook.notices().len() as u32,
        "a failed POST was retried"
    );
    let (_, alerts) = app.get("/api/v1/alerts").await;
    let recent = alerts["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{alerts}");
    assert_eq!(recent[0]["strategy"], "sim-flappy");
    assert!(recent[0]["cleared_at"].is_string());
    let (_, events) = app.get("/api/v1/events?kind=alert_raised").await;
    assert_eq!(events["count"], 2, "{events}");
    let (_, events) = app
        .get("/api/v1/events?kind=alert_cleared&strategy=sim-flappy")
        .await;
    assert_eq!(events["count"], 1, "{events}");
    app.stop().await;
}

#[tokio::test]
async fn rules_are_set_at_run_time_checked_and_kept_across_a_restart() {
    let app = TestApp::spawn().await;
    let (status, v) = app.get("/api/v1/alerts/rules").await;
    assert_eq!(status, 200);
    assert_eq!(v["source"], "file");
    assert!(
        v["rules"].as_array().unwrap().len() >= 6,
        "the default rules: {v}"
    );
    let (status, v) = app
        .put(
            "/api/v1/alerts/rules",
            json!({"rules": [{"name": "low", "condition": {"type": "success_rate_below",
                "percent": 150, "window_seconds": 300, "min_samples": 5}}]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("rules[0].condition.percent"), "{v}");
    let (status, v) = app
        .put(
            "/api/v1/alerts/rules",
            json!({"rules": [{"name": "slow", "condition": {"type": "response_time_above",
                "statistic": "mean", "ms": 100, "window_seconds": 120, "min_samples": 5}}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source"], "api");
    let db = app.db.clone();
    let dir = app.stop().await;
    let app = TestApp::start(test_config(&db)).await;
    let (_, v) = app.get("/api/v1/alerts/rules").await;
    assert_eq!(v["source"], "api");
    assert_eq!(v["rules"][0]["name"], "slow");
    assert_eq!(v["rules"][0]["condition"]["statistic"], "mean");
    app.stop().await;
    drop(dir);
}

/// The active alerts once one of `rule` is there.
async fn active_of(app: &TestApp, rule: &str) -> Value {
    eventually(&format!("an active {rule} alert"), || async {
        let (_, v) = app.get("/api/v1/alerts").await;
        v["active"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule)
            .cloned()
    })
    .await
}

#[tokio::test]
async fn success_rate_and_no_healthy_creator_rules_raise_with_what_they_saw() {
    let app = TestApp::spawn_with(|cfg| {
        cfg.alerts.evaluate_every_seconds = 1.0;
        cfg.strategy.circuit_breaker.failure_threshold = 1000;
        cfg.alerts.rules = serde_json::from_value(json!([
            {"name": "low-success", "strategy": "sim-bad", "clear_seconds": 0,
             "condition": {"type": "success_rate_below", "percent": 50, "window_seconds": 60,
                           "min_samples": 5}},
            {"name": "no-creator", "clear_seconds": 0, "condition": {"type": "no_healthy_creator"}}
        ]))
        .unwrap();
    })
    .await;
    crate::helpers::register_sim(&app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    for _ in 0..5 {
        let v = execute(
            &app,
            json!({"operation_type": "GET_AVAILABLE_TEMPLATES", "strategy_override": "sim-bad"}),
        )
        .await;
        assert_eq!(v["success"], false);
    }
    let low = active_of(&app, "low-success").await;
    assert_eq!(low["strategy"], "sim-bad");
    assert!(
        low["message"]
            .as_str()
            .unwrap()
            .contains("over 5 operation(s)"),
        "{low}"
    );
    for name in ["sim-primary", "sim-secondary", "sim-bad"] {
        let (status, v) = app
            .post(
                &format!("/api/v1/providers/{name}/health"),
                json!({"health_status": {"is_healthy": false}, "source": "test"}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
    }
    let none = active_of(&app, "no-creator").await;
    assert_eq!(none["strategy"], Value::Null);
    let (status, _) = app
        .post(
            "/api/v1/providers/sim-primary/health",
            json!({"health_status": {"is_healthy": true}, "source": "test"}),
        )
        .await;
    assert_eq!(status, 200);
    eventually("the no-creator alert clears", || async {
        let (_, v) = app.get("/api/v1/alerts").await;
        v["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "no-creator")
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_failed_hostfactory_request_is_an_event_and_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::hostfactory::hf_config(dir.path(), 0.2);
    for p in &mut cfg.providers {
        p.config.insert("failure_rate".into(), json!(1.0));
    }
    cfg.alerts.evaluate_every_seconds = 1.0;
    cfg.alerts.rules = serde_json::from_value(json!([{"name": "hf-failed", "clear_seconds": 0,
        "condition": {"type": "hostfactory_request_failed", "window_seconds": 600}}]))
    .unwrap();
    let app = TestApp::start(cfg).await;
    let id = crate::hostfactory::request_machines(&app, "OnDemand-C5Large", 1).await;
    let failed = eventually("a request_failed event", || async {
        let (_, v) = app.get("/api/v1/events?kind=request_failed").await;
        (v["count"] == 1).then(|| v["events"][0].clone())
    })
    .await;
    assert_eq!(failed["detail"]["request_id"], id.as_str(), "{failed}");
    let alert = active_of(&app, "hf-failed").await;
    assert!(alert["message"].as_str().unwrap().contains(&id), "{alert}");
    assert_eq!(alert["strategy"], Value::Null);
    app.stop().await;
}

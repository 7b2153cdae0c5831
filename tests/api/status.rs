//! The status snapshot (`GET /api/v1/status`): the strategies with the counts getProviderMetrics
//! and `/metrics` have, the active alerts as listAlerts has them, the HostFactory requests
//! still running, and the last event id to follow the stream from.

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute, open_circuit_on_failing_sim};
use crate::hostfactory::{hf_config, request_machines};

/// The sum of `ohfp_operations_total` over every operation and outcome of `strategy`, from
/// the Prometheus text.
fn prometheus_operations(text: &str, strategy: &str) -> u64 {
    let label = format!("strategy=\"{strategy}\"");
    text.lines()
        .filter(|l| l.starts_with("ohfp_operations_total{") && l.contains(&label))
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap();
            value.parse::<f64>().unwrap() as u64
        })
        .sum()
}

/// Each strategy's `operations`, in the snapshot's order.
fn operations(snapshot: &Value) -> Vec<(&str, u64)> {
    snapshot["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["operations"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn strategy<'a>(snapshot: &'a Value, name: &str) -> &'a Value {
    snapshot["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the snapshot: {snapshot}"))
}

/// The HostFactory test app (its database in `dir`) with machines that take ten minutes to
/// boot, so that a request stays in flight, and one alert rule, `circuit-open`, judged every
/// second.
pub async fn status_app(dir: &Path) -> TestApp {
    let mut cfg = hf_config(dir, 600.0);
    cfg.alerts.evaluate_every_seconds = 1.0;
    cfg.alerts.rules = serde_json::from_value(
        json!([{"name": "circuit-open", "condition": {"type": "circuit_open"}, "clear_seconds": 0}]),
    )
    .unwrap();
    TestApp::start(cfg).await
}

#[tokio::test]
async fn the_snapshot_counts_what_get_provider_metrics_and_prometheus_count() {
    let dir = tempfile::tempdir().unwrap();
    let app = &status_app(dir.path()).await;
    for _ in 0..3 {
        execute(
            app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
        )
        .await;
    }
    // One failure opens sim-bad's circuit; the next calls are rejected without reaching it.
    open_circuit_on_failing_sim(app, "sim-bad").await;
    for _ in 0..2 {
        execute(
            app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-bad"}),
        )
        .await;
    }
    let request_id = &request_machines(app, "OnDemand-C5Large", 2).await;

    eventually("the alert and the request's two machines", || async move {
        let (status, s) = app.get("/api/v1/status").await;
        assert_eq!(status, 200, "{s}");
        let machines = s["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == request_id.as_str())
            .map(|r| r["machines"].clone());
        let alerted = !s["alerts"].as_array().unwrap().is_empty();
        (alerted && machines == Some(json!(2))).then_some(())
    })
    .await;

    // The reconciler polls the booting machines meanwhile: compare what was read between two
    // snapshots that count the same.
    let (snapshot, metrics, prometheus) = eventually("a quiet moment", || async move {
        let (_, before) = app.get("/api/v1/status").await;
        let (_, metrics) = app.get("/api/v1/providers/metrics").await;
        let (_, prometheus) = app.get("/metrics").await;
        let (_, after) = app.get("/api/v1/status").await;
        (operations(&before) == operations(&after)).then_some((after, metrics, prometheus))
    })
    .await;
    let prometheus = prometheus.as_str().unwrap();
    let listed: Vec<&str> = operations(&snapshot)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let registered: Vec<&str> = metrics["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["registered"] == true)
        .map(|m| m["strategy_name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, registered, "every registered strategy, in order");
    for m in metrics["strategies"].as_array().unwrap() {
        let name = m["strategy_name"].as_str().unwrap();
        let s = strategy(&snapshot, name);
        assert_eq!(s["operations"], m["totals"]["count"], "{name}: {s} vs {m}");
        assert_eq!(s["success_rate"], m["totals"]["success_rate"], "{name}");
        assert_eq!(s["p95_ms"], m["totals"]["p95_response_time_ms"], "{name}");
        assert_eq!(s["health"], m["live"]["health"], "{name}");
        assert_eq!(s["circuit"], m["live"]["circuit"]["state"], "{name}");
        assert_eq!(
            s["operations"].as_u64(),
            Some(prometheus_operations(prometheus, name)),
            "{name}: /metrics"
        );
    }
    let bad = strategy(&snapshot, "sim-bad");
    assert_eq!(bad["operations"], 3, "one failure, two rejections: {bad}");
    assert_eq!(bad["success_rate"], 0.0);
    assert_eq!(bad["circuit"], "open");
    assert_eq!(bad["circuit_mode"], "auto");
    assert_eq!(bad["type"], "simulated");
    assert_eq!(bad["enabled"], true);
    assert_eq!(bad["in_flight"], 0);
    assert!(
        bad["last_error"]
            .as_str()
            .unwrap()
            .starts_with("CIRCUIT_OPEN: "),
        "the latest error is a rejection: {bad}"
    );
    let primary = strategy(&snapshot, "sim-primary");
    assert!(primary["operations"].as_u64().unwrap() >= 3, "{primary}");
    assert_eq!(primary["last_error"], Value::Null);

    let (_, alerts) = app.get("/api/v1/alerts").await;
    assert_eq!(snapshot["alerts"], alerts["active"]);
    assert_eq!(snapshot["alerts"][0]["strategy"], "sim-bad");

    let request = &snapshot["requests"][0];
    assert_eq!(request["kind"], "acquire");
    assert_eq!(request["template_id"], "OnDemand-C5Large");
    assert_eq!(request["machines_by_state"], json!({"pending": 2}));
    assert!(request["created_at"].as_str().unwrap().ends_with('Z'));

    // The last event id is the newest event's: the next one follows it.
    let last = snapshot["last_event_id"].as_u64().unwrap();
    execute(
        app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
    )
    .await;
    let ids = eventually("the events around the last id are stored", || async move {
        let (_, v) = app
            .get(&format!("/api/v1/events?after={}&limit=2", last - 1))
            .await;
        let ids: Vec<u64> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        (ids.len() == 2).then_some(ids)
    })
    .await;
    assert_eq!(ids, [last, last + 1]);
}

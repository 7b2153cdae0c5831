//! `/metrics` is valid exposition, read by a real parser: Python's prometheus_client (from
//! PyPI, in a venv the test installs), in both the Prometheus text format and OpenMetrics; and
//! it counts what getProviderMetrics counts.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute, open_circuit_on_failing_sim, register_sim};
use crate::hostfactory::{hf_app, hf_config, request_machines, wait_status};
use crate::support::pyvenv;

const PARSER_SPEC: &str = "prometheus-client==0.26.0";

/// Parses both texts with prometheus_client's parsers; the samples of each, as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as prometheus
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
out = {}
for fmt, parse, path in (("prometheus", prometheus, sys.argv[1]), ("openmetrics", openmetrics, sys.argv[2])):
    with open(path) as f:
        families = list(parse(f.read()))
    out[fmt] = [{"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels,
                 "value": s.value} for fam in families for s in fam.samples]
print(json.dumps(out))
"#;

async fn scrape(app: &TestApp, accept: Option<&str>) -> (String, String) {
    let mut req = app.client.get(app.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    (content_type, res.text().await.unwrap())
}

/// Samples by format, parsed by prometheus_client; panics with the parser's words if a text
/// is not valid.
fn parse(prometheus: &str, openmetrics: &str) -> Value {
    let venv = pyvenv::install(&pyvenv::cache_dir("prometheus-venv"), PARSER_SPEC);
    let dir = tempfile::tempdir().unwrap();
    let (p, o) = (dir.path().join("p.txt"), dir.path().join("o.txt"));
    std::fs::write(&p, prometheus).unwrap();
    std::fs::write(&o, openmetrics).unwrap();
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", PARSE])
        .arg(&p)
        .arg(&o)
        .output()
        .expect("the venv's python runs");
    assert!(
        out.status.success(),
        "prometheus_client rejects the exposition: {}\n--- prometheus ---\n{prometheus}\n--- openmetrics ---\n{openmetrics}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(samples: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.as_array().unwrap().iter().find_map(|s| {
        let matches = s["name"] == name
            && labels
                .iter()
                .all(|(k, v)| s["labels"][k].as_str() == Some(*v));
        matches.then(|| s["value"].as_f64().unwrap())
    })
}

#[tokio::test]
async fn metrics_are_valid_exposition_and_count_what_get_provider_metrics_counts() {
    let hf = hf_app(0.2).await;
    let app = &hf.app;
    register_sim(app, "sim-bad", json!({"failure_rate": 1.0}), json!({})).await;
    for _ in 0..3 {
        execute(
            app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
        )
        .await;
    }
    let failed = execute(
        app,
        json!({"operation_type": "GET_AVAILABLE_TEMPLATES", "strategy_override": "sim-bad"}),
    )
    .await;
    assert_eq!(failed["success"], false, "{failed}");
    let (status, _) = app.get("/api/v1/nothing/here").await;
    assert_eq!(status, 404);
    let id = request_machines(app, "OnDemand-C5Large", 1).await;
    wait_status(app, &id, "complete").await;

    let (content_type, prometheus) = scrape(app, None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let (content_type, openmetrics) =
        scrape(app, Some("application/openmetrics-text; version=1.0.0")).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    // One HELP and TYPE per family: the exposition's grouping rule.
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for line in prometheus.lines().filter(|l| l.starts_with("# TYPE ")) {
        *types.entry(line.split(' ').nth(2).unwrap()).or_default() += 1;
    }
    assert!(types.values().all(|n| *n == 1), "{types:?}");

    let parsed = parse(&prometheus, &openmetrics);
    for format in ["prometheus", "openmetrics"] {
        let samples = &parsed[format];
        let ops = |strategy, op, outcome| {
            sample(
                samples,
                "ohfp_operations_total",
                &[
                    ("strategy", strategy),
                    ("operation", op),
                    ("outcome", outcome),
                ],
            )
        };
        let (_, m) = app.get("/api/v1/providers/sim-primary/metrics").await;
        let count = m["operations"]["HEALTH_CHECK"]["count"].as_f64().unwrap();
        assert_eq!(
            ops("sim-primary", "HEALTH_CHECK", "success"),
            Some(count),
            "{format}: {m}"
        );
        assert_eq!(
            ops("sim-bad", "GET_AVAILABLE_TEMPLATES", "failure"),
            Some(1.0),
            "{format}"
        );
        assert_eq!(
            sample(
                samples,
                "ohfp_operation_duration_seconds_count",
                &[("strategy", "sim-primary"), ("operation", "HEALTH_CHECK")]
            ),
            Some(count),
            "{format}"
        );
        let bucket = sample(
            samples,
            "ohfp_operation_duration_seconds_bucket",
            &[
                ("strategy", "sim-primary"),
                ("operation", "HEALTH_CHECK"),
                ("outcome", "success"),
                ("le", "+Inf"),
            ],
        );
        assert_eq!(bucket, Some(count), "{format}");
        assert_eq!(
            sample(samples, "ohfp_circuit_state", &[("strategy", "sim-bad")]),
            Some(0.0)
        );
        assert!(
            sample(
                samples,
                "ohfp_strategy_in_flight",
                &[("strategy", "sim-primary")]
            )
            .is_some()
        );
        assert!(
            sample(
                samples,
                "ohfp_strategy_healthy",
                &[("strategy", "sim-primary")]
            )
            .is_some()
        );
        assert_eq!(
            sample(
                samples,
                "ohfp_hostfactory_requests",
                &[("kind", "acquire"), ("state", "done")]
            ),
            Some(1.0),
            "{format}"
        );
        assert!(
            sample(
                samples,
                "ohfp_hostfactory_machines",
                &[("state", "running")]
            )
            .is_some(),
            "{format}"
        );
        let route = |route, method, status| {
            sample(
                samples,
                "ohfp_http_requests_total",
                &[("route", route), ("method", method), ("status", status)],
            )
        };
        assert_eq!(
            route("/api/v1/providers/operations", "POST", "200"),
            Some(4.0),
            "{format}"
        );
        assert_eq!(route("unmatched", "GET", "404"), Some(1.0), "{format}");
        assert!(
            route("/api/v1/providers", "POST", "201") == Some(1.0),
            "{format}"
        );
        assert_eq!(
            sample(samples, "ohfp_events_not_stored_total", &[]),
            Some(0.0)
        );
    }
    hf.app.stop().await;
}

#[tokio::test]
async fn a_breaker_opening_shows_in_metrics() {
    let app = TestApp::spawn().await;
    open_circuit_on_failing_sim(&app, "sim-bad").await;
    eventually("the open circuit in /metrics", || async {
        let (_, text) = scrape(&app, None).await;
        text.contains("ohfp_circuit_state{strategy=\"sim-bad\"} 2")
            .then_some(())
    })
    .await;
    app.stop().await;
}

/// The reconciler's series: its rounds, and one status call per batch of
/// `hostfactory.status_batch_size` machines in flight, per strategy.
#[tokio::test]
async fn reconciler_rounds_and_status_calls_per_batch_show_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hf_config(dir.path(), 30.0);
    cfg.hostfactory.status_batch_size = 2;
    let app = TestApp::start(cfg).await;
    request_machines(&app, "OnDemand-C5Large", 5).await;
    // 5 machines booting for 30 s, asked about in batches of 2: 3 calls a round, seen in one
    // scrape (a scrape between a round's start and its poll shows no latest poll).
    let (strategy, text) = eventually("a poll of 5 machines in 3 calls", || async {
        let (_, text) = scrape(&app, None).await;
        let strategy = text
            .lines()
            .find(|l| l.starts_with("ohfp_reconcile_last_poll_machines{") && l.ends_with(" 5"))
            .map(|l| l.split('"').nth(1).unwrap().to_string())?;
        let calls = format!("ohfp_reconcile_last_poll_calls{{strategy=\"{strategy}\"}} 3");
        text.lines().any(|l| l == calls).then_some((strategy, text))
    })
    .await;
    let rounds = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("ohfp_reconcile_round_seconds_count "))
            .unwrap_or_else(|| panic!("no round count:\n{text}"))
            .parse()
            .unwrap()
    };
    // The latest poll's gauges are set as it starts; its calls are counted as they are made.
    eventually("the poll's 3 calls counted", || async {
        let (_, text) = scrape(&app, None).await;
        let total = text.lines().find_map(|l| {
            l.strip_prefix(&format!(
                "ohfp_reconcile_status_calls_total{{strategy=\"{strategy}\"}} "
            ))
        })?;
        (total.parse::<f64>().ok()? >= 3.0).then_some(())
    })
    .await;
    let before = rounds(&text);
    assert!(before >= 1.0, "{text}");
    eventually("more rounds counted", || async {
        let (_, text) = scrape(&app, None).await;
        (rounds(&text) > before).then_some(())
    })
    .await;
    app.stop().await;
}

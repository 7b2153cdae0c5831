//! The status page (`/status`) in headless Chromium: it loads on its own (no outside assets,
//! a strict Content-Security-Policy), shows every strategy with the counts getProviderMetrics
//! has, the requests in flight, and follows the event stream: a breaker that opens and the
//! alert it raises show up without a reload. With protected reads it says it needs a token.

use serde_json::{Value, json};

use crate::auth::scoped_app;
use crate::helpers::{TestApp, eventually, execute, register_sim};
use crate::hostfactory::request_machines;
use crate::status::status_app;
use crate::support::chromium::Browser;

/// The strategy rows as the page shows them: name, health, breaker and operations.
const STRATEGY_ROWS: &str = r#"
return Array.from(document.querySelectorAll("tr[data-strategy]")).map((tr) => {
  const field = (f) => tr.querySelector(`[data-field="${f}"]`).textContent.trim();
  return {name: tr.dataset.strategy, health: field("health"), circuit: field("circuit"),
          operations: Number(field("operations"))};
});"#;

/// (name, operations) of every registered strategy, from getProviderMetrics.
async fn metric_counts(app: &TestApp) -> Vec<(String, u64)> {
    let (_, m) = app.get("/api/v1/providers/metrics").await;
    m["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["registered"] == true)
        .map(|s| {
            (
                s["strategy_name"].as_str().unwrap().to_string(),
                s["totals"]["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn shown_counts(rows: &Value) -> Vec<(String, u64)> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["operations"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_page_shows_the_strategies_and_follows_a_breaker_opening_without_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let app = &status_app(dir.path()).await;

    let res = app.client.get(app.url("/status")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        res.headers()[name]
            .to_str()
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(header("content-type").starts_with("text/html"));
    let csp = header("content-security-policy");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(
        !page.contains("src=") && !page.contains("href=") && !page.contains("@import"),
        "no outside assets"
    );

    register_sim(app, "sim-flaky", json!({"failure_rate": 1.0}), json!({})).await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 3600}}),
    )
    .await;
    for _ in 0..3 {
        execute(
            app,
            json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
        )
        .await;
    }
    let request_id = &request_machines(app, "OnDemand-C5Large", 1).await;

    let chromium = Browser::start().await;
    let browser = &chromium;
    browser.goto(&app.url("/status")).await;
    // Gone if the page reloads.
    browser.run("window.ohfpMarker = 42; return null;").await;
    eventually("the page follows the event stream", || async move {
        let state = browser
            .run(r#"return document.getElementById("connection").dataset.state;"#)
            .await;
        (state == "live").then_some(())
    })
    .await;

    let (_, snapshot) = &app.get("/api/v1/status").await;
    let rows = eventually("every strategy on the page", || async move {
        let rows = browser.run(STRATEGY_ROWS).await;
        (rows.as_array().unwrap().len() == snapshot["strategies"].as_array().unwrap().len())
            .then_some(rows)
    })
    .await;
    for (row, s) in rows
        .as_array()
        .unwrap()
        .iter()
        .zip(snapshot["strategies"].as_array().unwrap())
    {
        assert_eq!(row["name"], s["name"], "{rows}");
        assert_eq!(row["health"], s["health"], "{rows}");
        assert_eq!(row["circuit"], "closed", "{rows}");
    }
    // The reconciler polls the booting machine meanwhile: the page keeps up with the counts.
    eventually("the page shows getProviderMetrics' counts", || async move {
        let before = metric_counts(app).await;
        let shown = shown_counts(&browser.run(STRATEGY_ROWS).await);
        let after = metric_counts(app).await;
        (before == after && shown == before).then_some(())
    })
    .await;
    let shown_request = browser
        .run(&format!(
            r#"const tr = document.querySelector('tr[data-request="{request_id}"]');
               return tr && tr.querySelector('[data-field="machines_by_state"]').textContent;"#
        ))
        .await;
    assert_eq!(shown_request, "1 pending");

    // One failure opens sim-flaky's breaker (threshold 1); the page learns it from the stream.
    execute(
        app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-flaky"}),
    )
    .await;
    let flaky = r#"return document.querySelector('tr[data-strategy="sim-flaky"] [data-field="circuit"]').textContent;"#;
    eventually("the page shows the breaker open", || async move {
        (browser.run(flaky).await == "open").then_some(())
    })
    .await;
    eventually("the page shows the alert", || async move {
        let alert = browser
            .run(
                r#"const td = document.querySelector('tr[data-alert] [data-field="strategy"]');
                   return td && td.textContent;"#,
            )
            .await;
        (alert == "sim-flaky").then_some(())
    })
    .await;
    assert_eq!(
        browser.run("return window.ohfpMarker;").await,
        42,
        "the page was not reloaded"
    );
    let open_tiles = browser
        .run(r#"return document.getElementById("count-open").textContent;"#)
        .await;
    assert_eq!(open_tiles, "1");
    chromium.quit().await;
}

#[tokio::test]
async fn with_protected_reads_the_page_says_it_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = &scoped_app(dir.path(), true).await;
    let (status, _) = app.get("/api/v1/status").await;
    assert_eq!(status, 401);
    let (status, _) = app.get("/status").await;
    assert_eq!(status, 200, "the page itself holds no data");

    let chromium = Browser::start().await;
    let browser = &chromium;
    browser.goto(&app.url("/status")).await;
    let problem = eventually("the page says it needs a token", || async move {
        let shown = browser
            .run(
                r#"const state = document.getElementById("connection").dataset.state;
                   return state === "needs-token" ? document.getElementById("problem").textContent : null;"#,
            )
            .await;
        shown.as_str().map(str::to_string)
    })
    .await;
    assert!(problem.contains("protect_reads"), "{problem}");
    let rows = browser.run(STRATEGY_ROWS).await;
    assert_eq!(rows, json!([]), "nothing shown");
    chromium.quit().await;
}

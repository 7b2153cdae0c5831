use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn liveness_readiness_docs_and_prometheus() {
    let app = TestApp::spawn().await;
    let (status, v) = app.get("/health").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")));
    let (status, v) = app.get("/ready").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ready")));
    let (status, v) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(v["paths"]["/api/v1/providers/operations"]["post"].is_object());
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger"));
    crate::helpers::execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
    let text = app.get_text("/metrics").await;
    assert!(text.contains("ohfp_operations_total{strategy=\"sim-primary\",operation=\"HEALTH_CHECK\",outcome=\"success\"} 1"), "{text}");
    assert!(text.contains("ohfp_circuit_state{strategy=\"sim-secondary\"} 0"));
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_methods_and_oversized_bodies_are_problems() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 4096).await;
    let (status, v) = app.get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert_eq!(v["type"], "urn:ohfp:problem:not-found");
    let res = app
        .client
        .patch(app.url("/api/v1/providers"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let big = "x".repeat(10_000);
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK", "parameters": {"pad": big}}),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "an empty body is refused");
    app.stop().await;
}

/// A problem about a 100 kB value stays under 64 KiB, whole: valid JSON, with its request id,
/// and a Content-Length that matches the body.
#[tokio::test]
async fn a_long_problem_is_cut_inside_its_json_with_a_true_length() {
    let app = TestApp::spawn().await;
    let long = "X".repeat(100_000);
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .header("x-request-id", "long-problem-1")
        .json(&json!({"operation_type": long}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let length: usize = res.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = res.bytes().await.unwrap();
    assert_eq!(length, body.len());
    assert!(body.len() <= 64 * 1024, "{}", body.len());
    let v: Value = serde_json::from_slice(&body).expect("valid JSON");
    assert_eq!(v["request_id"], "long-problem-1");
    assert_eq!(v["errors"][0]["path"], "operation_type", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("XXXXXXXXXX"), "{v}");
    app.stop().await;
}

#[tokio::test]
async fn mutating_routes_need_the_token_when_auth_is_on() {
    let app = TestApp::spawn_with(|c| {
        c.server.auth.enabled = true;
        c.server.auth.token = Some("s3cret".into());
    })
    .await;
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "HEALTH_CHECK"}),
        )
        .await;
    assert_eq!(status, 401);
    assert!(!v.to_string().contains("s3cret"));
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .bearer_auth("wrong")
        .json(&json!({"operation_type": "HEALTH_CHECK"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .bearer_auth("s3cret")
        .json(&json!({"operation_type": "HEALTH_CHECK"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, _) = app.get("/api/v1/providers").await;
    assert_eq!(status, 200, "reads stay open");
    app.stop().await;
}

#[tokio::test]
async fn events_stream_reports_operations() {
    let app = TestApp::spawn().await;
    let mut res = app.events().await;
    assert_eq!(res.status(), 200);
    crate::helpers::execute(&app, json!({"operation_type": "HEALTH_CHECK"})).await;
    let event = crate::helpers::next_event(&mut res, "operation").await;
    assert_eq!(event["strategy"], "sim-primary");
    assert!(event["at"].is_string());
    drop(res);
    app.stop().await;
}

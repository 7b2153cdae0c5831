//! The audit trail of cloud-changing calls (README, "AWS provider"): a HostFactory request and
//! its return on moto leave rows naming the request ids; an operator route's call names the
//! route and the token's name. Pruning by retention is a unit test of the store.

use ohfp::config::{TokenConfig, TokenScope};
use serde_json::{Value, json};

use crate::aws::aws_strategy;
use crate::aws_hostfactory::{PRIMARY_REGION, aws_hf_app, delivered, give_back, request, returned};
use crate::helpers::{TestApp, decode};
use crate::support::aws::template;
use crate::support::moto::Moto;

/// The audit rows of `query`, checked to be a well-formed page.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let (status, page) = app.get(&format!("/api/v1/audit{query}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], page["records"].as_array().unwrap().len());
    page["records"].as_array().unwrap().clone()
}

fn ids_in(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_request_and_its_return_leave_audit_rows_with_the_request_ids() {
    let (primary, secondary) = (Moto::start().await, Moto::start().await);
    let hf = aws_hf_app(&primary, &secondary, 0.3).await;
    let ec2 = primary.ec2(PRIMARY_REGION).await;
    let acquire = request(&hf.app, "OnDemand-Run", 2).await;
    let machines = delivered(&hf.app, &ec2, &acquire, 2).await;
    let mut launched: Vec<String> = machines
        .iter()
        .map(|m| m["machineId"].as_str().unwrap().to_string())
        .collect();
    launched.sort();

    let rows = audit(&hf.app, &format!("?request_id={acquire}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = &rows[0];
    assert_eq!(run["action"], "RunInstances", "{run}");
    assert_eq!(run["strategy"], "aws-primary");
    assert_eq!(run["error_code"], Value::Null);
    assert_eq!(run["request_ids"], json!([acquire]));
    assert_eq!(run["target"]["count"], 2);
    assert_eq!(ids_in(&run["target"]["instance_ids"]), launched);

    let ret = give_back(&hf.app, &machines).await;
    returned(&hf.app, &ret, 2).await;
    let rows = audit(&hf.app, &format!("?request_id={ret}")).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let terminate = &rows[0];
    assert_eq!(terminate["action"], "TerminateInstances", "{terminate}");
    assert_eq!(ids_in(&terminate["target"]["instance_ids"]), launched);
    assert_eq!(terminate["request_ids"], json!([ret]));
    // Background work has no operator route or token.
    assert_eq!(terminate["route"], Value::Null);

    // The whole trail by time: both, oldest first, paged.
    let since = chrono::DateTime::from_timestamp_millis(run["at"].as_i64().unwrap())
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let all = audit(&hf.app, &format!("?since={}", since.replace('+', "%2B"))).await;
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["RunInstances", "TerminateInstances"]);
    let (status, first) = hf.app.get("/api/v1/audit?limit=1").await;
    assert_eq!(status, 200);
    let next = first["next_after"].as_u64().expect("a next page");
    let rest = audit(&hf.app, &format!("?after={next}")).await;
    assert_eq!(rest[0]["action"], "TerminateInstances");

    let (status, problem) = hf.app.get("/api/v1/audit?until=yesterday").await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("until"), "{problem}");
}

#[tokio::test]
async fn an_operator_route_call_records_the_route_and_the_token_name() {
    let moto = Moto::start().await;
    let strategy = aws_strategy("aws-a", &moto, "us-east-1", 0, 3);
    let app = TestApp::spawn_with(move |cfg| {
        cfg.providers = vec![strategy];
        cfg.server.auth.enabled = true;
        cfg.server.auth.tokens = vec![TokenConfig {
            name: "ops-alice".into(),
            scope: TokenScope::ReadWrite,
            token: Some("rw-s3cret".into()),
            token_file: None,
            rate_limit: None,
        }];
    })
    .await;
    let body = json!({
        "operation_type": "CREATE_INSTANCES",
        "strategy_override": "aws-a",
        "parameters": {"count": 1, "request_id": "req-ops", "template": template("OnDemand-Run")},
    });
    let res = app
        .client
        .post(app.url("/api/v1/providers/operations"))
        .bearer_auth("rw-s3cret")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, v) = decode(res).await;
    assert_eq!((status, &v["success"]), (200, &json!(true)), "{v}");

    let rows = audit(&app, "?request_id=req-ops").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["action"], "RunInstances");
    assert_eq!(rows[0]["route"], "POST /api/v1/providers/operations");
    assert_eq!(rows[0]["token"], "ops-alice");
    assert!(!rows[0].to_string().contains("rw-s3cret"));
}

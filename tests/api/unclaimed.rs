//! Issue 12 item 6: an acquire request HostFactory never asks about (its answer was lost, say
//! in a crash between saving and answering) is cancelled after
//! `hostfactory.unclaimed_request_timeout_seconds` of uptime, and its machines are returned
//! through an ordinary return request, so that they are neither paid for nor kept.

use std::path::Path;

use chrono::DateTime;
use ohfp::hostfactory::model::{HfRequest, RequestKind, RequestState};
use ohfp::store::HostFactoryRepo;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually};
use crate::hostfactory::{hf_config, request_machines, status_of, wait_status};

const TEMPLATE: &str = "OnDemand-C5Large";

/// Seconds a request may stay unclaimed here: short, yet long enough for the claiming calls
/// below to come first on a loaded machine.
const TIMEOUT: f64 = 5.0;

/// The HostFactory fixture app, its simulated strategies holding `capacity` live instances
/// each, requests unclaimed for `timeout` seconds cancelled.
fn config(dir: &Path, capacity: u64, timeout: f64) -> ohfp::config::Config {
    let mut cfg = hf_config(dir, 0.2);
    cfg.hostfactory.unclaimed_request_timeout_seconds = timeout;
    for p in &mut cfg.providers {
        p.config.insert("capacity".into(), json!(capacity));
    }
    cfg
}

/// `GET /api/v1/requests/{id}`: the operator's read, which claims nothing.
async fn operator_view(app: &TestApp, id: &str) -> Value {
    let (status, v) = app.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until request `id` (read by the operator) has `status` and answers it.
async fn operator_wait(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(&format!("request {id} {status}"), || async {
        let v = operator_view(app, id).await;
        (v["status"] == status).then_some(v)
    })
    .await
}

/// The request_unclaimed events, oldest first.
async fn unclaimed_events(app: &TestApp) -> Vec<Value> {
    let (status, v) = app.get("/api/v1/events?kind=request_unclaimed").await;
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().unwrap().clone()
}

/// Waits until request `id` is cancelled as unclaimed with `count` machines, all terminated
/// by the return request its message names, and answers that return's id.
async fn wait_cancelled(app: &TestApp, id: &str, count: usize) -> String {
    let view = eventually(
        &format!("{id} cancelled, its machines terminated"),
        || async {
            let v = operator_view(app, id).await;
            let machines = v["machines"].as_array().unwrap();
            let gone = machines.iter().all(|m| m["status"] == "terminated");
            let cancelled = v["message"].as_str().unwrap().contains(&format!(
                "HostFactory never asked about this request within {TIMEOUT}s"
            ));
            (cancelled && gone && machines.len() == count).then_some(v)
        },
    )
    .await;
    assert_eq!(view["status"], "complete_with_error", "{view}");
    let message = view["message"].as_str().unwrap();
    let ret = message[message.find("ret-").expect("the return named")..]
        .trim_end_matches([')', '.'])
        .to_string();
    let returned = operator_wait(app, &ret, "complete").await;
    assert_eq!(
        returned["machines"].as_array().unwrap().len(),
        count,
        "{returned}"
    );
    ret
}

#[tokio::test]
async fn a_request_never_asked_about_is_cancelled_and_its_machines_returned_others_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    // Room for 8 machines in all: the 3 of the unclaimed request are needed at the end.
    let cfg = config(dir.path(), 4, TIMEOUT);
    let db = cfg.database.path.clone();
    let app = TestApp::start(cfg).await;
    let unclaimed = request_machines(&app, TEMPLATE, 3).await;
    let polled = request_machines(&app, TEMPLATE, 3).await;
    // HostFactory asks about this one at once: that claims it.
    status_of(&app, &polled).await;
    let (status, v) = app
        .post(
            "/api/v1/requests",
            json!({"template_id": TEMPLATE, "machine_count": 1}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let operator = v["request_id"].as_str().unwrap().to_string();

    let ret = wait_cancelled(&app, &unclaimed, 3).await;
    let events = eventually("the request_unclaimed event", || async {
        let events = unclaimed_events(&app).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["request_id"], unclaimed.as_str());
    assert_eq!(events[0]["detail"]["return_request_id"], ret.as_str());
    assert_eq!(
        events[0]["detail"]["machines_returned"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Both other requests were made before the unclaimed one was cancelled, so their time has
    // passed too: asked about by HostFactory, or made by an operator, they are kept.
    let kept = wait_status(&app, &polled, "complete").await;
    assert!(
        !kept["message"].as_str().unwrap().contains("never asked"),
        "{kept}"
    );
    let machines = kept["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "{kept}");
    assert!(machines.iter().all(|m| m["status"] == "running"), "{kept}");
    let by_operator = operator_wait(&app, &operator, "complete").await;
    assert_eq!(by_operator["machines"][0]["status"], "running");

    // The returned machines freed their room: 3 more fit only because of them (4 of 8 live).
    let again = request_machines(&app, TEMPLATE, 3).await;
    let done = wait_status(&app, &again, "complete").await;
    assert_eq!(done["machines"].as_array().unwrap().len(), 3, "{done}");

    // A request due already when provisioning starts (recorded, then left unprovisioned past
    // the timeout) gets no machine at all.
    let store = crate::helpers::open_store(Path::new(&db)).await;
    let long_ago = chrono::Utc::now().timestamp_millis() - 60_000;
    let stale = "req-saved-but-never-answered";
    store
        .insert_hf_request(&HfRequest {
            request_id: stale.into(),
            kind: RequestKind::Acquire,
            template_id: Some(TEMPLATE.into()),
            template: Some(json!({"templateId": TEMPLATE, "vmType": "c5.large"})),
            requested_count: 2,
            provider_name: None,
            strategy: None,
            state: RequestState::Pending,
            message: String::new(),
            resource_id: None,
            provider_api: None,
            attempts: 0,
            created_at: long_ago,
            updated_at: long_ago,
            claimed_at: None,
        })
        .await
        .unwrap();
    store.close().await;
    let view = eventually("the stale request cancelled", || async {
        let v = operator_view(&app, stale).await;
        let cancelled = v["message"].as_str().unwrap().contains("never asked");
        cancelled.then_some(v)
    })
    .await;
    assert_eq!(view["status"], "complete_with_error", "{view}");
    assert_eq!(view["machines"], json!([]), "no machine made: {view}");
    app.stop().await;
}

#[tokio::test]
async fn a_request_saved_before_a_stop_and_never_asked_about_is_cancelled_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    // First run: the rule off. HostFactory never gets the id (the answer was lost).
    let app = TestApp::start(config(dir.path(), 10, 0.0)).await;
    let lost = request_machines(&app, TEMPLATE, 2).await;
    operator_wait(&app, &lost, "complete").await;
    app.stop().await;

    let restarted = chrono::Utc::now();
    let app = TestApp::start(config(dir.path(), 10, TIMEOUT)).await;
    wait_cancelled(&app, &lost, 2).await;
    let events = eventually("the request_unclaimed event", || async {
        let events = unclaimed_events(&app).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    // The timeout runs from the restart at the earliest: HostFactory gets the whole of it.
    let at = DateTime::parse_from_rfc3339(events[0]["at"].as_str().unwrap()).unwrap();
    let after = at.signed_duration_since(restarted).num_milliseconds();
    assert!(
        after >= (TIMEOUT * 1000.0) as i64,
        "cancelled {after} ms after the restart"
    );
    assert_eq!(events[0]["detail"]["request_id"], lost.as_str());
    app.stop().await;
}

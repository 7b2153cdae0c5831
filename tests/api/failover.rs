//! Several replicas in `OHFP_URL`: the HostFactory scripts and the CLI go on to the next URL
//! only when one cannot be reached (nothing listening, or the connection closed unanswered, as
//! when a replica dies mid-call); an answer, error or not, is final.

use serde_json::{Value, json};

use crate::cli::ohfp_in_env;
use crate::helpers::TestApp;
use crate::hostfactory::{hf_app, shim_at, wait_status};
use crate::support::free_port;

/// A URL nothing listens on.
fn closed_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A listener that takes each connection and closes it unanswered, as a replica that dies
/// mid-call does (curl's "empty reply", 52).
async fn dying_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    url
}

/// How many calls to `route` the app has answered (its `/metrics`).
async fn calls_to(app: &TestApp, route: &str) -> u64 {
    let label = format!("route=\"{route}\"");
    app.get_text("/metrics")
        .await
        .lines()
        .filter(|l| l.starts_with("ohfp_http_requests_total{") && l.contains(&label))
        .map(|l| {
            let value = l.rsplit(' ').next().unwrap();
            value.parse::<f64>().unwrap() as u64
        })
        .sum()
}

#[tokio::test]
async fn the_shims_go_on_to_the_next_url_when_one_is_down() {
    let hf = hf_app(0.2).await;
    let urls = format!(
        "{},{} http://{}",
        closed_url(),
        dying_url().await,
        hf.app.addr
    );
    let (code, v, stderr) = shim_at(&urls, "getAvailableTemplates", "{}", None).await;
    assert_eq!(code, 0, "{v} {stderr}");
    assert!(
        v["templates"].as_array().is_some_and(|t| !t.is_empty()),
        "{v}"
    );
    let input = json!({"template": {"templateId": "OnDemand-C5Large", "machineCount": 1}});
    let (code, v, stderr) = shim_at(&urls, "requestMachines", &input.to_string(), None).await;
    assert_eq!(code, 0, "{v} {stderr}");
    wait_status(&hf.app, v["requestId"].as_str().unwrap(), "complete").await;
    hf.app.stop().await;
}

#[tokio::test]
async fn the_shims_name_every_url_when_none_is_reached() {
    let (closed, dying) = (closed_url(), dying_url().await);
    let (code, v, stderr) = shim_at(
        &format!("{closed}, {dying}"),
        "getAvailableTemplates",
        "{}",
        None,
    )
    .await;
    assert_eq!(code, 1, "{v}");
    let message = v["message"].as_str().unwrap();
    for url in [&closed, &dying] {
        assert!(message.contains(url.as_str()), "{message}");
        assert!(stderr.contains(url.as_str()), "{stderr}");
    }
}

#[tokio::test]
async fn an_error_answer_is_not_tried_on_the_next_url() {
    let first = hf_app(0.2).await;
    let second = hf_app(0.2).await;
    let route = "/api/v1/hostfactory/requestMachines";
    let urls = format!("http://{},http://{}", first.app.addr, second.app.addr);
    let disabled = json!({"template": {"templateId": "Disabled-Template", "machineCount": 1}});
    let (code, v, _) = shim_at(&urls, "requestMachines", &disabled.to_string(), None).await;
    assert_eq!(code, 1, "{v}");
    assert!(v["message"].as_str().unwrap().contains("disabled"), "{v}");
    assert_eq!(calls_to(&first.app, route).await, 1);
    assert_eq!(calls_to(&second.app, route).await, 0);
    first.app.stop().await;
    second.app.stop().await;
}

#[tokio::test]
async fn the_cli_goes_on_to_the_next_url_when_one_is_down() {
    let hf = hf_app(0.2).await;
    let (closed, dying) = (closed_url(), dying_url().await);
    let urls = format!("{closed} {dying},http://{}", hf.app.addr);
    let (code, out, err) = ohfp_in_env(&["getAvailableTemplates"], &[("OHFP_URL", &urls)]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["templates"].as_array().is_some_and(|t| !t.is_empty()));

    // An error answer is final: the first app's refusal, not another replica's answer.
    let data = r#"{"template_id": "Disabled-Template", "machine_count": 1}"#;
    let urls = format!("http://{},{dying}", hf.app.addr);
    let (code, _, err) =
        ohfp_in_env(&["requestMachines", "--url", &urls, "--data", data], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("disabled"), "{err}");

    let (code, _, err) = ohfp_in_env(
        &[
            "getAvailableTemplates",
            "--url",
            &format!("{closed},{dying}"),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&closed) && err.contains(&dying), "{err}");
    hf.app.stop().await;
}

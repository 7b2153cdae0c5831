//! The HostFactory calls through the real shims (sh + curl) against the running service on
//! simulated providers, with every fixture in tests/fixtures/hostfactory and the
//! properties its .expect.md lists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ohfp::hostfactory::model::{HfRequest, RequestKind, RequestState};
use ohfp::store::HostFactoryRepo;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, eventually, execute, test_config};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostfactory");
pub const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/hostfactory/scripts");

/// Placeholder ids used by the fixtures for what the service really returned.
const REQ_A: &str = "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}.json")).expect("fixture present")
}

/// The fixture templates with their `aws-secondary` provider mapped to a simulated one.
fn templates_file(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(format!("{FIXTURES}/_config/awsprov_templates.json"))
        .unwrap()
        .replace("\"aws-secondary\"", "\"sim-secondary\"");
    let path = dir.join("awsprov_templates.json");
    std::fs::write(&path, text).unwrap();
    path
}

pub struct HfApp {
    pub app: TestApp,
    _dir: tempfile::TempDir,
}

/// Simulated providers that boot in `boot` seconds, a fast reconciler, the fixture templates.
pub async fn hf_app(boot: f64) -> HfApp {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hf_config(dir.path(), boot);
    HfApp {
        app: TestApp::start(cfg).await,
        _dir: dir,
    }
}

pub fn hf_config(dir: &Path, boot: f64) -> ohfp::config::Config {
    let mut cfg = test_config(&dir.join("ohfp.db"));
    cfg.hostfactory.templates_path = Some(templates_file(dir).display().to_string());
    cfg.hostfactory.reconcile_interval_seconds = 0.1;
    cfg.hostfactory.live_check_interval_seconds = 0.2;
    for p in &mut cfg.providers {
        p.config.insert("boot_seconds".into(), json!(boot));
        p.config.insert("shutdown_seconds".into(), json!(0.3));
    }
    cfg
}

/// Runs a shim as HostFactory does: `<script> -f FILE`. Returns (exit code, stdout as JSON).
pub async fn shim(app: &TestApp, call: &str, input: &str) -> (i32, Value) {
    shim_with(app, call, input, None).await
}

/// [`shim`] with `OHFP_TOKEN` set to `token`.
pub async fn shim_with(
    app: &TestApp,
    call: &str,
    input: &str,
    token: Option<&str>,
) -> (i32, Value) {
    let (code, value, _) = shim_at(&format!("http://{}", app.addr), call, input, token).await;
    (code, value)
}

/// Runs a shim with `OHFP_URL` set to `urls`; (exit code, stdout as JSON, stderr).
pub async fn shim_at(
    urls: &str,
    call: &str,
    input: &str,
    token: Option<&str>,
) -> (i32, Value, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), input).unwrap();
    let mut cmd = Command::new(format!("{SCRIPTS}/{call}.sh"));
    cmd.arg("-f").arg(file.path()).env("OHFP_URL", urls);
    match token {
        Some(token) => cmd.env("OHFP_TOKEN", token),
        None => cmd.env_remove("OHFP_TOKEN"),
    };
    let out = cmd.output().await.expect("run shim");
    let stdout = String::from_utf8(out.stdout).unwrap();
    // Exactly one JSON object on stdout, nothing else.
    let value: Value = serde_json::from_str(stdout.trim_end())
        .unwrap_or_else(|e| panic!("{call}: stdout is not one JSON object ({e}): {stdout:?}"));
    assert!(value.is_object(), "{call}: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), value, stderr)
}

pub async fn status_of(app: &TestApp, id: &str) -> Value {
    let (code, v) = shim(
        app,
        "getRequestStatus",
        &json!({"requests": [{"requestId": id}]}).to_string(),
    )
    .await;
    assert_eq!(code, 0);
    v["requests"][0].clone()
}

/// Polls getRequestStatus until `status`, with a generous deadline.
pub async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    for _ in 0..200 {
        let r = status_of(app, id).await;
        if r["status"] == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "request {id} never reached {status}: {}",
        status_of(app, id).await
    );
}

/// requestMachines through the shim, which must accept it; the request id.
pub async fn request_machines(app: &TestApp, template: &str, count: u32) -> String {
    let input = json!({"template": {"templateId": template, "machineCount": count}});
    let (code, v) = shim(app, "requestMachines", &input.to_string()).await;
    assert_eq!(code, 0, "{v}");
    v["requestId"].as_str().unwrap().to_string()
}

fn assert_no_snake_case(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                assert!(!k.contains('_'), "snake_case key {k}");
                if k != "attributes" && k != "vmTypes" {
                    assert_no_snake_case(inner);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_snake_case),
        _ => {}
    }
}

async fn create_count(app: &TestApp) -> u64 {
    let (_, m) = app.get("/api/v1/providers/metrics").await;
    m["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["operations"]["CREATE_INSTANCES"]["count"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn gat_01_templates_as_written() {
    let hf = hf_app(0.2).await;
    let (code, v) = shim(
        &hf.app,
        "getAvailableTemplates",
        &fixture("gat-01-empty-object"),
    )
    .await;
    assert_eq!(code, 0);
    assert!(v["message"].is_string());
    assert_no_snake_case(&v);
    let templates = v["templates"].as_array().unwrap();
    let find = |id: &str| templates.iter().find(|t| t["templateId"] == id).cloned();
    for id in [
        "OnDemand-C5Large",
        "Spot-M5-Weighted",
        "Fleet-Instant-R6i",
        "ASG-T3-Medium",
        "Unlimited-OnDemand",
        "Secondary-C6i-Large",
    ] {
        assert!(find(id).is_some(), "{id} listed");
    }
    if let Some(d) = find("Disabled-Template") {
        assert_eq!(d["maxNumber"], 0);
    }
    for t in templates {
        assert!(
            t["templateId"].is_string() && t["maxNumber"].is_i64(),
            "{t}"
        );
        for key in ["type", "ncpus", "nram"] {
            let a = t["attributes"][key]
                .as_array()
                .unwrap_or_else(|| panic!("{t}"));
            assert!(a.len() == 2 && a.iter().all(Value::is_string), "{t}");
        }
        if let Some(tags) = t.get("instanceTags") {
            assert!(tags.as_str().unwrap().contains('='), "{t}");
        }
    }
    assert_eq!(find("Unlimited-OnDemand").unwrap()["maxNumber"], -1);
    let c5 = find("OnDemand-C5Large").unwrap();
    assert_eq!(c5["attributes"]["ncpus"], json!(["Numeric", "1"]));
    assert_eq!(c5["attributes"]["nram"], json!(["Numeric", "4096"]));
    assert_eq!(c5["attributes"]["ncores"], json!(["Numeric", "1"]));
    assert_eq!(c5["instanceTags"], "owner=gridops;costcenter=cc-4411");
    let r6i = find("Fleet-Instant-R6i").unwrap();
    assert_eq!(
        r6i["attributes"],
        json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "16384"]})
    );
    hf.app.stop().await;
}

#[tokio::test]
async fn the_lifecycle_through_the_shims_with_every_fixture() {
    let hf = hf_app(1.5).await;
    let app = &hf.app;

    // rm-01: accepted at once, only requestId and message.
    let (code, v) = shim(app, "requestMachines", &fixture("rm-01-ondemand-basic")).await;
    assert_eq!(code, 0, "{v}");
    let req_a = v["requestId"].as_str().unwrap().to_string();
    assert!(!req_a.is_empty());
    assert!(v["message"].is_string());
    assert_eq!(
        v.as_object().unwrap().len(),
        2,
        "only requestId and message: {v}"
    );

    // grs-01: still booting.
    let r = status_of(app, &req_a).await;
    assert_eq!(r["requestId"], req_a.as_str());
    assert_eq!(r["status"], "running", "{r}");
    assert!(r["message"].is_string());
    for m in r["machines"].as_array().unwrap() {
        assert_eq!(m["result"], "executing", "{r}");
    }

    // grs-02: all three running.
    let done = wait_status(app, &req_a, "complete").await;
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "{done}");
    let now = chrono::Utc::now().timestamp();
    let mut ids: Vec<&str> = Vec::new();
    for m in machines {
        assert_no_snake_case(m);
        let id = m["machineId"].as_str().unwrap();
        assert!(id.starts_with("i-"));
        ids.push(id);
        assert!(
            m["name"].as_str().unwrap().ends_with(".compute.internal"),
            "private DNS as name: {m}"
        );
        assert_eq!(m["result"], "succeed");
        assert_eq!(m["status"], "running");
        let ip = m["privateIpAddress"].as_str().unwrap();
        assert_eq!(
            ip.split('.').filter(|p| p.parse::<u8>().is_ok()).count(),
            4,
            "{ip}"
        );
        let t = m["launchtime"].as_i64().expect("launchtime is an integer");
        assert!(t > 1_600_000_000 && t <= now, "{t}");
        assert!(m["message"].is_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    let again = status_of(app, &req_a).await;
    assert_eq!(
        again["machines"], done["machines"],
        "the same machines with the same names"
    );

    // grs-06: the single-object form gets the same answer, still as an array.
    let (code, v) = shim(
        app,
        "getRequestStatus",
        &fixture("grs-06-requests-as-object").replace(REQ_A, &req_a),
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(v["requests"].as_array().unwrap().len(), 1);
    assert_eq!(v["requests"][0], again);

    // grs-04: an unknown id is final, with a message.
    let (code, v) = shim(app, "getRequestStatus", &fixture("grs-04-unknown-id")).await;
    assert_eq!(code, 0);
    let r = &v["requests"][0];
    assert_eq!(r["requestId"], "req-9e2d7f30-14ab-4c8e-b6f5-0d3a1e7c8b42");
    assert_eq!(r["status"], "complete_with_error");
    assert_eq!(r["machines"], json!([]));
    assert!(r["message"].as_str().unwrap().contains("Unknown request"));

    // Acquire and return ids mixed in one call, each answered on its own (below).
    // rrm-01: two of the three, by name and machineId as HostFactory sends them.
    let (keep, give): (Vec<&Value>, Vec<&Value>) = (
        machines[2..].iter().collect(),
        machines[..2].iter().collect(),
    );
    let input = fixture("rrm-01-two-machines")
        .replace(
            "ip-10-20-3-41.eu-central-1.compute.internal",
            give[0]["name"].as_str().unwrap(),
        )
        .replace(
            "i-0b7e3c91d5a2f4068",
            give[0]["machineId"].as_str().unwrap(),
        )
        .replace(
            "ip-10-20-5-118.eu-central-1.compute.internal",
            give[1]["name"].as_str().unwrap(),
        )
        .replace(
            "i-04d8a6f2c1e9b3575",
            give[1]["machineId"].as_str().unwrap(),
        );
    let (code, v) = shim(app, "requestReturnMachines", &input).await;
    assert_eq!(code, 0, "{v}");
    let ret_a = v["requestId"].as_str().unwrap().to_string();
    assert!(!ret_a.is_empty() && ret_a != req_a);
    // A repeat is idempotent: the same return, nothing terminated twice.
    let (_, again) = shim(app, "requestReturnMachines", &input).await;
    assert_eq!(again["requestId"], ret_a.as_str(), "{again}");

    let (_, both) = shim(
        app,
        "getRequestStatus",
        &json!({"requests": [{"requestId": req_a}, {"requestId": ret_a}]}).to_string(),
    )
    .await;
    assert_eq!(both["requests"][0]["requestId"], req_a.as_str());
    assert_eq!(both["requests"][1]["requestId"], ret_a.as_str());
    let ret = wait_status(app, &ret_a, "complete").await;
    let returned = ret["machines"].as_array().unwrap();
    assert_eq!(returned.len(), 2);
    for m in returned {
        assert_eq!(
            (m["result"].as_str(), m["status"].as_str()),
            (Some("succeed"), Some("terminated")),
            "{ret}"
        );
    }
    // Once its machines are gone the return leaves the reconciler's rounds: it is done.
    let store = crate::helpers::open_store(&app.db).await;
    let (store_ref, ret_ref) = (&store, &ret_a);
    eventually("the return is closed", || async move {
        let stored = store_ref
            .hf_requests(std::slice::from_ref(ret_ref))
            .await
            .unwrap();
        (stored[0].state == ohfp::hostfactory::model::RequestState::Done).then_some(())
    })
    .await;
    store.close().await;
    // The third machine keeps running, and the acquire request still reports what it delivered.
    let a = status_of(app, &req_a).await;
    assert_eq!(a["status"], "complete", "{a}");
    let kept = a["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["machineId"] == keep[0]["machineId"])
        .unwrap()
        .clone();
    assert_eq!(kept["status"], "running");

    // rrm-03: an empty list still gets a request id, complete with no machines.
    let (code, v) = shim(app, "requestReturnMachines", &fixture("rrm-03-empty-list")).await;
    assert_eq!(code, 0);
    let empty = v["requestId"].as_str().expect("a request id").to_string();
    let r = wait_status(app, &empty, "complete").await;
    assert_eq!(r["machines"], json!([]));

    // grr-01: nothing listed, nothing to report.
    let (code, v) = shim(app, "getReturnRequests", &fixture("grr-01-empty-machines")).await;
    assert_eq!(code, 0);
    assert_eq!(v["requests"], json!([]));
    assert_eq!(v["status"], "complete");

    // grr-03: one healthy host and one the cloud took back.
    let req_b = request_machines(app, "OnDemand-C5Large", 1).await;
    let b = wait_status(app, &req_b, "complete").await;
    let victim = b["machines"][0].clone();
    let reclaim = execute(
        app,
        json!({"operation_type": "TERMINATE_INSTANCES", "strategy_override": "sim-primary",
               "parameters": {"instance_ids": [victim["machineId"]], "simulate_reclaim": true}}),
    )
    .await;
    assert_eq!(reclaim["success"], true, "{reclaim}");
    let input = fixture("grr-03-spot-reclaimed")
        .replace(
            "ip-10-20-7-9.eu-central-1.compute.internal",
            kept["name"].as_str().unwrap(),
        )
        .replace("i-0e1c5b7a9d3f26084", kept["machineId"].as_str().unwrap())
        .replace(
            "ip-10-20-9-77.eu-central-1.compute.internal",
            victim["name"].as_str().unwrap(),
        )
        .replace("i-07a3f9e2b8c41d650", victim["machineId"].as_str().unwrap());
    let input = &input;
    let reported = eventually("the reclaim is reported", || async move {
        let (code, v) = shim(app, "getReturnRequests", input).await;
        assert_eq!(code, 0);
        (!v["requests"].as_array().unwrap().is_empty()).then_some(v)
    })
    .await;
    let list = reported["requests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{reported}");
    assert_eq!(list[0]["machine"], victim["name"]);
    let grace = list[0]["gracePeriod"].as_i64().expect("an integer");
    assert!((0..=120).contains(&grace));

    // Hosts the service has no record of: the strategies are asked. One no cloud knows is
    // listed at once (it must not stay in HostFactory); a healthy one the cloud has, found by
    // its id, is not; a bare name cannot be asked about and is not invented.
    let stray = execute(
        app,
        json!({"operation_type": "CREATE_INSTANCES", "strategy_override": "sim-secondary",
               "parameters": {"count": 1}}),
    )
    .await;
    let stray_id = stray["data"]["instance_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let hosts = json!({"machines": [
        {"name": "ghost-1.example", "machineId": "i-0000000000ghost01"},
        {"name": "stray-1.example", "machineId": stray_id},
        {"name": "nameless-1.example"},
    ]})
    .to_string();
    let (code, v) = shim(app, "getReturnRequests", &hosts).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["requests"],
        json!([{"machine": "ghost-1.example", "gracePeriod": 0}]),
        "{v}"
    );
    hf.app.stop().await;
}

#[tokio::test]
async fn request_guards_reject_without_a_request_id_or_a_cloud_call() {
    let hf = hf_app(0.2).await;
    let app = &hf.app;
    let before = create_count(app).await;
    for (name, needle) in [
        ("rm-03-unknown-template", "Spot-Template-VM-Retired"),
        ("rm-04-exceeds-maxnumber", "6"),
        ("rm-05-zero-count", "machineCount"),
    ] {
        let (code, v) = shim(app, "requestMachines", &fixture(name)).await;
        assert_ne!(code, 0, "{name}: the shim exits non-zero");
        assert!(v.get("requestId").is_none(), "{name}: {v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.contains(needle), "{name}: {message}");
    }
    let disabled =
        json!({"template": {"templateId": "Disabled-Template", "machineCount": 1}}).to_string();
    let (code, v) = shim(app, "requestMachines", &disabled).await;
    assert_ne!(code, 0);
    assert!(v["message"].as_str().unwrap().contains("disabled"));
    // A template naming a provider that is not registered is refused at once.
    let tmp = tempfile::tempdir().unwrap();
    let orphan = hf_config(tmp.path(), 0.2);
    let text = std::fs::read_to_string(orphan.hostfactory.templates_path.as_ref().unwrap())
        .unwrap()
        .replace("\"sim-secondary\"", "\"aws-nowhere\"");
    std::fs::write(orphan.hostfactory.templates_path.as_ref().unwrap(), text).unwrap();
    let other = TestApp::start(orphan).await;
    let (code, v) = shim(
        &other,
        "requestMachines",
        &json!({"template": {"templateId": "Secondary-C6i-Large", "machineCount": 1}}).to_string(),
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("'aws-nowhere', which is not registered"),
        "{v}"
    );
    other.stop().await;
    for bad in [
        "{",
        "[]",
        r#"{"template": {"templateId": "OnDemand-C5Large", "machineCount": "three"}}"#,
    ] {
        let (code, v) = shim(app, "requestMachines", bad).await;
        assert_ne!(code, 0);
        assert!(v["message"].is_string(), "{v}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        create_count(app).await,
        before,
        "no cloud call for a rejected request"
    );

    // maxNumber counts machines still held by the template: 6 allowed, 4 held, 3 more refused.
    let (code, v) = shim(
        app,
        "requestMachines",
        &json!({"template": {"templateId": "ASG-T3-Medium", "machineCount": 4}}).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let (code, v) = shim(
        app,
        "requestMachines",
        &json!({"template": {"templateId": "ASG-T3-Medium", "machineCount": 3}}).to_string(),
    )
    .await;
    assert_ne!(code, 0);
    assert!(v["message"].as_str().unwrap().contains("at most 6"), "{v}");
    let (code, _) = shim(
        app,
        "requestMachines",
        &json!({"template": {"templateId": "ASG-T3-Medium", "machineCount": 2}}).to_string(),
    )
    .await;
    assert_eq!(code, 0);
    hf.app.stop().await;
}

#[tokio::test]
async fn weighted_templates_count_units() {
    let hf = hf_app(0.2).await;
    let app = &hf.app;
    // Spot-M5-Weighted: vmTypes m5.xlarge 2, m5.2xlarge 4; maxNumber 40 units.
    let (code, v) = shim(
        app,
        "requestMachines",
        &json!({"template": {"templateId": "Spot-M5-Weighted", "machineCount": 5}}).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let done = wait_status(app, &id, "complete").await;
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "5 units as weight-2 machines: {done}");
    assert!(machines.iter().all(|m| m["instanceType"] == "m5.xlarge"));
    let (_, t) = shim(app, "getAvailableTemplates", "{}").await;
    let weighted = t["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["templateId"] == "Spot-M5-Weighted")
        .unwrap()
        .clone();
    assert_eq!(
        weighted["availableNumber"], 34,
        "40 units less the 6 placed: {weighted}"
    );
    let (code, v) = shim(
        app,
        "requestMachines",
        &json!({"template": {"templateId": "Spot-M5-Weighted", "machineCount": 35}}).to_string(),
    )
    .await;
    assert_ne!(code, 0);
    assert!(v["message"].as_str().unwrap().contains("at most 40"), "{v}");
    hf.app.stop().await;
}

#[tokio::test]
async fn the_template_names_its_provider() {
    let hf = hf_app(0.2).await;
    let (_, v) = shim(
        &hf.app,
        "requestMachines",
        &json!({"template": {"templateId": "Secondary-C6i-Large", "machineCount": 2}}).to_string(),
    )
    .await;
    let id = v["requestId"].as_str().unwrap().to_string();
    wait_status(&hf.app, &id, "complete").await;
    let (_, m) = hf.app.get("/api/v1/providers/sim-secondary/metrics").await;
    assert_eq!(m["operations"]["CREATE_INSTANCES"]["count"], 1, "{m}");
    hf.app.stop().await;
}

#[tokio::test]
async fn a_restart_mid_request_loses_nothing_and_makes_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hf_config(dir.path(), 0.5);
    // Slow creates, so that the stop lands while the first attempt is under way.
    cfg.providers[0]
        .config
        .insert("latency_ms".into(), json!(2000));
    let app = TestApp::start(cfg.clone()).await;
    let (code, v) = shim(
        &app,
        "requestMachines",
        &json!({"template": {"templateId": "OnDemand-C5Large", "machineCount": 3}}).to_string(),
    )
    .await;
    assert_eq!(code, 0);
    let id = v["requestId"].as_str().unwrap().to_string();
    let slow = cfg.providers[0].name.clone();
    let (app_ref, slow) = (&app, &slow);
    eventually("the first create is under way", || async move {
        let (_, v) = app_ref.get("/api/v1/providers").await;
        let providers = v["providers"].as_array().unwrap();
        let p = providers.iter().find(|p| p["strategy_name"] == *slow);
        p.is_some_and(|p| p["in_flight"].as_u64() > Some(0))
            .then_some(())
    })
    .await;
    app.stop().await;

    cfg.providers[0]
        .config
        .insert("latency_ms".into(), json!(0));
    let app = TestApp::start(cfg.clone()).await;
    let done = wait_status(&app, &id, "complete").await;
    assert_eq!(done["machines"].as_array().unwrap().len(), 3, "{done}");
    // Exactly three live instances carry the request id in the (simulated) cloud.
    let mut live = 0;
    for strategy in ["sim-primary", "sim-secondary"] {
        let v = execute(
            &app,
            json!({"operation_type": "GET_INSTANCE_STATUS", "strategy_override": strategy,
            "parameters": {"request_ids": [id]}}),
        )
        .await;
        live += v["data"]["machines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] != "terminated")
            .count();
    }
    assert_eq!(live, 3);
    app.stop().await;

    // A request recorded as provisioning, whose machines exist in the cloud already (made
    // before a crash), is adopted rather than made again.
    let app = TestApp::start(cfg.clone()).await;
    let crashed = "req-crashed-mid-create";
    let v = execute(
        &app,
        json!({"operation_type": "CREATE_INSTANCES", "strategy_override": "sim-primary",
        "parameters": {"count": 2, "request_id": crashed, "template_id": "OnDemand-C5Large"}}),
    )
    .await;
    assert_eq!(v["success"], true);
    let store = cfg.database.open().await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    store
        .insert_hf_request(&HfRequest {
            request_id: crashed.into(),
            kind: RequestKind::Acquire,
            template_id: Some("OnDemand-C5Large".into()),
            template: Some(json!({"templateId": "OnDemand-C5Large", "vmType": "c5.large"})),
            requested_count: 3,
            provider_name: None,
            strategy: None,
            state: RequestState::Provisioning,
            message: String::new(),
            resource_id: None,
            provider_api: None,
            attempts: 1,
            created_at: now,
            updated_at: now,
            claimed_at: Some(now),
        })
        .await
        .unwrap();
    store.close().await;
    app.stop().await;
    let app = TestApp::start(cfg).await;
    let done = wait_status(&app, crashed, "complete").await;
    assert_eq!(done["machines"].as_array().unwrap().len(), 3, "{done}");
    let (_, m) = app.get("/api/v1/providers/sim-primary/metrics").await;
    assert_eq!(
        m["operations"]["CREATE_INSTANCES"]["count"], 3,
        "the manual create, the first request's and one for the missing machine: {m}"
    );
    app.stop().await;
}

#[tokio::test]
async fn operator_routes_and_cli_commands() {
    let hf = hf_app(0.2).await;
    let app = &hf.app;
    let (status, v) = app.get("/api/v1/templates").await;
    assert_eq!(status, 200);
    assert_eq!(v["count"], 7);
    assert_eq!(v["templates"][0]["template_id"], "OnDemand-C5Large");
    let (status, v) = app
        .post(
            "/api/v1/requests",
            json!({"template_id": "OnDemand-C5Large", "machine_count": 2}),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let id = v["request_id"].as_str().unwrap().to_string();
    let (status, v) = app
        .post(
            "/api/v1/requests",
            json!({"template_id": "nope", "machine_count": 2}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("Template 'nope' is not defined. Known templates: "),
        "{v}"
    );
    let (status, v) = app
        .post(
            "/api/v1/requests",
            json!({"template_id": "OnDemand-C5Large", "machine_count": 0}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"][0]["path"], "machine_count");
    let (status, _) = app.get("/api/v1/requests/req-unknown").await;
    assert_eq!(status, 404);
    wait_status(app, &id, "complete").await;

    let url = format!("http://{}", app.addr);
    let bin = env!("CARGO_BIN_EXE_ohfp");
    let out = Command::new(bin)
        .args(["getRequestStatus", "--url", &url, "--request-id", &id])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "complete");
    let machine = v["machines"][0]["machine_id"].as_str().unwrap().to_string();
    let out = Command::new(bin)
        .args([
            "requestReturnMachines",
            "--url",
            &url,
            "--data",
            &json!({"machine_ids": [machine]}).to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ret = v["request_id"].as_str().unwrap().to_string();
    assert!(ret.starts_with("ret-"));
    wait_status(app, &ret, "complete").await;
    for cmd in ["getAvailableTemplates", "getReturnRequests"] {
        let out = Command::new(bin)
            .args([cmd, "--url", &url])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{cmd}");
        let _: Value = serde_json::from_slice(&out.stdout).unwrap();
    }
    let out = Command::new(bin)
        .args([
            "requestMachines",
            "--url",
            &url,
            "--data",
            r#"{"template_id": "Disabled-Template", "machine_count": 1}"#,
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    hf.app.stop().await;
}

#[tokio::test]
async fn the_shim_fails_cleanly_when_the_service_is_down() {
    let out = Command::new(format!("{SCRIPTS}/getRequestStatus.sh"))
        .arg("-f")
        .arg(format!("{FIXTURES}/grs-04-unknown-id.json"))
        .env("OHFP_URL", "http://127.0.0.1:9")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("still one JSON object");
    assert!(v["message"].as_str().unwrap().contains("unreachable"));
    assert!(!out.stderr.is_empty(), "diagnostics on stderr");
}

#[tokio::test]
async fn one_hung_provider_stalls_no_other_strategy() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hf_config(dir.path(), 0.2);
    // Calls are allowed to take long, so the hang below lasts the whole test.
    cfg.strategy.operation_timeout = 3600.0;
    let app = TestApp::start(cfg).await;
    let (_, v) = shim(
        &app,
        "requestMachines",
        &json!({"template": {"templateId": "Secondary-C6i-Large", "machineCount": 1}}).to_string(),
    )
    .await;
    let on_secondary = v["requestId"].as_str().unwrap().to_string();
    wait_status(&app, &on_secondary, "complete").await;
    // From now on every call to sim-secondary takes ten minutes; the reconciler keeps asking
    // about its machine.
    let (status, v) = app
        .put(
            "/api/v1/providers/sim-secondary",
            json!({"provider_type": "simulated",
                   "strategy_config": {"latency_ms": 600000, "boot_seconds": 0.2}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = shim(
        &app,
        "requestMachines",
        &json!({"template": {"templateId": "OnDemand-C5Large", "machineCount": 2}}).to_string(),
    )
    .await;
    let on_primary = v["requestId"].as_str().unwrap().to_string();
    // Polled one strategy after the other, this request would wait for the hung call.
    let done = wait_status(&app, &on_primary, "complete").await;
    assert_eq!(done["machines"].as_array().unwrap().len(), 2, "{done}");
    app.stop().await;
}

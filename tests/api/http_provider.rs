//! `http` strategies against examples/provider.py: operations, HostFactory requests from a
//! configuration file, retries, failover, timeouts and the breaker, the secrecy of the API
//! key, and the conformance kit.

use std::path::Path;

use ohfp::cli::{ProviderCheckArgs, check_provider};
use ohfp::config::Config;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, execute};
use crate::hostfactory::{shim, wait_status};
use crate::support::example_provider::ExampleProvider;

const KEY: &str = "pool-key-7f3a9c";

/// Registers an http strategy through the API; answers the registration.
async fn register_http(app: &TestApp, name: &str, config: Value) -> Value {
    let body = json!({"strategy_name": name, "provider_type": "http", "strategy_config": config});
    let (status, v) = app.post("/api/v1/providers", body).await;
    assert_eq!(status, 201, "{v}");
    v
}

async fn on(app: &TestApp, strategy: &str, op: &str, parameters: Value) -> Value {
    execute(
        app,
        json!({"operation_type": op, "parameters": parameters, "strategy_override": strategy}),
    )
    .await
}

#[tokio::test]
async fn operations_run_through_an_http_strategy_and_the_key_never_shows() {
    let example = ExampleProvider::start(&["--api-key", KEY, "--boot-seconds", "0.3"]);
    let app = TestApp::spawn().await;
    let registered = register_http(
        &app,
        "pool",
        json!({"endpoint_url": example.url, "api_key": KEY, "region": "dc-1", "timeout": 5}),
    )
    .await;

    let made = on(&app, "pool", "CREATE_INSTANCES", json!({"count": 2})).await;
    assert_eq!(made["success"], true, "{made}");
    let ids = made["data"]["instance_ids"].clone();
    assert_eq!(ids.as_array().map(Vec::len), Some(2), "{made}");
    assert_eq!(made["data"]["instances"][0]["region"], "dc-1", "{made}");
    let (app_ref, ids_ref) = (&app, &ids);
    eventually("the instances boot", || async move {
        let v = on(
            app_ref,
            "pool",
            "GET_INSTANCE_STATUS",
            json!({"instance_ids": ids_ref}),
        )
        .await;
        let machines = v["data"]["machines"].as_array()?.clone();
        (machines.len() == 2 && machines.iter().all(|m| m["state"] == "running")).then_some(())
    })
    .await;
    let gone = on(
        &app,
        "pool",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [ids[0], "ex-unknown"]}),
    )
    .await;
    assert_eq!(gone["data"]["terminating"], json!([ids[0]]), "{gone}");
    assert_eq!(gone["data"]["not_found"], json!(["ex-unknown"]), "{gone}");

    // A health check reads the service's capabilities too.
    let health = on(&app, "pool", "HEALTH_CHECK", json!({})).await;
    assert_eq!(health["success"], true, "{health}");
    let (_, caps) = app.get("/api/v1/providers/pool/capabilities").await;
    assert_eq!(caps["provider_type"], "http", "{caps}");
    assert_eq!(caps["features"]["example"], true, "{caps}");
    assert_eq!(caps["features"]["region"], "dc-1", "{caps}");
    let templates = on(&app, "pool", "GET_AVAILABLE_TEMPLATES", json!({})).await;
    assert_eq!(
        templates["data"]["templates"][0]["template_id"], "example-small",
        "{templates}"
    );

    let mut answers = vec![registered];
    for path in [
        "/api/v1/providers",
        "/api/v1/providers/pool",
        "/api/v1/providers/pool/capabilities",
        "/api/v1/providers/pool/health",
        "/api/v1/providers/health",
        "/api/v1/providers/pool/metrics?include_error_details=true",
        "/api/v1/providers/configuration",
    ] {
        let (status, v) = app.get(path).await;
        assert_eq!(status, 200, "{path}: {v}");
        answers.push(v);
    }
    for answer in answers {
        assert!(!answer.to_string().contains(KEY), "the key shows: {answer}");
    }
    let (_, listed) = app.get("/api/v1/providers/pool").await;
    assert_eq!(listed["strategy_config"]["api_key"], "***", "{listed}");
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error_and_bad_settings_are_refused_by_name() {
    let example = ExampleProvider::start(&["--api-key", KEY]);
    let app = TestApp::spawn().await;
    register_http(
        &app,
        "wrong-key",
        json!({"endpoint_url": example.url, "api_key": "not-it"}),
    )
    .await;
    let v = on(&app, "wrong-key", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["metadata"]["attempted"][0]["error_kind"], "auth", "{v}");

    for (config, field) in [
        (
            json!({"endpoint_url": "localhost:1"}),
            "strategy_config.endpoint_url",
        ),
        (
            json!({"endpoint_url": example.url, "timeout": 0}),
            "strategy_config.timeout",
        ),
        (
            json!({"endpoint_url": example.url, "timeout": 3601}),
            "strategy_config.timeout",
        ),
        (
            json!({"endpoint_url": example.url, "max_retries": 11}),
            "strategy_config.max_retries",
        ),
        (
            json!({"endpoint_url": example.url, "api_key": 12345}),
            "strategy_config.api_key",
        ),
    ] {
        let body =
            json!({"strategy_name": "bad", "provider_type": "http", "strategy_config": config});
        let (status, v) = app.post("/api/v1/providers", body).await;
        assert_eq!(status, 422, "{config}: {v}");
        assert_eq!(v["errors"][0]["path"], field, "{v}");
        assert!(!v.to_string().contains("12345"), "{v}");
    }
    app.stop().await;
}

#[tokio::test]
async fn retryable_errors_are_retried_up_to_max_retries() {
    // The first two calls are throttled (with Retry-After); two retries get through.
    let patient = ExampleProvider::start(&["--fail-first", "2", "--boot-seconds", "0"]);
    let impatient = ExampleProvider::start(&["--fail-first", "1"]);
    let app = TestApp::spawn().await;
    register_http(
        &app,
        "patient",
        json!({"endpoint_url": patient.url, "max_retries": 2}),
    )
    .await;
    register_http(
        &app,
        "impatient",
        json!({"endpoint_url": impatient.url, "max_retries": 0}),
    )
    .await;
    let v = on(&app, "patient", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["data"]["count"], 1, "{v}");
    let v = on(&app, "impatient", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["success"], false, "{v}");
    let tried = &v["metadata"]["attempted"][0];
    assert_eq!(tried["error_kind"], "throttling", "{v}");
    assert_eq!(tried["error_code"], "SLOW_DOWN", "{v}");
    app.stop().await;
}

/// A configuration file with `providers[]`: `pool` (http) first, then a simulator, failover
/// between them, and templates that name `pool`.
fn file_config(dir: &Path, url: &str, extra: Value) -> Config {
    let mut pool = json!({"endpoint_url": url, "api_key": KEY, "timeout": 5, "max_retries": 1});
    if let (Some(p), Some(e)) = (pool.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let file = json!({
        "strategy": {"fallback_strategies": ["pool", "sim-primary"],
                     "circuit_breaker": {"enabled": true, "failure_threshold": 2, "recovery_timeout": 3600,
                                         "half_open_max_calls": 1}},
        "providers": [
            {"name": "pool", "type": "http", "config": pool},
            {"name": "sim-primary", "type": "simulated", "priority": 1,
             "config": {"latency_ms": 0, "boot_seconds": 0.2, "shutdown_seconds": 0.2}}
        ]
    });
    let path = dir.join("ohfp.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let mut cfg = ohfp::config::load_with_env(&[&path], &[], &|_| None).expect("the file loads");
    cfg.server.bind = "127.0.0.1:0".into();
    crate::helpers::use_test_database(&mut cfg, &dir.join("ohfp.db"));
    cfg.logging.dir = None;
    cfg.strategy.health_check_initial_delay = 3600.0;
    let templates = json!({"templates": [{
        "templateId": "Pool-Small", "maxNumber": 10, "vmType": "ex.small", "priceType": "ondemand",
        "providerName": "pool",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "1024"]}
    }]});
    let templates_path = dir.join("awsprov_templates.json");
    std::fs::write(&templates_path, templates.to_string()).unwrap();
    cfg.hostfactory.templates_path = Some(templates_path.display().to_string());
    cfg.hostfactory.reconcile_interval_seconds = 0.1;
    cfg.hostfactory.live_check_interval_seconds = 0.2;
    cfg
}

#[tokio::test]
async fn hostfactory_requests_reclaims_and_returns_through_an_http_strategy_from_the_file() {
    let example = ExampleProvider::start(&[
        "--api-key",
        KEY,
        "--boot-seconds",
        "0.3",
        "--shutdown-seconds",
        "0.3",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(file_config(dir.path(), &example.url, json!({}))).await;
    let input = json!({"template": {"templateId": "Pool-Small", "machineCount": 3}});
    let (code, v) = shim(&app, "requestMachines", &input.to_string()).await;
    assert_eq!(code, 0, "{v}");
    let id = v["requestId"].as_str().expect("a request id").to_string();
    let done = wait_status(&app, &id, "complete").await;
    let machines = done["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), 3, "{done}");
    for m in &machines {
        assert_eq!(
            (m["result"].as_str(), m["status"].as_str()),
            (Some("succeed"), Some("running")),
            "{m}"
        );
        assert!(
            m["machineId"].as_str().unwrap().starts_with("ex-"),
            "made by the example: {m}"
        );
    }
    let hosts: Vec<Value> = machines
        .iter()
        .map(|m| json!({"name": m["name"], "machineId": m["machineId"]}))
        .collect();

    // The pool takes one back behind HostFactory's back: reported as a return request.
    let victim = &hosts[0];
    let reclaim = on(
        &app,
        "pool",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [victim["machineId"]], "simulate_reclaim": true}),
    )
    .await;
    assert_eq!(reclaim["success"], true, "{reclaim}");
    let asked = json!({"machines": hosts}).to_string();
    let (app_ref, asked_ref) = (&app, &asked);
    let reported = eventually("the reclaim is reported", || async move {
        let (code, v) = shim(app_ref, "getReturnRequests", asked_ref).await;
        assert_eq!(code, 0, "{v}");
        (!v["requests"].as_array()?.is_empty()).then_some(v)
    })
    .await;
    let listed = reported["requests"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{reported}");
    assert_eq!(listed[0]["machine"], victim["name"], "{reported}");

    let (code, v) = shim(
        &app,
        "requestReturnMachines",
        &json!({"machines": &hosts[1..]}).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let ret = v["requestId"].as_str().unwrap().to_string();
    let returned = wait_status(&app, &ret, "complete").await;
    for m in returned["machines"].as_array().unwrap() {
        assert_eq!(m["status"], "terminated", "{returned}");
    }
    app.stop().await;
}

/// A CREATE_INSTANCES left to selection and failover (`pool` first, then `sim-primary`);
/// answers the strategy that served it and pool's error code, when pool failed.
async fn create_anywhere(app: &TestApp) -> (String, Option<String>) {
    let v = execute(
        app,
        json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1}}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let used = v["metadata"]["strategy_used"].as_str().unwrap().to_string();
    let first = &v["metadata"]["attempted"][0];
    assert_eq!(first["strategy"], "pool", "{v}");
    (used, first["error_code"].as_str().map(str::to_string))
}

#[tokio::test]
async fn a_dead_service_fails_over_to_the_simulator_and_opens_the_breaker() {
    let mut example = ExampleProvider::start(&["--api-key", KEY]);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(file_config(dir.path(), &example.url, json!({}))).await;
    assert_eq!(create_anywhere(&app).await, ("pool".into(), None));

    example.kill();
    for _ in 0..2 {
        assert_eq!(
            create_anywhere(&app).await,
            ("sim-primary".into(), Some("CONNECTION_FAILED".into()))
        );
    }
    let (_, pool) = app.get("/api/v1/providers/pool").await;
    assert_eq!(pool["circuit_state"], "open", "{pool}");
    app.stop().await;
}

#[tokio::test]
async fn a_throttling_service_fails_over_to_the_simulator_once_its_retries_are_spent() {
    let example = ExampleProvider::start(&["--api-key", KEY, "--fail-first", "1000"]);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(file_config(
        dir.path(),
        &example.url,
        json!({"max_retries": 1}),
    ))
    .await;
    // SLOW_DOWN is the example's throttling code.
    assert_eq!(
        create_anywhere(&app).await,
        ("sim-primary".into(), Some("SLOW_DOWN".into()))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_slow_service_hits_the_timeout_and_the_breaker() {
    let example = ExampleProvider::start(&["--api-key", KEY, "--slow", "3"]);
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(file_config(
        dir.path(),
        &example.url,
        json!({"timeout": 0.3, "max_retries": 0}),
    ))
    .await;
    for _ in 0..2 {
        let v = on(&app, "pool", "CREATE_INSTANCES", json!({"count": 1})).await;
        assert_eq!(v["success"], false, "{v}");
        let tried = &v["metadata"]["attempted"][0];
        assert_eq!(tried["error_kind"], "timeout", "{v}");
        assert_eq!(tried["error_code"], "TIMEOUT", "{v}");
    }
    let (_, pool) = app.get("/api/v1/providers/pool").await;
    assert_eq!(pool["circuit_state"], "open", "{pool}");
    app.stop().await;
}

async fn check(url: &str, api_key: Option<&str>) -> (usize, String) {
    let args = ProviderCheckArgs {
        url: url.to_string(),
        api_key: api_key.map(str::to_string),
        instance_type: None,
        timeout: 10.0,
    };
    let report = check_provider(&args).await.expect("the kit runs");
    (report.failures, report.lines.join("\n"))
}

#[tokio::test]
async fn the_conformance_kit_passes_the_example_and_names_what_is_wrong() {
    let good = ExampleProvider::start(&["--api-key", KEY]);
    let (failures, text) = check(&good.url, Some(KEY)).await;
    assert_eq!(failures, 0, "{text}");
    for call in [
        "createInstances",
        "getInstanceStatus",
        "terminateInstances",
        "validateLaunchSpec",
        "getHealth",
        "getCapabilities",
    ] {
        assert!(
            text.contains(&format!("ok    {call}: ")),
            "{call} not exercised:\n{text}"
        );
    }
    assert!(
        text.contains("Idempotency-Key twice creates once"),
        "{text}"
    );

    let broken = ExampleProvider::start(&["--broken"]);
    let (failures, text) = check(&broken.url, None).await;
    assert!(failures > 0, "{text}");
    assert!(
        text.contains("FAIL  getHealth: answers healthy: answered 500"),
        "{text}"
    );

    let forgetful = ExampleProvider::start(&["--forget-keys"]);
    let (failures, text) = check(&forgetful.url, None).await;
    assert!(failures > 0, "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed
            .iter()
            .any(|l| l
                .starts_with("FAIL  createInstances: the same Idempotency-Key twice creates once")),
        "{text}"
    );
}

async fn ohfp(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ohfp"))
        .args(args)
        .output()
        .await
        .expect("run ohfp");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_commands_check_a_provider_and_print_the_protocol() {
    let broken = ExampleProvider::start(&["--broken"]);
    let (code, stdout) = ohfp(&["provider-check", &broken.url]).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  getHealth"), "{stdout}");
    let (code, stdout) = ohfp(&["openapi", "--provider-protocol"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        ohfp::providers::http::protocol::openapi_json() + "\n"
    );
}

/// Collects log lines in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_key_never_shows_in_a_log_line() {
    // The test runtime has one thread: the app's tasks log to this subscriber, at every level.
    // Whether a line is wanted is cached process-wide when it is first logged. With a single
    // subscriber registered, tracing asks only the logging thread's, so a line first logged by
    // another test (whose thread has none) would be cached as never wanted; with two, it asks
    // both, and each thread's own subscriber decides each line.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let example = ExampleProvider::start(&["--api-key", KEY, "--fail-first", "1"]);
    let app = TestApp::spawn().await;
    register_http(
        &app,
        "pool",
        json!({"endpoint_url": example.url, "api_key": KEY, "max_retries": 1}),
    )
    .await;
    register_http(
        &app,
        "wrong",
        json!({"endpoint_url": example.url, "api_key": format!("{KEY}-not")}),
    )
    .await;
    let v = on(&app, "pool", "CREATE_INSTANCES", json!({"count": 1})).await;
    assert_eq!(v["success"], true, "{v}");
    let v = on(&app, "wrong", "HEALTH_CHECK", json!({})).await;
    assert_eq!(v["success"], false, "{v}");
    app.get("/api/v1/providers").await;
    app.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("retrying"), "the retry is logged:\n{text}");
    assert!(!text.contains(KEY), "the key is logged:\n{text}");
}

#[tokio::test]
async fn the_guides_provider1_and_provider2_serve_hostfactory_and_fail_over() {
    let mut first = ExampleProvider::start(&["--api-key", KEY, "--boot-seconds", "0.2"]);
    let second = ExampleProvider::start(&["--api-key", KEY, "--boot-seconds", "0.2"]);
    let dir = tempfile::tempdir().unwrap();
    // The guide's shape, its settings as the guide writes them.
    let guide = |url: &str, region: &str| {
        json!({"endpoint_url": url, "api_key": "${PROVIDER1_API_KEY}",
               "region": region, "timeout": 30, "max_retries": 3})
    };
    // provider1 says its type, provider2 leaves it to its endpoint_url.
    let mut provider1 = guide(&first.url, "region1");
    provider1["type"] = json!("http");
    let file = json!({"version": "2.0", "provider": {
        "strategy": {"selection_policy": "first_available"},
        "provider1": provider1,
        "provider2": guide(&second.url, "region2"),
    }});
    let path = dir.path().join("guide.json");
    std::fs::write(&path, file.to_string()).unwrap();
    let lookup = |name: &str| (name == "PROVIDER1_API_KEY").then(|| KEY.to_string());
    let mut cfg = ohfp::config::load_with_env(&[&path], &[], &lookup).expect("the guide loads");
    let types: Vec<&str> = cfg
        .providers
        .iter()
        .map(|p| p.provider_type.as_str())
        .collect();
    assert_eq!(types, ["http", "http"]);
    cfg.server.bind = "127.0.0.1:0".into();
    crate::helpers::use_test_database(&mut cfg, &dir.path().join("ohfp.db"));
    cfg.logging.dir = None;
    cfg.strategy.health_check_initial_delay = 3600.0;
    cfg.strategy.fallback_strategies = vec!["provider1".into(), "provider2".into()];
    let templates = json!({"templates": [{
        "templateId": "Any-Small", "maxNumber": 10, "vmType": "ex.small",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "1024"]}
    }]});
    let templates_path = dir.path().join("awsprov_templates.json");
    std::fs::write(&templates_path, templates.to_string()).unwrap();
    cfg.hostfactory.templates_path = Some(templates_path.display().to_string());
    cfg.hostfactory.reconcile_interval_seconds = 0.1;
    cfg.hostfactory.live_check_interval_seconds = 0.2;
    let app = TestApp::start(cfg).await;

    let input = json!({"template": {"templateId": "Any-Small", "machineCount": 2}}).to_string();
    for (round, region) in [(0, "region1"), (1, "region2")] {
        if round == 1 {
            // provider1 goes away: provider2 serves the next request.
            first.kill();
        }
        let (code, v) = shim(&app, "requestMachines", &input).await;
        assert_eq!(code, 0, "{v}");
        let id = v["requestId"].as_str().unwrap().to_string();
        let done = wait_status(&app, &id, "complete").await;
        let ids: Vec<Value> = done["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["machineId"].clone())
            .collect();
        assert_eq!(ids.len(), 2, "{done}");
        let strategy = if round == 0 { "provider1" } else { "provider2" };
        let status = on(
            &app,
            strategy,
            "GET_INSTANCE_STATUS",
            json!({"instance_ids": ids}),
        )
        .await;
        assert_eq!(status["data"]["machines"][0]["region"], region, "{status}");
    }
    app.stop().await;
}

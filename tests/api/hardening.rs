//! Issue 12: what a client (or a careless operator) sends cannot stop the service, strand a
//! machine or leak a secret. Connections, registry races, deleting a strategy that holds
//! machines, the shim's token file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, eventually};
use crate::hostfactory::{SCRIPTS, hf_config, shim, status_of, wait_status};

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// True once the service has closed `stream` (end of file or reset); bytes it sent before are
/// read and dropped.
fn closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn count_closed(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| closed(s)).count()
}

async fn health(app: &TestApp) -> u16 {
    // A fresh client: a new connection each time, as a health probe makes.
    reqwest::Client::new()
        .get(app.url("/health"))
        .send()
        .await
        .expect("health answers")
        .status()
        .as_u16()
}

#[tokio::test]
async fn silent_half_sent_and_idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout_seconds = 1.0).await;
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(connect(app.addr).await);
    }
    for _ in 0..10 {
        let mut s = connect(app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: ohfp\r\nX-Slow: ")
            .await
            .unwrap();
        streams.push(s);
    }
    for _ in 0..5 {
        let mut s = connect(app.addr).await;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: ohfp\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "a whole request is answered");
        streams.push(s);
    }
    eventually("all 25 connections closed by the service", || async {
        (count_closed(&streams) == streams.len()).then_some(())
    })
    .await;
    assert_eq!(health(&app).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connections_make_room_and_health_answers() {
    let app = TestApp::spawn_with(|c| {
        c.server.header_read_timeout_seconds = 300.0;
        c.server.max_connections = 16;
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..40 {
        streams.push(connect(app.addr).await);
    }
    // Each connection over the cap closed the oldest idle one.
    eventually("the 24 oldest connections closed", || async {
        (count_closed(&streams[..24]) == 24).then_some(())
    })
    .await;
    assert_eq!(count_closed(&streams[24..]), 0, "the 16 newest stay");
    for _ in 0..5 {
        assert_eq!(health(&app).await, 200, "a new client is served at the cap");
    }
    app.stop().await;
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_refused_with_503() {
    let app = TestApp::spawn_with(|c| c.server.max_connections = 2).await;
    // A request whose body never comes, busy in its handler, and an open event stream.
    let mut posting = connect(app.addr).await;
    posting
        .write_all(
            b"POST /api/v1/providers HTTP/1.1\r\nHost: ohfp\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let events = reqwest::Client::new()
        .get(app.url("/api/v1/events/stream"))
        .send()
        .await
        .expect("event stream opens");
    assert_eq!(events.status(), 200);
    let busy = (posting, events);
    let refused = eventually("a third connection refused", || async {
        let res = reqwest::Client::new()
            .get(app.url("/health"))
            .send()
            .await
            .ok()?;
        (res.status() == 503).then_some(res)
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    drop(busy);
    eventually("health served once the busy clients left", || async {
        (health(&app).await == 200).then_some(())
    })
    .await;
    app.stop().await;
}

/// Runs the requests at once and returns their statuses in the same order.
async fn all_at_once(app: &TestApp, requests: Vec<(reqwest::Method, String, Value)>) -> Vec<u16> {
    let calls = requests
        .into_iter()
        .map(|(method, path, body)| async move { app.send(method, &path, body).await.0 });
    futures::future::join_all(calls).await
}

fn sim(name: &str) -> Value {
    json!({"strategy_name": name, "provider_type": "simulated", "strategy_config": {"latency_ms": 0}})
}

async fn names(app: &TestApp) -> Vec<String> {
    let (_, v) = app.get("/api/v1/providers").await;
    v["providers"]
        .as_array()
        .expect("strategies listed")
        .iter()
        .map(|s| s["strategy_name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn registry_changes_at_once_are_decided_one_at_a_time() {
    let app = TestApp::spawn().await;
    let providers = "/api/v1/providers".to_string();
    let configuration = "/api/v1/providers/configuration".to_string();
    for round in 0..30 {
        // Eight registrations of one name: one wins.
        let name = format!("dup-{round}");
        let statuses = all_at_once(
            &app,
            (0..8)
                .map(|_| (Method::POST, providers.clone(), sim(&name)))
                .collect(),
        )
        .await;
        let mut sorted = statuses.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [201, 409, 409, 409, 409, 409, 409, 409],
            "round {round}"
        );

        // A load balancer over a member registered while the member is deleted: one of them
        // is refused, and a registered load balancer's member is registered.
        let member = format!("member-{round}");
        let (status, v) = app.post(&providers, sim(&member)).await;
        assert_eq!(status, 201, "{v}");
        let lb = json!({"strategy_name": format!("lb-{round}"), "provider_type": "load_balancer",
            "strategy_config": {"strategies": [member], "algorithm": "ROUND_ROBIN"}});
        let statuses = all_at_once(
            &app,
            vec![
                (Method::POST, providers.clone(), lb),
                (Method::DELETE, format!("{providers}/{member}"), json!({})),
            ],
        )
        .await;
        assert!(
            statuses == [201, 409] || statuses == [422, 200],
            "round {round}: load balancer and delete answered {statuses:?}"
        );
        let listed = names(&app).await;
        assert_eq!(
            listed.contains(&format!("lb-{round}")),
            listed.contains(&member),
            "round {round}: {listed:?}"
        );

        // fallback_strategies and active_strategy set while their strategy is deleted.
        for field in ["fallback_strategies", "active_strategy"] {
            let target = format!("{field}-{round}");
            let (status, v) = app.post(&providers, sim(&target)).await;
            assert_eq!(status, 201, "{v}");
            let value = if field == "active_strategy" {
                json!(target)
            } else {
                json!([target])
            };
            let statuses = all_at_once(
                &app,
                vec![
                    (Method::PUT, configuration.clone(), json!({ field: value })),
                    (Method::DELETE, format!("{providers}/{target}"), json!({})),
                ],
            )
            .await;
            assert!(
                statuses == [200, 409] || statuses == [422, 200],
                "round {round}: {field} and delete answered {statuses:?}"
            );
            let (_, c) = app.get(&configuration).await;
            let named = c[field].to_string().contains(&format!("\"{target}\""));
            assert_eq!(
                named,
                names(&app).await.contains(&target),
                "round {round}: {field} is {}",
                c[field]
            );
            // Clear the setting for the next round.
            let (status, v) = app
                .put(
                    &configuration,
                    json!({"active_strategy": null, "fallback_strategies": []}),
                )
                .await;
            assert_eq!(status, 200, "{v}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_strategy_holding_hostfactory_machines_is_kept_until_they_are_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hf_config(dir.path(), 0.2);
    // Named by no setting: only its machines keep it.
    cfg.strategy.fallback_strategies.clear();
    let app = TestApp::start(cfg).await;
    // Secondary-C6i-Large names sim-secondary.
    let (code, v) = shim(
        &app,
        "requestMachines",
        &json!({"template": {"templateId": "Secondary-C6i-Large", "machineCount": 2}}).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let acquire = v["requestId"].as_str().unwrap().to_string();
    let done = wait_status(&app, &acquire, "complete").await;
    let machines: Vec<Value> = done["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), 2, "{done}");

    let (status, v) = app.delete("/api/v1/providers/sim-secondary").await;
    assert_eq!(status, 409, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("2 HostFactory machines"), "{detail}");
    for m in &machines {
        assert!(
            detail.contains(m["machineId"].as_str().unwrap()),
            "{detail}"
        );
    }
    let (_, listed) = app.get("/api/v1/providers/sim-secondary").await;
    assert_eq!(listed["strategy_name"], "sim-secondary", "still registered");

    // Returned through it, the machines are gone and so is the hold.
    let give: Vec<Value> = machines
        .iter()
        .map(|m| json!({"name": m["name"], "machineId": m["machineId"]}))
        .collect();
    let (code, v) = shim(
        &app,
        "requestReturnMachines",
        &json!({ "machines": give }).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    let ret = v["requestId"].as_str().unwrap().to_string();
    let returned = wait_status(&app, &ret, "complete").await;
    assert!(
        returned["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "terminated"),
        "{returned}"
    );
    let (status, v) = app.delete("/api/v1/providers/sim-secondary").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(status_of(&app, &ret).await["status"], "complete");
    app.stop().await;
}

/// Runs `call`'s shim with the bearer token, its temporary files in `tmp`, its answer to a pipe.
fn shim_with_token(call: &str, url: &str, tmp: &Path) -> tokio::process::Child {
    let input = tmp.with_extension("input.json");
    std::fs::write(&input, "{}").unwrap();
    // Through `env --default-signal` (which execs it, keeping the pid): a shell cannot trap a
    // signal ignored on entry, and the test runner may have inherited an ignored HUP (nohup).
    tokio::process::Command::new("env")
        .arg("--default-signal")
        .arg(format!("{SCRIPTS}/{call}.sh"))
        .arg("-f")
        .arg(&input)
        .env("OHFP_URL", url)
        .env("OHFP_TOKEN", "s3cret-bearer-token")
        .env("OHFP_TIMEOUT", "60")
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shim starts")
}

/// Every file and directory below `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                let mut inner = leftovers(&path);
                inner.push(path);
                inner
            } else {
                vec![path]
            }
        })
        .collect()
}

#[tokio::test]
async fn the_shim_leaves_no_token_file_when_hostfactory_closes_its_pipe() {
    let app = TestApp::spawn_with(|c| {
        c.server.auth.enabled = true;
        c.server.auth.token = Some("s3cret-bearer-token".into());
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("tmp");
    std::fs::create_dir(&work).unwrap();
    let mut child = shim_with_token("getAvailableTemplates", &app.url(""), &work);
    // HostFactory gone: the answer is written into a pipe nobody reads, which is SIGPIPE.
    drop(child.stdout.take());
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(141), "ended by SIGPIPE: {status:?}");
    assert_eq!(leftovers(&work), Vec::<PathBuf>::new());
    app.stop().await;
}

#[tokio::test]
async fn the_shim_leaves_no_token_file_when_a_signal_ends_it_mid_call() {
    // A service that takes the call and never answers: the shim is mid-call until its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    for (signal, number) in [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("PIPE", 13),
        ("TERM", 15),
    ] {
        let work = tmp.path().join(signal);
        std::fs::create_dir(&work).unwrap();
        let mut child = shim_with_token("requestMachines", &url, &work);
        let (_held, _) = silent.accept().await.unwrap();
        assert!(
            !leftovers(&work).is_empty(),
            "mid-call, the token file is there"
        );
        let pid = child.id().expect("running").to_string();
        let kill = tokio::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .await
            .unwrap();
        assert!(kill.success());
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(128 + number), "{signal}: {status:?}");
        assert_eq!(leftovers(&work), Vec::<PathBuf>::new(), "{signal}");
    }
}

#[tokio::test]
async fn numbers_that_become_durations_counts_or_weights_are_bounded_at_the_api() {
    let app = TestApp::spawn().await;
    let lb = |weights: Value| {
        json!({"strategy_name": "lb", "provider_type": "load_balancer",
               "strategy_config": {"strategies": ["sim-primary", "sim-secondary"], "weights": weights}})
    };
    for (body, field) in [
        (
            json!({"strategy_name": "s", "provider_type": "simulated", "strategy_config": {"latency_ms": 1e308}}),
            "strategy_config.latency_ms",
        ),
        (
            json!({"strategy_name": "s", "provider_type": "simulated", "strategy_config": {"latency_ms": [1, 1e300]}}),
            "strategy_config.latency_ms",
        ),
        (
            json!({"strategy_name": "s", "provider_type": "simulated", "strategy_config": {"boot_seconds": 1e308}}),
            "strategy_config.boot_seconds",
        ),
        (
            json!({"strategy_name": "s", "provider_type": "simulated", "weight": 1e308}),
            "weight",
        ),
        (
            lb(json!({"sim-primary": 1e308, "sim-secondary": 1})),
            "strategy_config.weights.sim-primary",
        ),
        (
            json!({"strategy_name": "fb", "provider_type": "fallback", "strategy_config":
                   {"primary": "sim-primary", "fallbacks": ["sim-secondary"],
                    "circuit_breaker_timeout_seconds": 1e308}}),
            "strategy_config.circuit_breaker_timeout_seconds",
        ),
    ] {
        let (status, v) = app.post("/api/v1/providers", body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["errors"][0]["path"], field, "{v}");
        assert!(v["detail"].as_str().unwrap().contains("1e30"), "{v}");
    }
    // The largest accepted values run: the background task lives on.
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "slow", "provider_type": "simulated", "weight": 1e6,
                   "strategy_config": {"latency_ms": [0, 3600000], "boot_seconds": 86400}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = app.get("/ready").await;
    assert_eq!(status, 200, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn every_failure_of_a_hostfactory_call_is_a_message() {
    let app = TestApp::spawn_with(|cfg| cfg.server.max_body_bytes = 4096).await;
    let post = |path: &'static str, body: String| {
        let app = &app;
        async move {
            let res = app
                .client
                .post(app.url(path))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let kind = res.headers()[reqwest::header::CONTENT_TYPE].clone();
            (status, kind, res.json::<Value>().await.unwrap())
        }
    };
    // An unknown call name, a body over the limit, and a rejection of the handler's own.
    for (path, body, status) in [
        ("/api/v1/hostfactory/requestMachine", "{}".to_string(), 404),
        (
            "/api/v1/hostfactory/requestMachines",
            format!(
                r#"{{"template": {{"templateId": "{}"}}}}"#,
                "x".repeat(8192)
            ),
            413,
        ),
        ("/api/v1/hostfactory/requestMachines", "[".to_string(), 400),
    ] {
        let (got, kind, v) = post(path, body).await;
        assert_eq!(got, status, "{path}: {v}");
        assert_eq!(kind, "application/json", "{path}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["message"], "{path}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // Operator routes keep their problem answers.
    let (status, kind, _) = post("/api/v1/nope", "{}".to_string()).await;
    assert_eq!(
        (status, kind.to_str().unwrap()),
        (404, "application/problem+json")
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_an_array_is_refused_where_an_object_is_expected() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .put("/api/v1/providers/configuration", json!(["RANDOM"]))
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "$", "{v}");
    // Deeper down too: serde would fill a struct's fields from an array by position.
    let (status, v) = app
        .put(
            "/api/v1/providers/configuration",
            json!({"selection_criteria": [["instances"], 90.0]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "selection_criteria", "{v}");
    let (_, c) = app.get("/api/v1/providers/configuration").await;
    assert_eq!(c["default_selection_policy"], "FIRST_AVAILABLE", "{c}");
    assert_eq!(
        c["selection_criteria"]["min_success_rate"],
        Value::Null,
        "{c}"
    );
    // And in a provider's own config.
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "arr", "provider_type": "simulated",
                "strategy_config": {"region": "r"},
                "circuit_breaker": [true, 3]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errors"][0]["path"], "circuit_breaker", "{v}");
    app.stop().await;
}

/// A NUL character is no part of any name, id or message, and PostgreSQL cannot store one:
/// refused at the edge, naming where it was, on both backends alike.
#[tokio::test]
async fn a_nul_character_is_refused_naming_where_it_is() {
    let app = TestApp::spawn().await;
    let (status, v) = app
        .get("/api/v1/events?kind=alert_cleared&strategy=a%00b")
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(crate::helpers::error_paths(&v), ["strategy"], "{v}");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "sim-\u{0}x", "provider_type": "simulated", "strategy_config": {}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(crate::helpers::error_paths(&v), ["strategy_name"], "{v}");
    let (status, v) = app
        .post(
            "/api/v1/returns",
            json!({"machine_ids": ["i-1", "i-\u{0}"]}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(crate::helpers::error_paths(&v), ["machine_ids[1]"], "{v}");
    let (status, v) = app.delete("/api/v1/providers/sim%00").await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = app
        .post(
            "/api/v1/hostfactory/getRequestStatus",
            json!({"requests": [{"requestId": "req-\u{0}"}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("requests[0].requestId must not contain a NUL character"),
        "{v}"
    );
    let (_, list) = app.get("/api/v1/providers").await;
    assert_eq!(list["count"], 2, "nothing was registered: {list}");
    app.stop().await;
}

//! Named tokens with scopes (README, "Security"): 401 without a known token, 403 for the wrong
//! scope, the scheme name without case, token files, the shims with a hostfactory token.

use std::os::unix::fs::PermissionsExt;

use ohfp::config::{TokenConfig, TokenScope};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, decode};
use crate::hostfactory::{hf_config, shim_with};

const BIN: &str = env!("CARGO_BIN_EXE_ohfp");

fn token(name: &str, scope: TokenScope, value: &str) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        scope,
        token: Some(value.into()),
        token_file: None,
    }
}

/// The HostFactory fixture app with one token of each scope.
pub async fn scoped_app(dir: &std::path::Path, protect_reads: bool) -> TestApp {
    let mut cfg = hf_config(dir, 0.2);
    cfg.server.auth.enabled = true;
    cfg.server.auth.protect_reads = protect_reads;
    cfg.server.auth.tokens = vec![
        token("ops", TokenScope::ReadWrite, "rw-s3cret"),
        token("grafana", TokenScope::ReadOnly, "ro-s3cret"),
        token("symphony", TokenScope::HostFactory, "hf-s3cret"),
    ];
    TestApp::start(cfg).await
}

/// The status and body of `method path` with `Authorization: <authorization>`.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.client.request(method.clone(), app.url(path));
    if method != Method::GET {
        let body = match path {
            "/api/v1/providers/operations" => json!({"operation_type": "HEALTH_CHECK"}),
            _ => json!({}),
        };
        req = req.json(&body);
    }
    if let Some(value) = authorization {
        req = req.header("authorization", value);
    }
    let res = req.send().await.unwrap();
    let headers = res.headers().clone();
    let (status, v) = decode(res).await;
    (status, headers, v)
}

const READ: (Method, &str) = (Method::GET, "/api/v1/providers");
const WRITE: (Method, &str) = (Method::POST, "/api/v1/providers/operations");
const HF_CALL: (Method, &str) = (Method::POST, "/api/v1/hostfactory/getAvailableTemplates");
const HF_READ: (Method, &str) = (Method::GET, "/api/v1/templates");
const METRICS: (Method, &str) = (Method::GET, "/metrics");

#[tokio::test]
async fn each_scope_calls_what_it_may_and_gets_403_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let app = scoped_app(dir.path(), true).await;
    let routes = [READ, WRITE, HF_CALL, HF_READ, METRICS];
    // Expected status per route, in the order of `routes`.
    let table: [(Option<&str>, [u16; 5]); 5] = [
        (None, [401, 401, 401, 401, 401]),
        (Some("Bearer wrong"), [401, 401, 401, 401, 401]),
        (Some("Bearer ro-s3cret"), [200, 403, 403, 200, 200]),
        (Some("Bearer rw-s3cret"), [200, 200, 200, 200, 200]),
        (Some("Bearer hf-s3cret"), [403, 403, 200, 200, 403]),
    ];
    for (authorization, expected) in table {
        for ((method, path), want) in routes.iter().zip(expected) {
            let (status, headers, v) = call(&app, method.clone(), path, authorization).await;
            assert_eq!(status, want, "{authorization:?} {method} {path}: {v}");
            let text = v.to_string();
            assert!(!text.contains("s3cret"), "no token in answers: {text}");
            if want == 401 {
                assert_eq!(headers["www-authenticate"], "Bearer", "{path}");
            }
            if want == 401 || want == 403 {
                if path.starts_with("/api/v1/hostfactory/") {
                    // HostFactory reads {"message"} from every failure.
                    assert!(v["message"].is_string(), "{path}: {v}");
                    assert_eq!(headers["content-type"], "application/json");
                } else {
                    assert_eq!(headers["content-type"], "application/problem+json");
                    assert_eq!(v["status"], want, "{v}");
                }
            }
            if want == 403 && !path.starts_with("/api/v1/hostfactory/") {
                let detail = v["detail"].as_str().unwrap();
                assert!(detail.contains("token '") && detail.contains(path), "{v}");
            }
        }
    }
    for path in ["/health", "/ready"] {
        let (status, _, _) = call(&app, Method::GET, path, None).await;
        assert_eq!(status, 200, "{path} stays open");
    }
    app.stop().await;
}

#[tokio::test]
async fn reads_stay_open_by_default_and_the_scheme_name_has_no_case() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = hf_config(dir.path(), 0.2);
    cfg.server.auth.enabled = true;
    // The single token of earlier configs is one read-write token, next to named ones.
    cfg.server.auth.token = Some("legacy-s3cret".into());
    cfg.server.auth.tokens = vec![token("grafana", TokenScope::ReadOnly, "ro-s3cret")];
    let app = TestApp::start(cfg).await;
    for (method, path) in [READ, HF_READ, METRICS] {
        let (status, _, v) = call(&app, method, path, None).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} legacy-s3cret");
        let (status, _, v) = call(&app, WRITE.0, WRITE.1, Some(&value)).await;
        assert_eq!(status, 200, "{scheme}: {v}");
    }
    for refused in ["Basic legacy-s3cret", "Bearer", "Bearer ", "legacy-s3cret"] {
        let (status, _, v) = call(&app, WRITE.0, WRITE.1, Some(refused)).await;
        assert_eq!(status, 401, "{refused:?}: {v}");
    }
    let (status, _, _) = call(&app, WRITE.0, WRITE.1, Some("bearer ro-s3cret")).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn the_shims_work_with_a_hostfactory_token_and_not_with_a_read_only_one() {
    let dir = tempfile::tempdir().unwrap();
    let app = scoped_app(dir.path(), false).await;
    let (code, v) = shim_with(&app, "getAvailableTemplates", "{}", Some("hf-s3cret")).await;
    assert_eq!(code, 0, "{v}");
    assert!(!v["templates"].as_array().unwrap().is_empty(), "{v}");
    let template = v["templates"][0]["templateId"]
        .as_str()
        .unwrap()
        .to_string();
    let input = json!({"template": {"templateId": template, "machineCount": 1}}).to_string();
    let (code, v) = shim_with(&app, "requestMachines", &input, Some("hf-s3cret")).await;
    assert_eq!(code, 0, "{v}");
    assert!(v["requestId"].is_string(), "{v}");
    let (code, v) = shim_with(&app, "getAvailableTemplates", "{}", Some("ro-s3cret")).await;
    assert_ne!(code, 0, "{v}");
    assert!(v["message"].as_str().unwrap().contains("scope"), "{v}");
    app.stop().await;
}

/// A config naming `file` as the token file of `server.auth.tokens[0]`.
fn config_with_token_file(dir: &std::path::Path, file: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("ohfp.json");
    let body = json!({
        "server": {"bind": "127.0.0.1:0", "auth": {"enabled": true, "tokens": [
            {"name": "symphony", "scope": "hostfactory", "token_file": file}
        ]}},
        "database": {"path": dir.join("ohfp.db")},
    });
    std::fs::write(&config, body.to_string()).unwrap();
    config
}

#[tokio::test]
async fn a_token_file_others_may_read_is_refused_at_start_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hf.token");
    std::fs::write(&file, "hf-s3cret\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = config_with_token_file(dir.path(), &file);
    let run = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("OHFP_ENV")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("serve refuses at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("server.auth.tokens[0].token_file")
            && stderr.contains(&file.display().to_string())
            && stderr.contains("0644"),
        "{stderr}"
    );
    assert!(!stderr.contains("hf-s3cret"), "{stderr}");

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let loaded = ohfp::config::load(&[config.as_path()]).expect("a 0600 token file loads");
    let (name, scope, value) = loaded.server.auth.credentials().next().unwrap();
    assert_eq!(
        (name, scope, value),
        ("symphony", TokenScope::HostFactory, "hf-s3cret")
    );
}

#[tokio::test]
async fn the_document_stays_open_and_states_the_scheme_and_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let app = scoped_app(dir.path(), true).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for (path, method, content_type) in [
        (
            "/api/v1/providers/operations",
            "post",
            "application/problem+json",
        ),
        (
            "/api/v1/hostfactory/requestMachines",
            "post",
            "application/json",
        ),
        ("/metrics", "get", "application/problem+json"),
    ] {
        let op = &doc["paths"][path][method];
        for status in ["401", "403"] {
            assert!(
                op["responses"][status]["content"][content_type].is_object(),
                "{path} {status}"
            );
        }
        assert_eq!(op["security"][1]["bearer"], json!([]), "{path}");
    }
    assert!(doc["paths"]["/health"]["get"]["responses"]["401"].is_null());
    app.stop().await;
}

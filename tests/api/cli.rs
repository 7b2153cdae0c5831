//! The built binary: client commands against a running app, check-config, openapi, and
//! `serve` stopped by SIGTERM.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{PATIENCE, TestApp, eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_ohfp");

/// The built binary with `args`; exit code, stdout, stderr.
pub(crate) async fn ohfp(args: &[&str]) -> (i32, String, String) {
    ohfp_in_env(args, &[]).await
}

async fn ohfp_in_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("OHFP_URL")
        .env_remove("OHFP_TOKEN")
        .env_remove("OHFP_ENV")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run ohfp");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn client_commands_print_json_and_fail_clearly() {
    let app = TestApp::spawn().await;
    let url = format!("http://{}", app.addr);
    let (code, out, _) = ohfp(&["getProviderHealth", "--url", &url]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["strategies"].as_array().unwrap().len(), 2);

    let (code, out, _) = ohfp(&[
        "executeProviderOperation",
        "--url",
        &url,
        "--data",
        r#"{"operation_type": "CREATE_INSTANCES", "parameters": {"template_id": "web-server", "count": 2}, "strategy_override": "sim-primary"}"#,
    ])
    .await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["metadata"]["strategy_used"], "sim-primary");

    let (code, out, err) =
        ohfp(&["getProviderCapabilities", "--url", &url, "--name", "nope"]).await;
    assert_eq!(code, 1);
    assert!(out.is_empty());
    let problem: Value = serde_json::from_str(&err).unwrap();
    assert_eq!(problem["status"], 404);

    let (code, out, _) = ohfp(&[
        "listAvailableProviders",
        "--url",
        &url,
        "--data",
        r#"{"healthy_only": true}"#,
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["count"], 2);

    let (code, out, _) = ohfp(&[
        "checkProviderHealth",
        "--url",
        &url,
        "--data",
        r#"{"provider_name": "sim-secondary"}"#,
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["check"]["is_healthy"], true, "{v}");
    assert_eq!(v["health"]["source"], "on_demand_check");

    let (code, _, err) = ohfp(&["getProviderMetrics", "--url", "http://127.0.0.1:9"]).await;
    assert_eq!(code, 3);
    assert!(err.contains("cannot reach the service"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn check_config_and_openapi_commands() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"strategy": {"selection_policy": "sometimes"}, "providers": []}"#,
    )
    .unwrap();
    let (code, _, err) = ohfp(&["check-config", bad.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("strategy.selection_policy"), "{err}");
    // The default with the development overlay: the merged result is printed.
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.json");
    let (code, out, err) =
        ohfp_in_env(&["check-config", default], &[("OHFP_ENV", "development")]).await;
    assert_eq!(code, 0, "{err}");
    let (summary, merged) = out.split_once('\n').unwrap();
    assert!(
        summary.contains("(OHFP_ENV=development): ok; 2 strategies"),
        "{summary}"
    );
    let merged: Value = serde_json::from_str(merged).unwrap();
    assert_eq!(merged["strategy"]["health_check_interval"], 60.0);
    assert_eq!(merged["database"]["path"], "data/ohfp-dev.db");
    assert_eq!(merged["providers"][0]["name"], "sim-primary");
    // Files given in order are laid over each other; a problem names the layers.
    let overlay = dir.path().join("overlay.json");
    std::fs::write(
        &overlay,
        r#"{"providers": [{"name": "sim-primary", "config": {"failure_rate": 2}}]}"#,
    )
    .unwrap();
    let (code, _, err) = ohfp(&["check-config", default, overlay.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains(" + ") && err.contains("providers[0].config.failure_rate"),
        "{err}"
    );
    let templates = dir.path().join("templates.json");
    std::fs::write(
        &templates,
        r#"{"templates": [{"templateId": "x", "maxNumber": 1}]}"#,
    )
    .unwrap();
    let cfg = dir.path().join("cfg.json");
    std::fs::write(
        &cfg,
        format!(
            r#"{{"hostfactory": {{"templates_path": "{}"}}}}"#,
            templates.display()
        ),
    )
    .unwrap();
    let (code, _, err) = ohfp(&["check-config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("template 'x' (templates[0]): attributes: is required"),
        "{err}"
    );
    let (code, out, _) = ohfp(&["openapi"]).await;
    assert_eq!(code, 0);
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap();
    assert!(
        out == committed,
        "`ohfp openapi` prints the committed document"
    );
}

#[tokio::test]
async fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("cfg.json");
    let mut text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.json"))
            .unwrap();
    text = text
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{port}"))
        .replace(
            "data/ohfp.db",
            &dir.path().join("db/ohfp.db").display().to_string(),
        )
        .replace(
            "\"dir\": \"logs\"",
            &format!("\"dir\": \"{}\"", dir.path().join("logs").display()),
        );
    std::fs::write(&cfg, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let (client_ref, base_ref) = (&client, &base);
    eventually("the service becomes ready", || async move {
        let r = client_ref.get(format!("{base_ref}/ready")).send().await;
        r.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    let v = get(&base, "/api/v1/providers").await;
    assert_eq!(v["count"], 2);
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // The day's file, app.YYYY-MM-DD.log (two of them if the run spanned midnight UTC).
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut log = String::new();
    for name in &files {
        let date = name
            .strip_prefix("app.")
            .and_then(|n| n.strip_suffix(".log"));
        assert!(
            date.is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()),
            "{name}"
        );
        log += &std::fs::read_to_string(dir.path().join("logs").join(name)).unwrap();
    }
    assert!(
        log.contains("ohfp serving") && log.contains("ohfp stopped"),
        "{log}"
    );
    // The database (with any secret of an API-registered strategy) and the logs are the
    // service user's only.
    use std::os::unix::fs::PermissionsExt;
    for path in [
        dir.path().join("db/ohfp.db"),
        dir.path().join("db"),
        dir.path().join("logs").join(&files[0]),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{}: {mode:o}", path.display());
    }
    assert!(dir.path().join("db/ohfp.db").exists());
}

#[tokio::test]
async fn events_and_alerts_through_the_cli() {
    let app = TestApp::spawn().await;
    let url = format!("http://{}", app.addr);
    let rules = r#"{"rules": [{"name": "open", "condition": {"type": "circuit_open"}}]}"#;
    let (code, out, err) = ohfp(&["configureAlertRules", "--url", &url, "--data", rules]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["source"], "api");
    let (code, out, _) = ohfp(&["getAlertRules", "--url", &url]).await;
    assert_eq!(code, 0);
    assert!(out.contains("circuit_open"), "{out}");
    let (code, out, _) = ohfp(&["listAlerts", "--url", &url]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["active"].is_array() && v["recent"].is_array(), "{v}");
    let listed = eventually("the rules change as an event", || async {
        let data = r#"{"kind": "configuration", "limit": 5}"#;
        let (code, out, _) = ohfp(&["listProviderEvents", "--url", &url, "--data", data]).await;
        assert_eq!(code, 0);
        let v: Value = serde_json::from_str(&out).unwrap();
        (v["count"] == 1).then_some(v)
    })
    .await;
    assert_eq!(
        listed["events"][0]["detail"]["alert_rules"][0], "open",
        "{listed}"
    );
    let (code, _, err) = ohfp(&[
        "listProviderEvents",
        "--url",
        &url,
        "--data",
        r#"{"kind": "nope"}"#,
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("kind"), "{err}");
    app.stop().await;
}

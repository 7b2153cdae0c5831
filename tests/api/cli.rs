//! The built binary: client commands against a running app, check-config, openapi, and
//! `serve` stopped by SIGTERM.

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::auth::scoped_app;
use crate::helpers::{
    PATIENCE, TestApp, eventually, execute, get, open_circuit_on_failing_sim, test_config,
};
use crate::support::debian;

const BIN: &str = env!("CARGO_BIN_EXE_ohfp");

/// The built binary with `args`; exit code, stdout, stderr.
pub(crate) async fn ohfp(args: &[&str]) -> (i32, String, String) {
    ohfp_in_env(args, &[]).await
}

pub(crate) async fn ohfp_in_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
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
    let port = crate::support::free_port();
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

/// One section of `ohfp monitor --once`'s output as rows of column title → cell (columns are
/// two or more blanks apart; no cell is empty).
fn monitor_rows(out: &str, section: &str) -> Vec<BTreeMap<String, String>> {
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut lines = out
        .lines()
        .skip_while(|l| *l != section)
        .skip(1)
        .take_while(|l| !l.is_empty());
    let header = cells(
        lines
            .next()
            .unwrap_or_else(|| panic!("{section} in\n{out}")),
    );
    if header == ["(none)"] {
        return Vec::new();
    }
    lines
        .map(|l| header.iter().cloned().zip(cells(l)).collect())
        .collect()
}

#[tokio::test]
async fn monitor_once_prints_the_status_as_tables() {
    let app = TestApp::spawn_with(|cfg| cfg.alerts.evaluate_every_seconds = 1.0).await;
    let url = format!("http://{}", app.addr);
    for _ in 0..3 {
        execute(
            &app,
            json!({"operation_type": "CREATE_INSTANCES", "strategy_override": "sim-primary",
                   "parameters": {"template_id": "web-server", "count": 1}}),
        )
        .await;
    }
    // A strategy whose operation failed and whose breaker opened, and the alert that says so.
    open_circuit_on_failing_sim(&app, "sim-broken").await;
    let url_ref = url.as_str();
    let out = eventually(
        "the monitor shows the open circuit's alert",
        || async move {
            let (code, out, err) = ohfp(&["monitor", "--once", "--url", url_ref]).await;
            assert_eq!(code, 0, "{err}");
            let alerts = monitor_rows(&out, "ALERTS");
            alerts
                .iter()
                .any(|a| a["RULE"] == "circuit-open" && a["STRATEGY"] == "sim-broken")
                .then_some(out)
        },
    )
    .await;
    assert!(!out.contains('\u{1b}'), "plain text: {out}");
    assert!(
        out.starts_with(&format!("ohfp monitor  {url}  last event ")),
        "{out}"
    );
    let strategies = monitor_rows(&out, "STRATEGIES");
    let names: Vec<&str> = strategies.iter().map(|s| s["NAME"].as_str()).collect();
    assert_eq!(
        names,
        ["sim-primary", "sim-secondary", "sim-broken"],
        "{out}"
    );
    let row = |name: &str| strategies.iter().find(|s| s["NAME"] == name).unwrap();
    assert_eq!(
        (
            row("sim-broken")["CIRCUIT"].as_str(),
            row("sim-primary")["CIRCUIT"].as_str()
        ),
        ("open", "closed"),
        "{out}"
    );
    assert_eq!(row("sim-broken")["SUCCESS"], "0.0%", "{out}");
    assert!(row("sim-broken")["LAST ERROR"] != "-", "{out}");
    assert_eq!(
        row("sim-secondary")["SUCCESS"],
        "-",
        "no operation yet: {out}"
    );
    // The operation counts are getProviderMetrics'.
    let (_, metrics) = app.get("/api/v1/providers/metrics").await;
    for m in metrics["strategies"].as_array().unwrap() {
        let name = m["strategy_name"].as_str().unwrap();
        assert_eq!(
            row(name)["OPS"],
            m["totals"]["count"].to_string(),
            "{name}: {out}"
        );
    }
    assert_eq!(row("sim-primary")["OPS"], "3", "{out}");
    assert!(out.contains("\n\nREQUESTS\n"), "{out}");

    // No terminal, no full-screen view; a service that is not there is an error.
    let (code, _, err) = ohfp(&["monitor", "--url", &url]).await;
    assert_eq!(code, 2);
    assert!(err.contains("--once"), "{err}");
    let (code, out, err) = ohfp(&["monitor", "--once", "--url", "http://127.0.0.1:9"]).await;
    assert_eq!((code, out.as_str()), (3, ""));
    assert!(err.contains("cannot reach the service"), "{err}");
    app.stop().await;
}

const TMUX: &str = "/usr/bin/tmux";

/// A tmux server on a socket of its own, for the full-screen monitor; gone when dropped.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(TMUX)
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "monitor"]).stdout)
            .into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[tokio::test]
async fn monitor_draws_the_screen_follows_events_reconnects_and_quits_on_q() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let code_file = dir.path().join("code");
    debian::install(&[TMUX], &["tmux"]);
    let tmux = Tmux(format!("ohfp-monitor-test-{}", std::process::id()));
    let command = format!(
        "env -u OHFP_TOKEN {BIN} monitor --url http://{}; echo $? > {}; sleep 60",
        app.addr,
        code_file.display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "monitor",
        "-x",
        "160",
        "-y",
        "40",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");
    let tmux = &tmux;
    let shown = eventually(
        "the monitor shows the strategies, following events",
        || async {
            let s = tmux.screen();
            (s.contains("sim-primary") && s.contains("events: live")).then_some(s)
        },
    )
    .await;
    assert!(shown.contains("STRATEGIES (2)"), "{shown}");
    let secondary = |s: &str| {
        s.lines()
            .find(|l| l.contains("sim-secondary"))
            .map(str::to_string)
    };
    assert!(!secondary(&shown).unwrap().contains('%'), "{shown}");
    // An operation: the screen follows.
    execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-secondary"}),
    )
    .await;
    eventually("the screen counts the operation", || async {
        secondary(&tmux.screen())
            .is_some_and(|l| l.contains('%'))
            .then_some(())
    })
    .await;
    // The service goes away: the header says so; back on the same port, the stream is followed
    // again (from the last event id) and the view keeps following.
    let mut cfg = test_config(&app.db);
    cfg.server.bind = app.addr.to_string();
    let _db = app.stop().await;
    eventually("the monitor says the stream dropped", || async {
        tmux.screen()
            .contains("events: disconnected, retrying")
            .then_some(())
    })
    .await;
    let app = TestApp::start(cfg).await;
    eventually("the monitor follows the stream again", || async {
        tmux.screen().contains("events: live").then_some(())
    })
    .await;
    execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": "sim-primary"}),
    )
    .await;
    eventually(
        "the screen counts the operation after the restart",
        || async {
            let s = tmux.screen();
            let primary = s.lines().find(|l| l.contains("sim-primary"))?;
            primary.contains('%').then_some(())
        },
    )
    .await;
    tmux.run(&["send-keys", "-t", "monitor", "q"]);
    let code = eventually("the monitor exits", || async {
        std::fs::read_to_string(&code_file)
            .ok()
            .filter(|c| c.ends_with('\n'))
    })
    .await;
    assert_eq!(code.trim(), "0");
    app.stop().await;
}

#[tokio::test]
async fn monitor_once_reads_a_protected_service_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = scoped_app(dir.path(), true).await;
    let url = format!("http://{}", app.addr);
    let (code, out, err) = ohfp(&["monitor", "--once", "--url", &url]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    let problem: Value = serde_json::from_str(&err).expect("the problem on stderr");
    assert_eq!(problem["status"], 401, "{err}");
    let (code, out, err) = ohfp_in_env(
        &["monitor", "--once", "--url", &url],
        &[("OHFP_TOKEN", "ro-s3cret")],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\n\nSTRATEGIES\nNAME "), "{out}");
    app.stop().await;
}

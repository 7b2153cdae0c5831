//! `ohfp backup FILE`: a consistent copy of the database taken from the running binary while
//! it writes, restored by copying it (and its key) into place and starting a service on it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::helpers::{PATIENCE, get, post, serve, strategy_names};

const SECRET: &str = "backup-secret-access-key-5e2f";

/// The embedded default with its database at `db` and no log files.
fn config_file(dir: &Path, name: &str, db: &Path) -> PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.json"))
        .unwrap();
    let mut cfg: Value = serde_json::from_str(&text).unwrap();
    cfg["database"]["path"] = json!(db.to_str().unwrap());
    cfg["logging"]["dir"] = Value::Null;
    let path = dir.join(name);
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

async fn ohfp_backup(config: &Path, file: &Path) -> (i32, String, String) {
    let args = [
        "backup",
        file.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    crate::cli::ohfp(&args).await
}

/// Registers strategies and asks HostFactory's requestMachines, one after the other, until
/// `stop`; what was acknowledged: (strategy names, request ids).
async fn write_until(base: String, stop: Arc<AtomicBool>) -> (Vec<String>, Vec<String>) {
    let (mut strategies, mut requests) = (Vec::new(), Vec::new());
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("sim-w{i}");
        let v = post(
            &base,
            "/api/v1/providers",
            json!({"strategy_name": name, "provider_type": "simulated",
                "strategy_config": {"latency_ms": 0, "boot_seconds": 0.2}}),
        )
        .await;
        assert_eq!(v["strategy_name"], name, "{v}");
        strategies.push(name);
        let v = post(
            &base,
            "/api/v1/hostfactory/requestMachines",
            json!({"template": {"templateId": "OnDemand-Standard", "machineCount": 1}}),
        )
        .await;
        requests.push(v["requestId"].as_str().expect("a request id").to_string());
        i += 1;
    }
    (strategies, requests)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_strategies_and_requests() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live/ohfp.db");
    let config = config_file(dir.path(), "live.json", &db);
    let (mut live, base) = serve(&config, &[], Stdio::null()).await;

    // A strategy with a secret, sealed under the key that is not in the copy.
    let v = post(
        &base,
        "/api/v1/providers",
        json!({"strategy_name": "aws-keys", "provider_type": "aws",
            "strategy_config": {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                "access_key_id": "AKIAOHFPBACKUPTEST", "secret_access_key": SECRET}}),
    )
    .await;
    assert_eq!(v["strategy_name"], "aws-keys", "{v}");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(base.clone(), stop.clone()));
    // Some writes are acknowledged before the copy starts; more go on while it runs.
    crate::helpers::eventually("the first writes", || {
        let base = base.clone();
        async move {
            let v = get(&base, "/api/v1/providers").await;
            (v["providers"].as_array().unwrap().len() >= 5).then_some(())
        }
    })
    .await;
    let before = strategy_names(&get(&base, "/api/v1/providers").await);

    let copy = dir.path().join("backups/ohfp-1.db");
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    let (code, out, err) = ohfp_backup(&config, &copy).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    stop.store(true, Ordering::SeqCst);
    let (strategies, requests) = writer.await.unwrap();
    assert!(copy.is_file());
    assert_eq!(mode(&copy), 0o600);
    let bytes = std::fs::read(&copy).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("enc:v1:") && !has(SECRET),
        "the copy holds the secret sealed only"
    );
    assert!(
        out.starts_with(&format!("wrote {} (", copy.display())),
        "{out}"
    );
    assert!(out.contains(&format!("from {}", db.display())), "{out}");
    assert!(
        out.contains(&format!("back up {}.key separately", db.display())),
        "the reminder names the key file: {out}"
    );
    let count = |what: &str| -> usize {
        let (head, _) = out.split_once(&format!(" {what}")).unwrap();
        head.rsplit(' ').next().unwrap().parse().unwrap()
    };
    // The two file strategies are stored too.
    assert!(count("strategies,") >= before.len(), "{out}");
    assert!(count("HostFactory requests") >= 1, "{out}");
    // At most: the two of the file, aws-keys, and every registration the writer made (the
    // copy cannot hold one it had not yet asked for).
    assert!(
        count("strategies,") <= strategies.len() + 3,
        "{out}: {} registered",
        strategies.len()
    );

    // Backing up onto an existing file fails and leaves it as it was.
    std::fs::write(dir.path().join("backups/taken"), "keep me").unwrap();
    let (code, out, err) = ohfp_backup(&config, &dir.path().join("backups/taken")).await;
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("exists: ohfp backup never overwrites a file"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("backups/taken")).unwrap(),
        "keep me"
    );
    // Onto the first copy too.
    let (code, _, err) = ohfp_backup(&config, &copy).await;
    assert_eq!(code, 1, "{err}");
    // A write after the copy, which the restored service must not have.
    let v = post(
        &base,
        "/api/v1/providers",
        json!({"strategy_name": "sim-after", "provider_type": "simulated", "strategy_config": {}}),
    )
    .await;
    assert_eq!(v["strategy_name"], "sim-after", "{v}");
    // The key, kept beside the copy as the reminder says.
    let key = dir.path().join("live/ohfp.db.key");
    std::fs::copy(&key, dir.path().join("backups/ohfp-1.db.key")).unwrap();
    // The service dies (SIGKILL): its WAL and shared-memory files stay behind.
    live.kill().await.unwrap();
    let companions = [
        dir.path().join("live/ohfp.db-wal"),
        dir.path().join("live/ohfp.db-shm"),
    ];
    assert!(companions.iter().all(|f| f.exists()));
    std::fs::remove_file(&key).unwrap();

    // Restore as the README says: service stopped, the database's -wal and -shm removed, the
    // copy and its key put in place, service started.
    for file in &companions {
        std::fs::remove_file(file).unwrap();
    }
    std::fs::copy(&copy, &db).unwrap();
    // Without its key the copy does not start: its secrets cannot be opened.
    let keyless = tokio::process::Command::new(env!("CARGO_BIN_EXE_ohfp"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("OHFP_SERVER__BIND", "127.0.0.1:0")
        .env_remove("OHFP_SECRET_KEY")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PATIENCE, keyless)
        .await
        .expect("a service without its key stops")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not the one it was sealed with"), "{err}");
    // It made a key of its own at that start: the backed-up one replaces it.
    std::fs::remove_file(&key).unwrap();
    std::fs::copy(dir.path().join("backups/ohfp-1.db.key"), &key).unwrap();
    let (mut service, base) = serve(&config, &[], Stdio::null()).await;
    let names = strategy_names(&get(&base, "/api/v1/providers").await);
    for name in &before {
        assert!(names.contains(name), "{name} restored: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "sim-after"), "{names:?}");
    let v = get(&base, "/api/v1/providers/aws-keys").await;
    assert_eq!(v["strategy_config"]["secret_access_key"], "***", "{v}");
    // The file's two, aws-keys, and the writer's registrations at most (as for the copy).
    assert!(names.len() <= strategies.len() + 3, "{names:?}");
    let v = get(
        &base,
        &format!("/api/v1/providers/{}", before.last().unwrap()),
    )
    .await;
    assert_eq!(v["source"], "api", "{v}");
    assert_eq!(v["strategy_config"]["boot_seconds"], 0.2, "{v}");
    // The first request, through the operator route and HostFactory's.
    let v = get(&base, &format!("/api/v1/requests/{}", requests[0])).await;
    assert_eq!(v["request_id"], requests[0].as_str(), "{v}");
    let status = post(
        &base,
        "/api/v1/hostfactory/getRequestStatus",
        json!({"requests": [{"requestId": requests[0]}]}),
    )
    .await;
    assert_eq!(
        status["requests"][0]["requestId"],
        requests[0].as_str(),
        "{status}"
    );
    service.kill().await.unwrap();
}

#[tokio::test]
async fn backup_without_a_database_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "cfg.json", &dir.path().join("none/ohfp.db"));
    let file = dir.path().join("copy.db");
    let (code, out, err) = ohfp_backup(&config, &file).await;
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("no database at"), "{err}");
    assert!(!file.exists());
    assert!(!dir.path().join("none").exists(), "no database is created");
}

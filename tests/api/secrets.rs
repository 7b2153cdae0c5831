//! Secrets at rest and in logs: sealed in the database, files readable by their owner only,
//! AWS credentials in no log line at any level.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ohfp::server::App;
use serde_json::json;

use crate::helpers::{TestApp, execute, post, serve, sqlite_config};
use crate::support::example_provider::ExampleProvider;
use crate::support::moto::Moto;

const API_KEY: &str = "sealed-api-key-7f3a9c2e51";
const SECRET: &str = "sealed-secret-access-key-b8d4e6";
const SESSION: &str = "sealed-session-token-0c19aa";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every byte of the database and its WAL companions.
fn database_bytes(db: &Path) -> Vec<u8> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::read(format!("{}{suffix}", db.display())).ok())
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The SQLite file at rest, in both builds (sealing itself is the same on PostgreSQL).
#[tokio::test]
async fn registered_secrets_are_sealed_at_rest_and_work_after_a_restart() {
    let provider = ExampleProvider::start(&["--api-key", API_KEY]);
    let app = TestApp::spawn_with(|cfg| cfg.database.url = None).await;
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "ext", "provider_type": "http",
                "strategy_config": {"endpoint_url": provider.url, "api_key": API_KEY}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = app
        .post(
            "/api/v1/providers",
            json!({"strategy_name": "aws-keys", "provider_type": "aws",
                "strategy_config": {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9",
                    "access_key_id": "AKIAOHFPSEALTEST", "secret_access_key": SECRET,
                    "session_token": SESSION}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let cfg = sqlite_config(&app.db);
    let key_file = format!("{}.key", app.db.display());
    let dir = app.stop().await;

    let bytes = database_bytes(Path::new(&cfg.database.path));
    for secret in [API_KEY, SECRET, SESSION] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is in the database in clear"
        );
    }
    assert!(contains(&bytes, "enc:v1:"), "sealed values are stored");
    assert_eq!(mode(Path::new(&cfg.database.path)), 0o600);
    assert_eq!(mode(Path::new(&key_file)), 0o600);

    // The key beside the database opens them again: the provider is called with its key.
    let app = TestApp::start(cfg.clone()).await;
    let v = execute(
        &app,
        json!({"operation_type": "HEALTH_CHECK", "parameters": {}, "strategy_override": "ext"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let (_, shown) = app.get("/api/v1/providers/aws-keys").await;
    assert_eq!(
        shown["strategy_config"]["secret_access_key"], "***",
        "{shown}"
    );
    app.stop().await;

    // Another key cannot open them: the service refuses to start, it does not run keyless.
    let mut other = cfg;
    other.database.secret_key_file = Some(format!("{}.other-key", other.database.path));
    let err = App::build(other)
        .await
        .err()
        .expect("a wrong key is refused");
    assert!(
        format!("{err:#}").contains("not the one it was sealed with"),
        "{err:#}"
    );
    drop(dir);
}

/// An earlier version's SQLite file, in both builds.
#[tokio::test]
async fn secrets_stored_in_clear_by_an_earlier_version_are_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    let app = TestApp::start(sqlite_config(&db)).await;
    app.stop().await;
    // As an earlier version left it: a secret in clear, the file readable by all.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let spec = json!({"name": "old", "type": "http", "enabled": true, "priority": 0, "weight": 1.0,
        "capabilities": {}, "config": {"endpoint_url": "http://127.0.0.1:9", "api_key": API_KEY}});
    sqlx::query(
        "INSERT INTO strategies (name, spec, source, seq, created_at, updated_at)
         VALUES ('old', ?1, 'api', 100, 0, 0)",
    )
    .bind(spec.to_string())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(contains(&database_bytes(&db), API_KEY));

    let app = TestApp::start(sqlite_config(&db)).await;
    let (status, v) = app.get("/api/v1/providers/old").await;
    assert_eq!(status, 200, "{v}");
    app.stop().await;
    assert_eq!(mode(&db), 0o600);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT spec FROM strategies WHERE name = 'old'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(!stored.contains(API_KEY), "{stored}");
    assert!(stored.contains("enc:v1:"), "{stored}");
}

#[tokio::test]
async fn aws_credentials_are_in_no_log_line_at_trace() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key_id = "AKIAOHFPLOGCHECK0001";
    // The credential chain's profile file: aws-config logs what it loads from it at info.
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let stderr = dir.path().join("stderr.log");
    let logs = dir.path().join("logs");
    let env: Vec<(String, String)> = [
        ("RUST_LOG", "trace"),
        ("AWS_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_SECONDARY_ENDPOINT_URL", moto.url.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("AWS_CONFIG_FILE", dir.path().join("none").to_str().unwrap()),
        ("OHFP_DB", dir.path().join("ohfp.db").to_str().unwrap()),
        ("OHFP_LOGGING__DIR", logs.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aws.json");
    let (mut service, base) = serve(
        &config,
        &env,
        std::fs::File::create(&stderr).unwrap().into(),
    )
    .await;
    // A signed call: the health check asks EC2.
    let v = post(
        &base,
        "/api/v1/providers/operations",
        json!({"operation_type": "HEALTH_CHECK", "parameters": {},
            "strategy_override": "aws-primary"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    service.kill().await.unwrap();
    let mut logged = std::fs::read(&stderr).unwrap();
    assert!(
        contains(&logged, "\"level\":\"TRACE\""),
        "the log is at trace"
    );
    for file in std::fs::read_dir(&logs).unwrap() {
        let path = file.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        logged.extend(std::fs::read(&path).unwrap());
    }
    let logged = String::from_utf8_lossy(&logged);
    for secret in [key_id, SECRET] {
        let lines: Vec<&str> = logged.lines().filter(|l| l.contains(secret)).collect();
        assert!(lines.is_empty(), "{secret} is in the log: {lines:#?}");
    }
}

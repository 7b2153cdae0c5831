use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ohfp::config::{self, Config};
use ohfp::server::App;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Whether this is the `api_pg` build of the suite, which stores in PostgreSQL.
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "api_pg"
}

/// The test database `db` stands for: the SQLite file `db`, or in `api_pg` the PostgreSQL
/// database named after that path (a restart on the same path finds the same one). Files
/// (the secret key) still go beside `db`.
pub fn use_test_database(cfg: &mut Config, db: &Path) {
    cfg.database.path = db.display().to_string();
    if on_postgres() {
        cfg.database.url = Some(crate::support::postgres::database_url_for(db));
    }
}

/// The environment that gives `ohfp serve` the test database `db` stands for (see
/// [`use_test_database`]).
pub fn database_env(db: &Path) -> Vec<(String, String)> {
    let mut env = vec![("OHFP_DATABASE__PATH".to_string(), db.display().to_string())];
    if on_postgres() {
        env.push((
            "OHFP_DATABASE__URL".to_string(),
            crate::support::postgres::database_url_for(db),
        ));
    }
    env
}

/// [`test_config`] on the SQLite file `db` in both builds: for tests of the file itself.
pub fn sqlite_config(db: &Path) -> Config {
    let mut cfg = test_config(db);
    cfg.database.url = None;
    cfg
}

/// The store a test app on `db` (its [`test_config`]) uses, opened beside it.
pub async fn open_store(db: &Path) -> ohfp::store::Store {
    test_config(db)
        .database
        .open()
        .await
        .expect("the test database opens")
}

/// The embedded default with test-friendly settings: port 0, no log files, fast simulators;
/// in `api_pg`, the PostgreSQL database that `db` stands for (files still go beside `db`).
pub fn test_config(db: &Path) -> Config {
    let mut cfg = config::load_with_env(&[], &[], &|_| None).expect("embedded default loads");
    cfg.server.bind = "127.0.0.1:0".into();
    use_test_database(&mut cfg, db);
    cfg.logging.dir = None;
    cfg.strategy.health_check_interval = 3600.0;
    // Health checks run only where a test asks for them.
    cfg.strategy.health_check_initial_delay = 3600.0;
    cfg.strategy.random_seed = Some(1);
    for p in &mut cfg.providers {
        p.config.insert("latency_ms".into(), json!(0));
        p.config.insert("boot_seconds".into(), json!(0.2));
        p.config.insert("shutdown_seconds".into(), json!(0.2));
    }
    cfg
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
    pub db: PathBuf,
}

impl TestApp {
    /// A fresh app on a fresh database.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("ohfp.db");
        let mut cfg = test_config(&db);
        tweak(&mut cfg);
        let mut app = Self::start(cfg).await;
        app._dir = Some(dir);
        app
    }

    /// An app on the given configuration (its database path is kept).
    pub async fn start(cfg: Config) -> Self {
        let db = PathBuf::from(&cfg.database.path);
        let app = App::build(cfg).await.expect("app builds");
        let addr = app.local_addr();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            stop: Some(tx),
            handle: Some(handle),
            _dir: None,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn get_response(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        decode(self.get_response(path).await).await
    }

    /// The body of a GET that answers text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let res = self.get_response(path).await;
        res.text().await.expect("a text body")
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .client
            .request(method, self.url(path))
            .json(&body)
            .send()
            .await
            .expect("request");
        decode(res).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }

    /// The event stream, `GET /api/v1/events/stream`, open (read it with [`next_event`]).
    pub async fn events(&self) -> reqwest::Response {
        self.client
            .get(self.url("/api/v1/events/stream"))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .delete(self.url(path))
            .send()
            .await
            .expect("request");
        decode(res).await
    }

    /// Graceful stop: the server drains, the monitor stops, the database closes.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server ran cleanly");
        }
        self._dir.take()
    }
}

pub async fn decode(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Registers a simulated strategy through the API.
pub async fn register_sim(app: &TestApp, name: &str, config: Value, extra: Value) -> Value {
    let mut body =
        json!({"strategy_name": name, "provider_type": "simulated", "strategy_config": config});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, v) = app.post("/api/v1/providers", body).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// Registers a simulated strategy that always fails and opens its circuit (threshold 1, no
/// recovery for an hour) with one failed HEALTH_CHECK.
pub async fn open_circuit_on_failing_sim(app: &TestApp, name: &str) {
    register_sim(app, name, json!({"failure_rate": 1.0}), json!({})).await;
    app.put(
        "/api/v1/providers/configuration",
        json!({"circuit_breaker_config": {"failure_threshold": 1, "recovery_timeout": 3600}}),
    )
    .await;
    execute(
        app,
        json!({"operation_type": "HEALTH_CHECK", "strategy_override": name}),
    )
    .await;
}

pub async fn execute(app: &TestApp, body: Value) -> Value {
    let (status, v) = app.post("/api/v1/providers/operations", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// How long a test waits for a state the service reaches on its own: generous, so that the
/// suite passes on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `probe` every 100 ms until it yields a value; fails naming `what` after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `path` of each error of a problem+json answer, in order.
pub fn error_paths(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .expect("a problem with errors")
        .iter()
        .map(|e| e["path"].as_str().expect("a path"))
        .collect()
}

/// Reads the event stream (`GET /api/v1/events/stream`, opened as `stream`) until an event of `kind`
/// arrives, and answers it; fails after [`PATIENCE`].
pub async fn next_event(stream: &mut reqwest::Response, kind: &str) -> Value {
    let tag = format!("\"kind\":\"{kind}\"");
    let mut seen = String::new();
    loop {
        if let Some(line) = seen.lines().find(|l| l.contains(&tag) && l.ends_with('}')) {
            return serde_json::from_str(line.trim_start_matches("data:").trim())
                .expect("event JSON");
        }
        let chunk = tokio::time::timeout(PATIENCE, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within {PATIENCE:?}"))
            .expect("event stream")
            .expect("event stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// `ohfp serve --config FILE` (the built binary) with only `env` and PATH, in the current
/// directory, its stderr to `stderr`, until it is ready; the process and its address.
pub async fn serve(
    config: &Path,
    env: &[(String, String)],
    stderr: std::process::Stdio,
) -> (tokio::process::Child, String) {
    let port = crate::support::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ohfp"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("OHFP_SERVER__BIND", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("ohfp serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let (client_ref, base_ref) = (&client, &base);
    eventually("the service is ready", || async move {
        let r = client_ref.get(format!("{base_ref}/ready")).send().await;
        r.is_ok_and(|r| r.status() == 200).then_some(())
    })
    .await;
    (child, base)
}

/// The strategy names of a `GET /api/v1/providers` answer, in its order.
pub fn strategy_names(list: &Value) -> Vec<String> {
    list["providers"]
        .as_array()
        .expect("a providers list")
        .iter()
        .map(|p| p["strategy_name"].as_str().unwrap().to_string())
        .collect()
}

/// POST `body` to a service at `base` (not a [`TestApp`]); the answer's JSON.
pub async fn post(base: &str, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// PUT `body` to a service at `base`, which must accept it; the answer's JSON.
pub async fn put(base: &str, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .put(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "PUT {path}: {}", r.status());
    r.json().await.unwrap()
}

/// GET from a service at `base`; the answer's JSON.
pub async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

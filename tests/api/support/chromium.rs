//! Headless Chromium for the tests: Debian's `chromium` and `chromium-driver`, installed with
//! apt-get when missing (see `debian`), driven over the W3C WebDriver protocol that chromedriver speaks on a
//! loopback port. A test that cannot install or start them fails; it never skips.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{debian, free_port};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver with one headless Chromium session. [`Browser::quit`] closes the browser;
/// dropped without that (a failed test), the process group of chromedriver and the browser it
/// started is killed.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
}

impl Browser {
    pub async fn start() -> Self {
        debian::install(
            &[CHROMIUM, CHROMEDRIVER],
            &["chromium", "chromium-driver", "fonts-liberation"],
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("ohfp-chromedriver-{port}.log"));
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} starts: {e}"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let mut browser = Self {
            driver,
            http,
            session: format!("http://127.0.0.1:{port}/session"),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = browser
                .http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("chromedriver exited ({status}) during start-up:\n{tail}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not answer on port {port} within 30 s (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800"]}}}});
        let created = browser.call(reqwest::Method::POST, "", capabilities).await;
        browser.session = format!(
            "{}/{}",
            browser.session,
            created["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("a session id: {created}"))
        );
        browser
    }

    /// One WebDriver command on the session; its `value`. Fails with the driver's error.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let res = self
            .http
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("chromedriver answers {path}: {e}"));
        let status = res.status();
        let body: Value = res.json().await.expect("chromedriver answers JSON");
        assert!(status.is_success(), "WebDriver {path}: {status} {body}");
        body["value"].clone()
    }

    /// Closes the browser (which ends its crash handlers too) and chromedriver.
    pub async fn quit(self) {
        self.call(reqwest::Method::DELETE, "", json!({})).await;
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body: `return …`) in the page; what it returns, as JSON.
    pub async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--"])
            .arg(format!("-{}", self.driver.id()))
            .status();
        let _ = self.driver.wait();
    }
}

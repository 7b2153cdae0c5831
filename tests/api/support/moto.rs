//! The project's moto launcher: installs moto's server (pinned) into a venv once (`pyvenv`),
//! starts it on a free loopback port behind `moto_switch.py` (fault switch and call counts), and
//! stops it on drop. A test that cannot start moto fails; it never skips.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{free_port, pyvenv};

const MOTO_SPEC: &str = "moto[server]==5.2.5";

fn venv() -> PathBuf {
    match std::env::var_os("OHFP_MOTO_VENV") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => pyvenv::cache_dir("moto-venv"),
    }
}

pub struct Moto {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Moto {
    pub async fn start() -> Self {
        let venv = pyvenv::install(&venv(), MOTO_SPEC);
        let port = free_port();
        let switch =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/support/moto_switch.py");
        let log = std::env::temp_dir().join(format!("ohfp-moto-{port}.log"));
        let child = Command::new(venv.join("bin/python"))
            .arg(&switch)
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("moto log file"))
            .spawn()
            .expect("moto starts");
        let mut moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        };
        let started = Instant::now();
        loop {
            if let Ok(r) = moto
                .http
                .get(format!("{}/moto-api/", moto.url))
                .send()
                .await
                && r.status().is_success()
            {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("moto exited ({status}) during start-up:\n{tail}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not answer on {} within 30 s (log: {})",
                moto.url,
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("moto answers")
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path} answers JSON: {e}"))
    }

    async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "text/plain")
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers")
    }

    /// `throttle`, `error` or `off`.
    pub async fn fault(&self, mode: &str) {
        assert!(self.post("/_ohfp/fault", mode).await.status().is_success());
    }

    /// RunInstances of these instance types answers InsufficientInstanceCapacity (none: all
    /// have room again).
    pub async fn short_of(&self, instance_types: &[&str]) {
        let list = instance_types.join(",");
        assert!(
            self.post("/_ohfp/capacity", &list)
                .await
                .status()
                .is_success()
        );
    }

    /// Calls of `action` (a JSON-protocol call) answer `body`, a recorded AWS answer.
    pub async fn answer(&self, action: &str, body: Value) {
        let wanted = json!({"action": action, "body": body}).to_string();
        assert!(
            self.post("/_ohfp/answer", &wanted)
                .await
                .status()
                .is_success()
        );
    }

    /// Every AWS call from now on fails with AuthFailure (moto's own switch).
    pub async fn enforce_auth_failure(&self) {
        assert!(
            self.post("/moto-api/reset-auth", "0")
                .await
                .status()
                .is_success()
        );
    }

    /// AWS calls by action since the last reset.
    pub async fn calls(&self) -> Value {
        self.get_json("/_ohfp/calls").await
    }

    /// The parameters of the last `action` call since the last reset (query-protocol calls:
    /// EC2, Auto Scaling), for what moto does not reflect.
    pub async fn last_request(&self, action: &str) -> Value {
        let all = self.get_json("/_ohfp/requests").await;
        all.as_array()
            .expect("a list")
            .iter()
            .rev()
            .find(|r| r["action"] == action)
            .map(|r| r["params"].clone())
            .unwrap_or_else(|| panic!("no {action} recorded: {all}"))
    }

    pub async fn reset_calls(&self) {
        self.post("/_ohfp/calls", "").await;
    }

    /// Stops the server now (a dead region).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Our own clients' configuration, to act and look behind the service's back.
    async fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }

    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region).await)
    }

    pub async fn autoscaling(&self, region: &str) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config(region).await)
    }

    pub async fn sqs(&self, region: &str) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config(region).await)
    }

    /// One EventBridge call (`PutRule`, `PutTargets`, `PutEvents`) in its JSON protocol; the
    /// project has no EventBridge client, and moto reads the service and region from the
    /// authorization header without checking the signature.
    pub async fn eventbridge(&self, region: &str, action: &str, body: Value) -> Value {
        let answer = self
            .http
            .post(&self.url)
            .header("X-Amz-Target", format!("AWSEvents.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=test/20260101/{region}/events/aws4_request, \
                     SignedHeaders=host, Signature=0"
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .expect("moto answers");
        let status = answer.status();
        let v: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{action}: {status} {v}");
        v
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

//! `strategy_config` of an `aws` strategy.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::MAX_REQUEST_TIMEOUT_SECONDS;
use crate::providers::parse_config;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: String,
    /// A named profile of the shared config/credentials files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Another endpoint than AWS's (a VPC endpoint, an emulator). Empty means none, so that
    /// `"${AWS_ENDPOINT_URL:-}"` can be written in a config file.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Assumed through STS with the chain's credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Static credentials, for emulators and tests; the standard chain is used without them.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// Tries per call, throttling and 5xx included (the SDK's standard retry with backoff).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// One call, all its retries included.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_seconds: f64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// Used when a template names none (AMI and subnet ids are per region).
    #[serde(default)]
    pub image_id: Option<String>,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Prefix of the launch templates and Auto Scaling groups this strategy makes.
    #[serde(default = "default_name_prefix")]
    pub name_prefix: String,
    /// How long an (instance type, subnet) pool that answered "no capacity" is skipped;
    /// 0 moves on without parking.
    #[serde(default = "default_capacity_cooldown")]
    pub capacity_cooldown_seconds: u32,
    /// An SQS queue an EventBridge rule feeds with EC2's interruption warnings, rebalance
    /// recommendations and state changes; long-polled when set.
    #[serde(default)]
    pub interruption_queue_url: Option<String>,
    /// Whether a rebalance recommendation from the queue is reported to getReturnRequests or
    /// only evented.
    #[serde(default)]
    pub rebalance_recommendations: RebalanceMode,
    /// An instance of this strategy pending longer is failed and terminated; none:
    /// `hostfactory.pending_timeout_seconds`.
    #[serde(default)]
    pub pending_timeout_seconds: Option<f64>,
    /// A proxy for this strategy's AWS calls only (every SDK client it builds).
    #[serde(default)]
    pub https_proxy: Option<String>,
    /// Seconds between refreshes of the account's EC2 vCPU quotas and usage, which then cap
    /// getAvailableTemplates' availableNumber; none: quotas are not read.
    #[serde(default)]
    pub quota_refresh_seconds: Option<u32>,
}

/// What a rebalance recommendation (a spot instance at elevated risk of interruption) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceMode {
    /// Listed by getReturnRequests, as a reclaim without a deadline.
    Report,
    /// Only a `reclaim_notice` event.
    #[default]
    Event,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_operation_timeout() -> f64 {
    30.0
}
fn default_connect_timeout() -> f64 {
    5.0
}
fn default_capacity_cooldown() -> u32 {
    600
}
/// A day: a pool parked longer is better left out of the template (and quotas refreshed less
/// often are stale).
const MAX_CAPACITY_COOLDOWN: u32 = 86_400;
/// Service Quotas is not meant to be polled: a refresh a minute at most.
const MIN_QUOTA_REFRESH: u32 = 60;
fn default_name_prefix() -> String {
    "ohfp".into()
}

/// `None` for absent, empty or blank strings.
fn non_empty(value: &mut Option<String>) {
    if value.as_deref().is_some_and(|s| s.trim().is_empty()) {
        *value = None;
    }
}

impl AwsConfig {
    pub fn from_spec(config: &Map<String, Value>) -> Result<Self, (String, String)> {
        let mut cfg: AwsConfig = parse_config(config)?;
        for field in [
            &mut cfg.profile,
            &mut cfg.endpoint_url,
            &mut cfg.role_arn,
            &mut cfg.external_id,
            &mut cfg.access_key_id,
            &mut cfg.secret_access_key,
            &mut cfg.session_token,
            &mut cfg.image_id,
            &mut cfg.interruption_queue_url,
            &mut cfg.https_proxy,
        ] {
            non_empty(field);
        }
        let bad = |field: &str, msg: String| Err((format!("config.{field}"), msg));
        if cfg.region.trim().is_empty() {
            return bad("region", "must not be empty".into());
        }
        if !(1..=10).contains(&cfg.max_attempts) {
            return bad(
                "max_attempts",
                format!("must be from 1 to 10, got {}", cfg.max_attempts),
            );
        }
        for (field, v) in [
            ("operation_timeout_seconds", cfg.operation_timeout_seconds),
            ("connect_timeout_seconds", cfg.connect_timeout_seconds),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return bad(
                    field,
                    format!("must be more than 0 and at most 3600 seconds, got {v}"),
                );
            }
        }
        if let Some(url) = &cfg.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(
                "endpoint_url",
                format!("must be an http:// or https:// URL, got '{url}'"),
            );
        }
        if let Some(url) = &cfg.interruption_queue_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad(
                "interruption_queue_url",
                format!("must be an SQS queue URL (https://...), got '{url}'"),
            );
        }
        if cfg.access_key_id.is_some() != cfg.secret_access_key.is_some() {
            return bad(
                "access_key_id",
                "access_key_id and secret_access_key go together".into(),
            );
        }
        if let Some(arn) = &cfg.role_arn
            && !arn.starts_with("arn:")
        {
            return bad("role_arn", "must be an IAM role ARN (arn:...)".into());
        }
        if let Some(v) = cfg.pending_timeout_seconds
            && !(v.is_finite() && v > 0.0 && v <= MAX_REQUEST_TIMEOUT_SECONDS)
        {
            return bad(
                "pending_timeout_seconds",
                format!(
                    "must be more than 0 and at most {MAX_REQUEST_TIMEOUT_SECONDS} seconds, got {v}"
                ),
            );
        }
        if let Some(proxy) = &cfg.https_proxy
            && let Err(e) = aws_smithy_http_client::proxy::ProxyConfig::all(proxy.as_str())
        {
            return bad("https_proxy", format!("must be a proxy URL: {e}"));
        }
        if let Some(every) = cfg.quota_refresh_seconds
            && !(MIN_QUOTA_REFRESH..=MAX_CAPACITY_COOLDOWN).contains(&every)
        {
            return bad(
                "quota_refresh_seconds",
                format!(
                    "must be from {MIN_QUOTA_REFRESH} to {MAX_CAPACITY_COOLDOWN} seconds, got {every}"
                ),
            );
        }
        if cfg.capacity_cooldown_seconds > MAX_CAPACITY_COOLDOWN {
            return bad(
                "capacity_cooldown_seconds",
                format!(
                    "must be from 0 to {MAX_CAPACITY_COOLDOWN} seconds, got {}",
                    cfg.capacity_cooldown_seconds
                ),
            );
        }
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !name_ok(&cfg.name_prefix) {
            return bad(
                "name_prefix",
                "must be 1 to 32 characters of [A-Za-z0-9_-]".into(),
            );
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> Result<AwsConfig, (String, String)> {
        AwsConfig::from_spec(v.as_object().unwrap())
    }

    #[test]
    fn config_errors_name_the_field() {
        assert_eq!(cfg(json!({})).unwrap_err().0, "config");
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "max_attempts": 0}))
                .unwrap_err()
                .0,
            "config.max_attempts"
        );
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "operation_timeout_seconds": -1}))
                .unwrap_err()
                .0,
            "config.operation_timeout_seconds"
        );
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "capacity_cooldown_seconds": 86_401}))
                .unwrap_err()
                .0,
            "config.capacity_cooldown_seconds"
        );
        let err = cfg(json!({"region": "eu-west-1", "regoin": "x"})).unwrap_err();
        assert!(err.1.contains("unknown field `regoin`"), "{err:?}");
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "subnet_ids": "subnet-1"}))
                .unwrap_err()
                .0,
            "config.subnet_ids"
        );
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "access_key_id": "AKIA"}))
                .unwrap_err()
                .0,
            "config.access_key_id"
        );
        for (bad, field) in [
            (
                json!({"pending_timeout_seconds": 0}),
                "pending_timeout_seconds",
            ),
            (json!({"https_proxy": "not a url"}), "https_proxy"),
            (
                json!({"interruption_queue_url": "queue"}),
                "interruption_queue_url",
            ),
            (
                json!({"rebalance_recommendations": "ignore"}),
                "rebalance_recommendations",
            ),
        ] {
            let mut spec = bad.as_object().unwrap().clone();
            spec.insert("region".into(), json!("eu-west-1"));
            let err = AwsConfig::from_spec(&spec).unwrap_err();
            assert!(err.0.ends_with(field), "{field}: {err:?}");
        }
    }

    #[test]
    fn an_empty_endpoint_means_none() {
        let c = cfg(json!({"region": "eu-west-1", "endpoint_url": "", "profile": " "})).unwrap();
        assert_eq!(c.endpoint_url, None);
        assert_eq!(c.profile, None);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.capacity_cooldown_seconds, 600);
        assert_eq!(
            cfg(json!({"region": "eu-west-1", "endpoint_url": "localhost:5000"}))
                .unwrap_err()
                .0,
            "config.endpoint_url"
        );
    }
}

//! The `http` provider: every operation forwarded to an external service that speaks the
//! provider protocol ([`protocol`]), so that any cloud or on-premises pool can sit behind a
//! strategy without a change to ohfp. One HTTP client per strategy keeps connections open
//! between calls.

pub mod protocol;

use std::fmt;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use super::{
    CreateRequest, Created, HealthReport, Provider, StatusQuery, StatusReport, TemplatesReport,
    TerminateReport, TerminateRequest, ValidationReport, parse_config,
};
use crate::domain::{Capabilities, LaunchSpec, OperationType, ProviderError, ProviderErrorKind};
use crate::strategy::fallback::{MAX_BACKOFF_SECONDS, backoff_seconds, should_retry};
use protocol::{Call, ErrorClass, IDEMPOTENCY_KEY, ProtocolError, REGION, ServiceCapabilities};

/// A secret that never shows: `Debug` prints `***`, and a value of the wrong type is refused
/// without echoing it.
#[derive(Clone, PartialEq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)
            .map(ApiKey)
            .map_err(|_| serde::de::Error::custom("must be a string"))
    }
}

/// `strategy_config` of an `http` strategy (the guide's Provider1/Provider2 settings).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where the service answers; the protocol's paths are appended to it.
    pub endpoint_url: String,
    /// Sent as a bearer token. Empty means none, so that `"${PROVIDER1_API_KEY:-}"` can be
    /// written in a config file.
    #[serde(default)]
    pub api_key: Option<ApiKey>,
    /// Sent with every call and shown with the strategy.
    #[serde(default)]
    pub region: Option<String>,
    /// Seconds one HTTP call may take.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Retries of a call after a retryable error (throttling, transient, timeout).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_timeout() -> f64 {
    30.0
}
fn default_max_retries() -> u32 {
    3
}

/// The first retry's pause before jitter; later ones double.
const BACKOFF_BASE_SECONDS: f64 = 0.2;

impl HttpConfig {
    pub fn from_spec(config: &Map<String, Value>) -> Result<Self, (String, String)> {
        let mut cfg: HttpConfig = parse_config(config)?;
        if cfg.api_key.as_ref().is_some_and(|k| k.0.trim().is_empty()) {
            cfg.api_key = None;
        }
        if cfg.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            cfg.region = None;
        }
        let bad = |field: &str, msg: String| Err((format!("config.{field}"), msg));
        if let Err(msg) = check_endpoint(&cfg.endpoint_url) {
            return bad("endpoint_url", msg);
        }
        // Both travel in headers; a header takes visible ASCII only.
        if cfg
            .api_key
            .as_ref()
            .is_some_and(|k| !k.0.chars().all(|c| c.is_ascii_graphic()))
        {
            return bad(
                "api_key",
                "must be visible ASCII without spaces (it is sent as a bearer token)".into(),
            );
        }
        if let Some(region) = &cfg.region
            && !(region.len() <= 64
                && region
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return bad(
                "region",
                format!("must be 1 to 64 characters of [A-Za-z0-9._-], got '{region}'"),
            );
        }
        if !(cfg.timeout.is_finite() && cfg.timeout > 0.0 && cfg.timeout <= 3600.0) {
            return bad(
                "timeout",
                format!(
                    "must be more than 0 and at most 3600 seconds, got {}",
                    cfg.timeout
                ),
            );
        }
        if cfg.max_retries > 10 {
            return bad(
                "max_retries",
                format!("must be from 0 to 10, got {}", cfg.max_retries),
            );
        }
        Ok(cfg)
    }
}

/// An http(s) URL with a host, and nothing that would leak or be lost: credentials belong in
/// `api_key`, and paths are appended, so a query or fragment has no place. Also the
/// conformance kit's check of its URL.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| format!("must be an http(s) URL, got '{url}': {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "must be an http:// or https:// URL with a host, got '{url}'"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not carry credentials; put the key in api_key".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "must not have a query or fragment (the protocol's paths are appended), got '{url}'"
        ));
    }
    Ok(())
}

/// A failed try: the error, and how long the service asked us to wait.
struct Failure {
    error: ProviderError,
    retry_after: Option<f64>,
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

/// An error with its causes: reqwest's own text stops at "error sending request".
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut at = e.source();
    while let Some(cause) = at {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        at = cause.source();
    }
    text
}

fn transport_error(call: Call, e: &reqwest::Error) -> ProviderError {
    let text = with_causes(e);
    let (kind, code) = if e.is_timeout() {
        (ProviderErrorKind::Timeout, "TIMEOUT")
    } else if e.is_connect() {
        (ProviderErrorKind::Transient, "CONNECTION_FAILED")
    } else {
        (ProviderErrorKind::Transient, "TRANSPORT_ERROR")
    };
    ProviderError::new(kind, code, format!("{}: {text}", call.name()))
}

fn protocol_violation(call: Call, what: String) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Internal,
        "PROTOCOL_VIOLATION",
        format!("{}: {what}", call.name()),
    )
}

/// An error answer as ours: the body's class when it has one, else the status's.
fn answered_error(call: Call, status: u16, body: &[u8]) -> ProviderError {
    if let Ok(err) = serde_json::from_slice::<ProtocolError>(body) {
        return ProviderError::new(
            err.class.kind(),
            err.code,
            format!("{}: {}", call.name(), err.message),
        );
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    match ErrorClass::of_status(status) {
        Some(class) => ProviderError::new(
            class.kind(),
            format!("HTTP_{status}"),
            format!("{}: answered {status}: {text}", call.name()),
        ),
        None => protocol_violation(
            call,
            format!("answered {status} without a protocol error (is endpoint_url right?): {text}"),
        ),
    }
}

/// Parses an answer once, into the contract's type; what does not fit is named by its path.
pub fn parse_answer<T: DeserializeOwned>(call: Call, body: &[u8]) -> Result<T, ProviderError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        protocol_violation(call, format!("answer at '{path}': {}", e.into_inner()))
    })
}

pub struct HttpProvider {
    cfg: HttpConfig,
    /// `endpoint_url` without a trailing slash; paths start with one.
    base: String,
    client: reqwest::Client,
    /// The last getCapabilities answer; until there is one, every operation is assumed.
    described: RwLock<Option<ServiceCapabilities>>,
}

impl HttpProvider {
    pub fn new(cfg: HttpConfig) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            base: cfg.endpoint_url.trim_end_matches('/').to_string(),
            cfg,
            client,
            described: RwLock::new(None),
        })
    }

    /// One try of `call`.
    async fn send<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        call: Call,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<T, Failure> {
        let mut req = self
            .client
            .request(call.method(), format!("{}{}", self.base, call.path()));
        if let Some(key) = &self.cfg.api_key {
            // Marks the header sensitive, so that it is never printed.
            req = req.bearer_auth(key.expose());
        }
        if let Some(region) = &self.cfg.region {
            req = req.header(REGION, region);
        }
        if let Some(key) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.map_err(|e| transport_error(call, &e))?;
        let status = res.status();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0);
        let bytes = res.bytes().await.map_err(|e| transport_error(call, &e))?;
        if status.is_success() {
            return Ok(parse_answer(call, &bytes)?);
        }
        Err(Failure {
            error: answered_error(call, status.as_u16(), &bytes),
            retry_after,
        })
    }

    /// `call` with up to `retries` retries of retryable errors, after the service's
    /// Retry-After or an exponential backoff with jitter. A create keeps its idempotency key
    /// across them, so that a retry after a lost answer starts nothing twice.
    async fn call<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        call: Call,
        body: Option<&B>,
        retries: u32,
    ) -> Result<T, ProviderError> {
        let key = (call == Call::Create).then(|| uuid::Uuid::new_v4().to_string());
        let mut done = 0;
        loop {
            match self.send(call, body, key.as_deref()).await {
                Ok(answer) => return Ok(answer),
                Err(f) if should_retry(f.error.kind, done, retries) => {
                    let pause = f
                        .retry_after
                        .unwrap_or_else(|| {
                            backoff_seconds(BACKOFF_BASE_SECONDS, done, rand::random())
                        })
                        .min(MAX_BACKOFF_SECONDS);
                    tracing::debug!(call = call.name(), error = %f.error, pause, "retrying");
                    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                    done += 1;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn describe(&self, retries: u32) -> Result<ServiceCapabilities, ProviderError> {
        let described: ServiceCapabilities =
            self.call(Call::Capabilities, None::<&()>, retries).await?;
        *self.described.write().expect("capabilities lock") = Some(described.clone());
        Ok(described)
    }
}

#[async_trait]
impl Provider for HttpProvider {
    /// The service's own word (its last getCapabilities answer) over what every http strategy
    /// has.
    fn capabilities(&self) -> Capabilities {
        let described = self
            .described
            .read()
            .expect("capabilities lock")
            .clone()
            .unwrap_or_else(|| ServiceCapabilities {
                supported_operations: OperationType::ALL.to_vec(),
                ..ServiceCapabilities::default()
            });
        let mut features = json!({"http": true, "instances": true, "endpoint_url": self.base})
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(region) = &self.cfg.region {
            features.insert("region".into(), json!(region));
        }
        features.extend(described.features);
        Capabilities {
            provider_type: "http".into(),
            supported_operations: described.supported_operations,
            features,
            limitations: described.limitations,
            performance_metrics: None,
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        self.call(Call::Create, Some(req), self.cfg.max_retries)
            .await
    }

    async fn status(&self, query: &StatusQuery) -> Result<StatusReport, ProviderError> {
        self.call(Call::Status, Some(query), self.cfg.max_retries)
            .await
    }

    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError> {
        self.call(Call::Terminate, Some(req), self.cfg.max_retries)
            .await
    }

    async fn validate(&self, spec: &LaunchSpec) -> Result<ValidationReport, ProviderError> {
        self.call(Call::Validate, Some(spec), self.cfg.max_retries)
            .await
    }

    async fn templates(&self) -> Result<TemplatesReport, ProviderError> {
        let described = self.describe(self.cfg.max_retries).await?;
        Ok(TemplatesReport {
            templates: described.templates,
            region: self.cfg.region.clone(),
            ..TemplatesReport::default()
        })
    }

    /// Not retried here: the health monitor has its own retries. A healthy answer also
    /// refreshes the capabilities (likewise not retried), which may change while the service
    /// runs.
    async fn health(&self) -> Result<HealthReport, ProviderError> {
        let report: HealthReport = self.call(Call::Health, None::<&()>, 0).await?;
        if !report.is_healthy {
            return Err(ProviderError::new(
                ProviderErrorKind::Transient,
                "UNHEALTHY",
                format!(
                    "{}: the service reports itself unhealthy: {}",
                    Call::Health.name(),
                    report
                        .status_message
                        .as_deref()
                        .unwrap_or("no reason given")
                ),
            ));
        }
        if let Err(e) = self.describe(0).await {
            tracing::warn!(error = %e, "capabilities unavailable; keeping the last known");
        }
        Ok(HealthReport {
            region: report.region.or_else(|| self.cfg.region.clone()),
            ..report
        })
    }
}

#[cfg(test)]
mod tests;

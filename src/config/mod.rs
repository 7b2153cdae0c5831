//! Configuration: typed model, layered loading (embedded default or files in order →
//! `OHFP_ENV`'s file → `OHFP_*` env → `${VAR}` expansion), validation with errors that name the bad key.

mod alerts;
mod expand;
mod guide;
mod layers;
mod load;
mod retention;
mod strategy;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::CapabilityFlags;
use crate::strategy::{BreakerConfig, BreakerPatch};

pub use alerts::{
    AlertRule, AlertsConfig, Condition, ConditionKind, MAX_RULES, Statistic,
    problems as alert_rule_problems,
};
pub use load::{ConfigError, ConfigErrors, load, load_with_env};
pub use retention::RetentionConfig;
pub use strategy::{
    MAX_FAILURE_THRESHOLD, MAX_FALLBACK_STRATEGIES, MAX_HALF_OPEN_MAX_CALLS,
    MAX_HEALTH_CHECK_RETRIES, MAX_INTERVAL_SECONDS, MAX_RECOVERY_TIMEOUT_SECONDS,
    MAX_TIMEOUT_SECONDS, MIN_HEALTH_CHECK_INTERVAL_SECONDS, StrategySettings, breaker_problems,
};

/// The embedded default configuration (`config/default.json`).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub strategy: StrategySettings,
    /// Strategies defined by this file. The file is authoritative for these names.
    #[serde(default)]
    pub providers: Vec<StrategySpec>,
    #[serde(default)]
    pub hostfactory: HostFactoryConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
}

/// The HostFactory side: templates and request tracking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostFactoryConfig {
    /// The templates file (`awsprov_templates.json` shape). When absent:
    /// `$HF_PROVIDER_CONFDIR/awsprov_templates.json` if that variable is set, else
    /// `config/hostfactory/awsprov_templates.json` if it exists, else no templates.
    pub templates_path: Option<String>,
    /// Seconds between reconciler rounds (machines in flight are asked about every round).
    pub reconcile_interval_seconds: f64,
    /// Seconds between checks of machines that are running, to notice reclaims.
    pub live_check_interval_seconds: f64,
    /// A machine still pending after this many seconds is failed and terminated; a fleet that
    /// has not placed every machine by then ends its request with the shortfall.
    pub pending_timeout_seconds: f64,
    /// Most instance ids in one status call to a provider.
    pub status_batch_size: usize,
    /// Seconds a host has after a spot interruption notice (AWS gives two minutes).
    pub spot_grace_seconds: i64,
    /// An acquire request made through requestMachines that HostFactory never names in
    /// getRequestStatus within this many seconds of service uptime is cancelled and its machines
    /// returned (its answer was lost); 0 never cancels.
    pub unclaimed_request_timeout_seconds: f64,
}

/// Upper bound of `hostfactory.pending_timeout_seconds` and
/// `hostfactory.unclaimed_request_timeout_seconds`: a week.
pub const MAX_REQUEST_TIMEOUT_SECONDS: f64 = 7.0 * MAX_INTERVAL_SECONDS;

impl Default for HostFactoryConfig {
    fn default() -> Self {
        Self {
            templates_path: None,
            reconcile_interval_seconds: 2.0,
            live_check_interval_seconds: 60.0,
            pending_timeout_seconds: 600.0,
            status_batch_size: 1000,
            spot_grace_seconds: 120,
            unclaimed_request_timeout_seconds: 300.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    /// Whole-request deadline; a slower request gets a 503 problem answer.
    pub request_timeout_seconds: f64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Seconds a connection has to send a complete request head, counted from its opening and
    /// again from the end of each response: it closes silent, idle keep-alive and half-sent-header
    /// connections alike.
    pub header_read_timeout_seconds: f64,
    /// Most connections open at once; at start it is lowered to leave room below the process's
    /// open-file limit (see `http::serve`).
    pub max_connections: usize,
    pub auth: AuthConfig,
}

/// Bounds of `server.header_read_timeout_seconds` (inclusive above).
pub const MAX_HEADER_READ_TIMEOUT_SECONDS: f64 = 300.0;
/// Bounds of `server.max_connections`.
pub const MAX_SERVER_CONNECTIONS: usize = 65_536;

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            request_timeout_seconds: 30.0,
            max_body_bytes: 1024 * 1024,
            header_read_timeout_seconds: 10.0,
            max_connections: 1024,
            auth: AuthConfig::default(),
        }
    }
}

impl ServerConfig {
    pub fn bind_addr(&self) -> Result<SocketAddr, String> {
        self.bind.parse().map_err(|_| {
            format!(
                "'{}' is not an address:port such as 127.0.0.1:8000",
                self.bind
            )
        })
    }
}

/// Bearer-token protection (README, "Security"). Mutating routes under /api/v1 need a token
/// whose scope allows them; reads need one only with `protect_reads`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
    /// The single token of earlier versions: one read-write token named `default`.
    #[serde(skip_serializing)]
    pub token: Option<String>,
    pub tokens: Vec<TokenConfig>,
    /// Reads (GET under /api/v1 and /metrics) need a token too; `/health` and `/ready` never do.
    pub protect_reads: bool,
}

/// Name given in logs to the single `token`.
pub const DEFAULT_TOKEN_NAME: &str = "default";

impl AuthConfig {
    /// Every token as (name, scope, value); `token_file`s are read by the loader, so a token
    /// without a value here is one that validation refused.
    pub fn credentials(&self) -> impl Iterator<Item = (&str, TokenScope, &str)> {
        let single = self
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(|t| (DEFAULT_TOKEN_NAME, TokenScope::ReadWrite, t));
        single.into_iter().chain(
            self.tokens
                .iter()
                .filter_map(|t| Some((t.name.as_str(), t.scope, t.token.as_deref()?))),
        )
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tokens", &self.tokens)
            .field("protect_reads", &self.protect_reads)
            .finish()
    }
}

/// What a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// Reads only (GET under /api/v1, /metrics).
    ReadOnly,
    /// Everything.
    ReadWrite,
    /// HostFactory's five calls and the operator request routes (/api/v1/requests,
    /// /api/v1/returns, /api/v1/templates), reads and writes; nothing else.
    #[serde(rename = "hostfactory")]
    HostFactory,
}

impl TokenScope {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::ReadOnly => "read-only",
            TokenScope::ReadWrite => "read-write",
            TokenScope::HostFactory => "hostfactory",
        }
    }
}

/// One named token in `server.auth.tokens`: its value in `token` (use `${VAR}`) or in the file
/// at `token_file` (read at start; refused if group or others may access it).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub scope: TokenScope,
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Calls this token may make; over it, 429 with `Retry-After`. None: unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// A token's rate limit: `per_second` calls a second on average, with up to `burst` calls at
/// once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// Bounds of a token's `rate_limit` (inclusive).
pub const MAX_RATE_PER_SECOND: f64 = 100_000.0;
pub const MAX_RATE_BURST: u32 = 100_000;

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Where the database is, when not the SQLite file `path`: `sqlite://FILE`, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` for replicas sharing one PostgreSQL database.
    /// `${VAR}` keeps the password out of the file.
    pub url: Option<String>,
    /// SQLite file, created on first start (when `url` is not set).
    pub path: String,
    pub busy_timeout_ms: u64,
    pub max_connections: u32,
    pub retention: RetentionConfig,
    /// The key that seals stored secrets (`crate::store::SecretKey`): this file, created 0600
    /// at first start, by default the database path with `.key` added. `OHFP_SECRET_KEY`
    /// (base64 of 32 bytes) takes its place when set.
    pub secret_key_file: Option<String>,
}

impl DatabaseConfig {
    /// The store this configuration names, with its key.
    pub async fn open(&self) -> anyhow::Result<crate::store::Store> {
        let location = self.location()?;
        // The key file's default sits beside the SQLite file; PostgreSQL replicas share a key
        // named by secret_key_file or OHFP_SECRET_KEY.
        let beside = match &location {
            crate::store::Location::SqliteFile(file) => file.as_str(),
            crate::store::Location::Postgres(_) => self.path.as_str(),
        };
        let key = crate::store::SecretKey::load(self.secret_key_file.as_deref(), beside)?;
        crate::store::Store::connect(&location, self.busy_timeout_ms, self.max_connections, key)
            .await
    }

    /// Where the database is (see `url`).
    pub fn location(&self) -> anyhow::Result<crate::store::Location> {
        crate::store::Location::parse(self.url.as_deref(), &self.path)
            .map_err(|e| anyhow::anyhow!("database.url: {e}"))
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            path: "data/ohfp.db".into(),
            busy_timeout_ms: 5000,
            max_connections: 8,
            retention: RetentionConfig::default(),
            secret_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Used when neither HF_LOG_LEVEL nor RUST_LOG is set.
    pub level: String,
    pub format: LogFormat,
    /// Directory of the log files (`app.YYYY-MM-DD.log`, one a day); `null` logs to stderr only.
    pub dir: Option<String>,
    /// Daily log files kept in `dir`; the oldest beyond this are deleted.
    pub max_files: usize,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            dir: Some("logs".into()),
            max_files: 7,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_weight() -> f64 {
    100.0
}

/// One strategy: a provider instance (or a composite) with its settings. The same shape serves
/// the config file (`name`, `type`, `config`) and the store; the API's
/// `strategy_name`/`provider_type`/`strategy_config` spellings are accepted as aliases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    #[serde(alias = "strategy_name")]
    pub name: String,
    #[serde(rename = "type", alias = "provider_type")]
    pub provider_type: String,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lower is preferred.
    #[serde(default)]
    pub priority: i64,
    /// Relative share under WEIGHTED_ROUND_ROBIN.
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub capabilities: CapabilityFlags,
    #[serde(default, alias = "strategy_config")]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// This strategy's own circuit-breaker settings, laid over the global `circuit_breaker`
    /// field by field, with the same bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<BreakerPatch>,
}

impl StrategySpec {
    /// The breaker settings this strategy's circuit follows: its own over `global`.
    pub fn breaker(&self, global: &BreakerConfig) -> BreakerConfig {
        self.circuit_breaker.map_or(*global, |own| own.over(global))
    }
}

/// Route segments that a strategy name may not take.
pub const RESERVED_NAMES: [&str; 5] = [
    "health",
    "metrics",
    "configuration",
    "operations",
    "selection",
];

/// Checks a strategy name; `Err` says what is wrong.
pub fn check_strategy_name(name: &str) -> Result<(), String> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty()
        || name.len() > 64
        || !valid_chars
        || !name.as_bytes()[0].is_ascii_alphanumeric()
    {
        return Err(format!(
            "'{name}' is not a valid strategy name: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        ));
    }
    if RESERVED_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "'{name}' is reserved (it collides with a fixed route); reserved names: {}",
            RESERVED_NAMES.join(", ")
        ));
    }
    Ok(())
}

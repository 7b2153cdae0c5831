//! Command line: `serve`, `check-config`, `openapi`, `backup`, and a client command per CQRS name
//! (`ohfp getProviderHealth`, `ohfp executeProviderOperation --data '{…}'`), each one HTTP call
//! to a running service, and `monitor`, the status in a terminal.

mod client;
mod monitor;
mod provider_check;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

pub use client::run_client;
pub use monitor::{MonitorArgs, run as monitor};

/// Prints one line on stdout. A reader that stops early (`| head`) closes the pipe; that ends
/// the output, it is not an error (`println!` would panic).
pub fn print_line(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}
pub use provider_check::{CheckReport, ProviderCheckArgs, check_provider, run as provider_check};

#[derive(Debug, Parser)]
#[command(
    name = "ohfp",
    version,
    about = "HostFactory provider service with a multi-provider strategy layer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Validate configuration files without starting, and print the merged result.
    CheckConfig {
        /// Files laid over each other in order, as `serve --config A --config B` would; the
        /// embedded default when none. OHFP_ENV, env overrides and ${VAR} expansion apply, as at
        /// start-up.
        files: Vec<PathBuf>,
    },
    /// Print the OpenAPI document.
    Openapi {
        /// Print the provider protocol's document instead (what an `http` strategy's service
        /// implements).
        #[arg(long)]
        provider_protocol: bool,
    },
    /// Copy the database of the service this configuration runs into FILE, consistently, while
    /// it serves. The secret key is not in the copy: back it up separately.
    Backup(BackupArgs),
    /// Check that a service at URL speaks the provider protocol (every call, idempotency,
    /// batching, unknown ids, bad input, error classes); exits 1 naming each call it gets wrong.
    ProviderCheck(ProviderCheckArgs),
    /// Watch the service in the terminal: strategies, active alerts and HostFactory requests in
    /// flight, kept up to date from the event stream; `--once` prints them once as plain text.
    Monitor(MonitorArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file; repeat to lay files over each other in order (OHFP_CONFIG takes a
    /// comma-separated list). The embedded config/default.json when absent.
    #[arg(long, env = "OHFP_CONFIG", value_delimiter = ',')]
    pub config: Vec<PathBuf>,
    /// Listen address, overriding server.bind.
    #[arg(long)]
    pub bind: Option<String>,
    /// Log format, overriding logging.format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the copy; must not exist (created 0600).
    pub file: PathBuf,
    /// The service's configuration, read as `serve` reads it (repeatable; OHFP_CONFIG, OHFP_ENV
    /// and overrides apply): the database is its database.path.
    #[arg(long, env = "OHFP_CONFIG", value_delimiter = ',')]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(v: LogFormatArg) -> Self {
        match v {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// JSON body (for GET commands: query parameters, e.g. '{"time_range_hours": 1}').
    #[arg(long, conflicts_with = "file")]
    pub data: Option<String>,
    /// Read the JSON from this file ('-' for stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Service address; several replicas' separated by commas and/or spaces, tried in order
    /// until one is reached.
    #[arg(long, env = "OHFP_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Bearer token for mutating routes.
    #[arg(long, env = "OHFP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Strategy name, for commands about one strategy (else taken from the data's
    /// strategy_name or provider_name).
    #[arg(long)]
    pub name: Option<String>,
    /// Request id, for getRequestStatus (else taken from the data's request_id) and listAudit.
    #[arg(long)]
    pub request_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// POST /api/v1/providers/operations
    #[command(name = "executeProviderOperation")]
    ExecuteProviderOperation(ClientArgs),
    /// POST /api/v1/providers/selection
    #[command(name = "selectProviderStrategy")]
    SelectProviderStrategy(ClientArgs),
    /// POST /api/v1/providers
    #[command(name = "registerProviderStrategy")]
    RegisterProviderStrategy(ClientArgs),
    /// DELETE /api/v1/providers/{name}
    #[command(name = "unregisterProviderStrategy")]
    UnregisterProviderStrategy(ClientArgs),
    /// PUT /api/v1/providers/{name}
    #[command(name = "updateProviderStrategy")]
    UpdateProviderStrategy(ClientArgs),
    /// PUT /api/v1/providers/configuration
    #[command(name = "configureProviderStrategy")]
    ConfigureProviderStrategy(ClientArgs),
    /// GET /api/v1/providers/configuration
    #[command(name = "getProviderStrategyConfig")]
    GetProviderStrategyConfig(ClientArgs),
    /// POST /api/v1/providers/{name}/health
    #[command(name = "updateProviderHealth")]
    UpdateProviderHealth(ClientArgs),
    /// GET /health: the service's liveness, exit 0 when it answers 200 (the container image's
    /// health check)
    #[command(name = "getServiceHealth")]
    GetServiceHealth(ClientArgs),
    /// GET /api/v1/providers/health, or /api/v1/providers/{name}/health with --name
    #[command(name = "getProviderHealth")]
    GetProviderHealth(ClientArgs),
    /// POST /api/v1/providers/{name}/health/check: probe one strategy now (--name NAME)
    #[command(name = "checkProviderHealth")]
    CheckProviderHealth(ClientArgs),
    /// GET /api/v1/providers (--data '{"healthy_only": true}')
    #[command(name = "listAvailableProviders")]
    ListAvailableProviders(ClientArgs),
    /// GET /api/v1/providers/metrics, or /api/v1/providers/{name}/metrics with --name
    #[command(name = "getProviderMetrics")]
    GetProviderMetrics(ClientArgs),
    /// GET /api/v1/providers/{name}/capabilities
    #[command(name = "getProviderCapabilities")]
    GetProviderCapabilities(ClientArgs),
    /// GET /api/v1/providers/{name}/parked-pools: an aws strategy's parked capacity pools
    #[command(name = "getParkedPools")]
    GetParkedPools(ClientArgs),
    /// PUT /api/v1/providers/{name}/weights/{member} (--name lb --data '{"member": "aws", "weight": 0.8}')
    #[command(name = "setStrategyWeight")]
    SetStrategyWeight(ClientArgs),
    /// PUT /api/v1/providers/{name}/circuit (--name x --data '{"mode": "open", "source": "ops"}')
    #[command(name = "setProviderCircuit")]
    SetProviderCircuit(ClientArgs),
    /// GET /api/v1/templates
    #[command(name = "getAvailableTemplates")]
    GetAvailableTemplates(ClientArgs),
    /// POST /api/v1/requests (--data '{"template_id": "web", "machine_count": 2}')
    #[command(name = "requestMachines")]
    RequestMachines(ClientArgs),
    /// GET /api/v1/requests/{id} (--request-id req-…)
    #[command(name = "getRequestStatus")]
    GetRequestStatus(ClientArgs),
    /// POST /api/v1/returns (--data '{"machine_ids": ["i-…"]}')
    #[command(name = "requestReturnMachines")]
    RequestReturnMachines(ClientArgs),
    /// GET /api/v1/returns
    #[command(name = "getReturnRequests")]
    GetReturnRequests(ClientArgs),
    /// GET /api/v1/events (--data '{"kind": "circuit_transition", "limit": 20}')
    #[command(name = "listProviderEvents")]
    ListProviderEvents(ClientArgs),
    /// GET /api/v1/audit: the audit trail of cloud-changing calls (--request-id req-…, or
    /// --data '{"since": "2026-11-30T14:00:00Z", "until": "…", "after": 120, "limit": 50}')
    #[command(name = "listAudit")]
    ListAudit(ClientArgs),
    /// Plan without doing: `ohfp plan requestMachines --template ID --count N`
    #[command(name = "plan", subcommand)]
    Plan(PlanCommand),
    /// GET /api/v1/alerts
    #[command(name = "listAlerts")]
    ListAlerts(ClientArgs),
    /// GET /api/v1/alerts/rules
    #[command(name = "getAlertRules")]
    GetAlertRules(ClientArgs),
    /// PUT /api/v1/alerts/rules (--data '{"rules": […]}')
    #[command(name = "configureAlertRules")]
    ConfigureAlertRules(ClientArgs),
}

/// What `ohfp plan` plans.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// POST /api/v1/requests/plan: which strategy, API, instance types, subnets and pools a
    /// requestMachines would use, the exact request it would send and the cloud's dry run of
    /// it. Nothing is launched.
    #[command(name = "requestMachines")]
    RequestMachines(PlanRequestArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PlanRequestArgs {
    /// The HostFactory template.
    #[arg(long)]
    pub template: String,
    /// Machines (capacity units for a weighted template).
    #[arg(long)]
    pub count: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

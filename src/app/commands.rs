//! Commands: everything that changes state or runs an operation.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::Instrument;
use utoipa::ToSchema;

use super::events::EventKind;
use super::executor::{Active, Route};
use super::registry::{StrategyRuntime, Write, already_registered};
use super::settings::{SettingsPatch, explicit_null};
use super::views::{CheckView, CircuitView, HealthCheckView, HealthView, StrategyView};
use super::{AppError, AppResult, Attempt, ConfigurationView, Engine, FieldError, StrategyEntry};
use crate::config::{MAX_TIMEOUT_SECONDS, StrategySpec, check_strategy_name};
use crate::domain::{
    CapabilityFlags, HealthState, HealthStatus, OperationType, now_millis, rfc3339,
};
use crate::monitor::health::{self, Checker};
use crate::providers::composite::LoadBalancerConfig;
use crate::providers::{self, Operation};
use crate::store::{CircuitRow, HostFactoryRepo, StrategyHoldings, StrategySource};
use crate::strategy::balancing::{WeightError, with_weight};
use crate::strategy::{BreakerPatch, CircuitMode, ModeSetting, SelectionCriteria, Verdict};

/// executeProviderOperation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operation_type": "CREATE_INSTANCES",
    "parameters": {"template_id": "web-server", "count": 2}, "strategy_override": "sim-primary"}))]
pub struct ExecuteCommand {
    /// Any case: `CREATE_INSTANCES` or `create_instances`.
    #[schema(value_type = String, example = "CREATE_INSTANCES")]
    pub operation_type: OperationType,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Map<String, Value>,
    /// Run on this strategy, skipping selection (its circuit breaker still applies).
    #[serde(default)]
    pub strategy_override: Option<String>,
    /// Laid over the configured criteria for this call only.
    #[serde(default)]
    pub selection_criteria: Option<SelectionCriteria>,
    /// About this one call: `trace_id` is echoed in `metadata.trace_id` and put on the
    /// operation's log span, `debug` logs its steps at debug level whatever the service's
    /// level. Providers do not see it.
    #[serde(default)]
    pub context: Option<OperationContext>,
    /// Per-attempt deadline in seconds (default: the configured operation_timeout).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// executeProviderOperation's `context`. Other keys are refused (422 naming
/// `context.<key>`), as everywhere in the API.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"debug": true, "trace_id": "debug-123"}))]
pub struct OperationContext {
    /// Logs this operation's steps (resolution, each call, failover) at debug level, even
    /// when the service logs at info.
    #[serde(default)]
    pub debug: bool,
    /// The caller's id for this call: 1 to 128 characters, no control characters.
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// Longest `context.trace_id`.
const MAX_TRACE_ID_CHARS: usize = 128;

impl OperationContext {
    fn problems(&self) -> Vec<FieldError> {
        match &self.trace_id {
            Some(t)
                if t.is_empty()
                    || t.chars().count() > MAX_TRACE_ID_CHARS
                    || t.chars().any(char::is_control) =>
            {
                vec![FieldError::new(
                    "context.trace_id",
                    format!(
                        "must be 1 to {MAX_TRACE_ID_CHARS} characters without control characters"
                    ),
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// The span an operation runs in: named `operation` (the log filter turns on debug level
/// inside it when `debug` is true, see `crate::telemetry`), with the caller's `trace_id`.
pub fn operation_span(kind: OperationType, context: &OperationContext) -> tracing::Span {
    tracing::info_span!(
        "operation",
        operation = %kind,
        trace_id = context.trace_id.as_deref(),
        debug = context.debug,
    )
}

/// Metadata of an operation result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultMetadata {
    pub strategy_used: String,
    pub response_time_ms: f64,
    pub attempts: usize,
    pub fallback_used: bool,
    /// `strategy_override`, `active_strategy` or `selection policy <NAME>`.
    pub chosen_by: String,
    pub attempted: Vec<Attempt>,
    /// `context.trace_id` of the request, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// `{success, data, error_message, error_code, metadata}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"success": true, "data": {"instance_ids": ["i-0a1b2c3d4e5f60718"], "count": 1},
    "error_message": null, "error_code": null, "metadata": {"strategy_used": "sim-primary",
    "response_time_ms": 12.5, "attempts": 1, "fallback_used": false, "chosen_by": "strategy_override",
    "attempted": [{"strategy": "sim-primary", "success": true, "error_code": null, "error_message": null,
    "error_kind": null, "response_time_ms": 12.1}]}}))]
pub struct OperationResult {
    pub success: bool,
    #[schema(value_type = Object)]
    pub data: Value,
    pub error_message: Option<String>,
    pub error_code: Option<String>,
    pub metadata: ResultMetadata,
}

/// selectProviderStrategy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operation_type": "CREATE_INSTANCES", "selection_criteria": {"require_healthy": true}}))]
pub struct SelectCommand {
    #[schema(value_type = String, example = "CREATE_INSTANCES")]
    pub operation_type: OperationType,
    #[serde(default)]
    pub selection_criteria: Option<SelectionCriteria>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"selected_strategy": "sim-primary", "selection_policy": "FIRST_AVAILABLE",
    "selection_reason": "lowest priority value (0)", "alternatives": ["sim-secondary"],
    "candidates": [{"strategy": "sim-primary", "eligible": true, "selected": true,
    "reason": "selected by FIRST_AVAILABLE: lowest priority value (0)"}, {"strategy": "sim-secondary",
    "eligible": true, "selected": false, "reason": "eligible, ranked lower by FIRST_AVAILABLE"}]}))]
pub struct SelectionView {
    pub selected_strategy: String,
    /// The policy that chose, or `null` when `active_strategy` decided.
    pub selection_policy: Option<String>,
    pub selection_reason: String,
    pub alternatives: Vec<String>,
    /// Every strategy and why it was or was not chosen.
    pub candidates: Vec<Verdict>,
}

/// registerProviderStrategy and updateProviderStrategy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"strategy_name": "sim-eu", "provider_type": "simulated",
    "strategy_config": {"region": "sim-eu-1", "latency_ms": [5, 20], "failure_rate": 0.0, "capacity": 100},
    "capabilities": {"instances": true, "spot_instances": false}, "priority": 2, "weight": 50}))]
pub struct RegisterCommand {
    /// Required to register; on update it may be left out but must match the path if given.
    #[serde(default)]
    pub strategy_name: Option<String>,
    /// `simulated`, or a type made of other strategies: `load_balancer`, `fallback`,
    /// `composite`.
    pub provider_type: String,
    /// The provider's settings. Load balancer: `{strategies, weights?: {member: weight},
    /// algorithm (ROUND_ROBIN, WEIGHTED_ROUND_ROBIN, LEAST_CONNECTIONS, ADAPTIVE, HASH_BASED),
    /// health_check_mode? (ACTIVE, PASSIVE, HYBRID), max_connections_per_strategy?,
    /// weight_adjustment_factor?, passive_recovery_seconds?}`. Fallback: `{primary, fallbacks,
    /// mode (IMMEDIATE, CIRCUIT_BREAKER, RETRY_THEN_FALLBACK, HEALTH_BASED), max_retries?,
    /// retry_delay_seconds?, circuit_breaker_threshold?, circuit_breaker_timeout_seconds?,
    /// enable_graceful_degradation?}`. Composite: `{strategies, mode (PARALLEL, SEQUENTIAL,
    /// REDUNDANT), aggregation_policy (MERGE_ALL, FIRST_SUCCESS, MAJORITY_WINS),
    /// min_success_count?, failure_threshold?, max_concurrent_operations?, timeout_seconds?,
    /// require_all_success?}`.
    /// Names in any case; members must be registered and must not form a cycle.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub strategy_config: Map<String, Value>,
    #[serde(default)]
    pub capabilities: Option<CapabilityFlags>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// This strategy's own circuit-breaker settings, laid over the global ones field by field
    /// (`{"failure_threshold": 10}`), with the same bounds. Left out on an update, the
    /// strategy keeps its own; `null` removes them.
    #[serde(default, deserialize_with = "explicit_null")]
    #[schema(value_type = Option<BreakerPatch>, nullable = true)]
    pub circuit_breaker: Option<Option<BreakerPatch>>,
}

/// updateProviderHealth.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"health_status": {"is_healthy": false, "status_message": "maintenance window",
    "error_details": {"ticket": "OPS-1234"}}, "source": "nagios"}))]
pub struct UpdateHealthCommand {
    /// The strategy, as the guide's body names it; when given it must match the path.
    #[serde(default)]
    pub provider_name: Option<String>,
    /// The same, under the name the other commands use.
    #[serde(default)]
    pub strategy_name: Option<String>,
    /// `error_details.retry_after` (seconds, at most 86400) holds the report against the
    /// background checks until that long after it was made.
    pub health_status: HealthReport,
    /// Who reports (recorded with the status); default `api`.
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthReport {
    pub is_healthy: bool,
    #[serde(default)]
    pub status_message: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Value>,
}

/// setProviderCircuit: an operator's decision on a strategy's circuit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"mode": "open", "source": "ops-oncall", "reason": "provider maintenance"}))]
pub struct SetCircuitCommand {
    /// `open` (also `forced_open`): reject every call until told otherwise; `closed` (also
    /// `forced_closed`): admit every call, failures not counted; `auto`: the breaker's rules
    /// decide again, from the state it is in.
    #[schema(value_type = String, example = "open")]
    pub mode: CircuitMode,
    /// Who decides (recorded with the mode and in the event); default `api`.
    #[serde(default)]
    pub source: Option<String>,
    /// Why (at most 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Longest `reason` of setProviderCircuit.
const MAX_REASON_CHARS: usize = 500;

/// A report's or a decision's `source`: trimmed, `api` when absent or blank, at most 64
/// characters.
fn source_of(given: Option<&str>) -> AppResult<String> {
    match given.map(str::trim) {
        None | Some("") => Ok("api".to_string()),
        Some(s) if s.chars().count() <= 64 => Ok(s.to_string()),
        Some(_) => Err(AppError::field("source", "must be at most 64 characters")),
    }
}

/// setStrategyWeight: one load balancer member's weight.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"weight": 0.8}))]
pub struct SetWeightCommand {
    /// Any positive number, fractions too; the other members keep theirs.
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "sim-eu", "status": "unregistered"}))]
pub struct UnregisterView {
    pub strategy_name: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigureView {
    pub status: String,
    pub configuration: ConfigurationView,
}

fn spec_field(path: &str) -> String {
    match path.split_once('.') {
        Some(("config", rest)) => format!("strategy_config.{rest}"),
        _ if path == "config" => "strategy_config".into(),
        _ if path == "type" => "provider_type".into(),
        _ if path == "name" => "strategy_name".into(),
        _ => path.to_string(),
    }
}

/// Problems with request criteria, at their path under `selection_criteria`.
fn criteria_errors(criteria: Option<&SelectionCriteria>) -> Vec<FieldError> {
    criteria
        .map(SelectionCriteria::validate)
        .unwrap_or_default()
        .into_iter()
        .map(|(p, m)| FieldError::new(format!("selection_criteria.{p}"), m))
        .collect()
}

fn validate_spec(spec: &StrategySpec, engine: &Engine) -> AppResult<()> {
    let mut errors: Vec<FieldError> = Vec::new();
    if let Err(m) = check_strategy_name(&spec.name) {
        errors.push(FieldError::new("strategy_name", m));
    }
    errors.extend(
        providers::validate_spec(spec)
            .into_iter()
            .map(|(p, m)| FieldError::new(spec_field(&p), m)),
    );
    if errors.is_empty() {
        errors.extend(
            engine
                .registry
                .check_members(spec)
                .into_iter()
                .map(|(p, m)| FieldError::new(spec_field(&p), m)),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AppError::Validation(errors))
    }
}

/// How many machine and request ids a refused unregistration names.
const NAMED_HOLDINGS: u32 = 5;

/// "3 HostFactory machines (a, b, c) and 12 open requests (d, …, h and 7 more)".
fn describe_holdings(held: &StrategyHoldings) -> String {
    let list = |ids: &[String], count: u64, one: &str, many: &str| -> Option<String> {
        let more = count.saturating_sub(ids.len() as u64);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        (count > 0).then(|| {
            let noun = if count == 1 { one } else { many };
            format!("{count} {noun} ({}{tail})", ids.join(", "))
        })
    };
    [
        list(
            &held.machines,
            held.machine_count,
            "HostFactory machine",
            "HostFactory machines",
        ),
        list(
            &held.requests,
            held.request_count,
            "open HostFactory request",
            "open HostFactory requests",
        ),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" and ")
}

impl RegisterCommand {
    fn into_spec(self, name: String, previous: Option<&StrategySpec>) -> StrategySpec {
        StrategySpec {
            name,
            provider_type: self.provider_type,
            enabled: self.enabled.or(previous.map(|p| p.enabled)).unwrap_or(true),
            priority: self.priority.or(previous.map(|p| p.priority)).unwrap_or(0),
            weight: self.weight.or(previous.map(|p| p.weight)).unwrap_or(100.0),
            capabilities: self.capabilities.unwrap_or_default(),
            config: self.strategy_config,
            circuit_breaker: self
                .circuit_breaker
                .unwrap_or_else(|| previous.and_then(|p| p.circuit_breaker)),
        }
    }
}

impl Engine {
    /// Runs `op`, read from `cmd.parameters` at the edge, as `cmd` routes it.
    pub async fn execute_operation(
        &self,
        op: Operation,
        cmd: ExecuteCommand,
    ) -> AppResult<OperationResult> {
        if let Some(t) = cmd.timeout_seconds
            && !(t.is_finite() && t > 0.0 && t <= MAX_TIMEOUT_SECONDS)
        {
            return Err(AppError::field(
                "timeout_seconds",
                format!("must be more than 0 and at most {MAX_TIMEOUT_SECONDS}"),
            ));
        }
        let context = cmd.context.unwrap_or_default();
        let mut errors = criteria_errors(cmd.selection_criteria.as_ref());
        errors.extend(context.problems());
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let route = Route {
            strategy: cmd.strategy_override,
            criteria: cmd.selection_criteria,
            timeout: cmd.timeout_seconds.map(Duration::from_secs_f64),
        };
        let span = operation_span(op.kind(), &context);
        let outcome = async {
            tracing::debug!(?route, "operation received");
            let outcome = self.execute(op, route).await;
            match &outcome {
                Ok(o) => {
                    tracing::debug!(strategy_used = %o.strategy_used, attempts = o.attempts.len(), success = o.result.is_ok(), response_time_ms = o.response_time_ms, "operation done");
                }
                Err(e) => tracing::debug!(error = %e, "operation not run"),
            }
            outcome
        }
        .instrument(span)
        .await?;
        let fallback_used = outcome.fallback_used();
        let (success, data, error_message, error_code) = match outcome.result {
            Ok(output) => {
                let mut data = output.to_json();
                let contributors = outcome
                    .attempts
                    .last()
                    .map(|a| a.contributors.clone())
                    .unwrap_or_default();
                if let Value::Object(map) = &mut data
                    && !contributors.is_empty()
                {
                    map.insert("contributing_strategies".into(), json!(contributors));
                }
                (true, data, None, None)
            }
            Err(e) => (false, Value::Null, Some(e.message), Some(e.code)),
        };
        Ok(OperationResult {
            success,
            data,
            error_message,
            error_code,
            metadata: ResultMetadata {
                strategy_used: outcome.strategy_used,
                response_time_ms: outcome.response_time_ms,
                attempts: outcome.attempts.len(),
                fallback_used,
                chosen_by: outcome.how_chosen,
                attempted: outcome.attempts,
                trace_id: context.trace_id,
            },
        })
    }

    pub fn select_strategy(&self, cmd: SelectCommand) -> AppResult<SelectionView> {
        let errors = criteria_errors(cmd.selection_criteria.as_ref());
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let active = self.executor.active();
        if let Active::Use(entry) = &active {
            return Ok(SelectionView {
                selected_strategy: entry.name().to_string(),
                selection_policy: None,
                selection_reason: "active_strategy is set; operations without an override go to it"
                    .into(),
                alternatives: Vec::new(),
                candidates: Vec::new(),
            });
        }
        let s = self
            .executor
            .select(cmd.operation_type, cmd.selection_criteria.as_ref())?;
        Ok(SelectionView {
            selected_strategy: s.selected,
            selection_policy: Some(s.policy.as_str().to_string()),
            selection_reason: format!("{}{}", s.reason, active.note()),
            alternatives: s.alternatives,
            candidates: s.verdicts,
        })
    }

    pub async fn register_strategy(&self, cmd: RegisterCommand) -> AppResult<StrategyView> {
        let name = cmd
            .strategy_name
            .clone()
            .ok_or_else(|| AppError::field("strategy_name", "is required"))?;
        let spec = cmd.into_spec(name.clone(), None);
        let _changing = self.changes.lock().await;
        validate_spec(&spec, self)?;
        if self.registry.get(&name).is_some() {
            return Err(already_registered(&name));
        }
        let runtime = Arc::new(StrategyRuntime::new(
            HealthStatus::unknown(),
            CircuitRow::default(),
        ));
        let entry = self
            .registry
            .install(spec, StrategySource::Api, runtime, None, Write::Insert)
            .await?;
        let view = StrategyView::of(&entry);
        self.schedule_first_check(&name);
        self.events.emit(
            EventKind::Registration,
            Some(&name),
            json!({"action": "registered", "provider_type": view.provider_type, "priority": view.priority}),
        );
        Ok(view)
    }

    /// Replaces config, capabilities, priority and weight; metrics, health and circuit stay.
    pub async fn update_strategy(
        &self,
        name: &str,
        cmd: RegisterCommand,
    ) -> AppResult<StrategyView> {
        let _changing = self.changes.lock().await;
        let current = self.registry.entry(name)?;
        if let Some(body_name) = &cmd.strategy_name
            && body_name != name
        {
            return Err(AppError::field(
                "strategy_name",
                format!(
                    "'{body_name}' does not match the strategy in the path ('{name}'); renaming is not supported"
                ),
            ));
        }
        let spec = cmd.into_spec(name.to_string(), Some(&current.spec));
        self.replace_spec(&current, spec, json!({"action": "updated"}))
            .await
    }

    /// Installs `spec` in place of `current`'s definition, keeping its run-time state and
    /// registration order, and emits a registration event with `detail`.
    async fn replace_spec(
        &self,
        current: &StrategyEntry,
        spec: StrategySpec,
        detail: Value,
    ) -> AppResult<StrategyView> {
        validate_spec(&spec, self)?;
        let entry = self
            .registry
            .install(
                spec,
                current.source,
                Arc::clone(&current.runtime),
                Some(current.order),
                Write::Replace,
            )
            .await?;
        let view = StrategyView::of(&entry);
        self.schedule_first_check(entry.name());
        self.events
            .emit(EventKind::Registration, Some(entry.name()), detail);
        Ok(view)
    }

    /// setStrategyWeight: sets one member's weight of a load balancer; the other members keep
    /// theirs, and the stored definition then names every member's weight.
    pub async fn set_member_weight(
        &self,
        name: &str,
        member: &str,
        cmd: SetWeightCommand,
    ) -> AppResult<StrategyView> {
        let _changing = self.changes.lock().await;
        let current = self.registry.entry(name)?;
        if current.spec.provider_type != "load_balancer" {
            return Err(AppError::Conflict(format!(
                "strategy '{name}' is a {}, not a load_balancer: only load balancer members have weights",
                current.spec.provider_type
            )));
        }
        let cfg = LoadBalancerConfig::from_spec(&current.spec.config)
            .map_err(|(p, m)| AppError::field(spec_field(&p), m))?;
        let weights = with_weight(&cfg.strategies, &cfg.weights, member, cmd.weight).map_err(
            |e| match e {
                WeightError::NotAMember => AppError::NotFound {
                    what: "load balancer member",
                    name: member.to_string(),
                },
                WeightError::Invalid(m) => AppError::field("weight", m),
            },
        )?;
        let mut spec = current.spec.clone();
        spec.config.insert("weights".into(), json!(weights));
        self.replace_spec(
            &current,
            spec,
            json!({"action": "weight_updated", "member": member, "weight": cmd.weight}),
        )
        .await
    }

    /// A new or changed strategy is checked in the background `health_check_initial_delay`
    /// after the change, so that selection does not run on "unknown" for a whole interval.
    fn schedule_first_check(&self, name: &str) {
        let delay = self.settings.effective().health_check_initial_delay;
        self.due_checks
            .schedule(name, Duration::from_secs_f64(delay));
    }

    pub async fn unregister_strategy(&self, name: &str) -> AppResult<UnregisterView> {
        let _changing = self.changes.lock().await;
        if let Err(not_found) = self.registry.entry(name) {
            // A stored strategy that start-up could not build is in the store only; deleting
            // it is how an operator clears it (it is in no setting and no composite yet).
            if !self.registry.remove_unbuilt(name).await? {
                return Err(not_found);
            }
            return Ok(self.unregistered(name));
        }
        let settings = self.settings.effective();
        if settings.active_strategy.as_deref() == Some(name) {
            return Err(AppError::Conflict(format!(
                "strategy '{name}' is the active strategy; set active_strategy to null (PUT /api/v1/providers/configuration) first"
            )));
        }
        if settings.fallback_strategies.iter().any(|f| f == name) {
            return Err(AppError::Conflict(format!(
                "strategy '{name}' is in fallback_strategies; remove it there (PUT /api/v1/providers/configuration) first"
            )));
        }
        if let Some(user) = self.registry.user_of(name) {
            return Err(AppError::Conflict(format!(
                "strategy '{name}' is a member of '{}' ({}); remove it there first",
                user.name(),
                user.spec.provider_type
            )));
        }
        // Its machines are polled and terminated through it: deleted, they could never be
        // returned. Disabling it lets it drain instead (no new work, polls and terminations go
        // on). It leaves memory before the store is read, so an acquire request that could
        // still place machines on it is either seen there or can no longer choose it.
        let entry = self
            .registry
            .withdraw(name)
            .ok_or_else(|| AppError::strategy_not_found(name))?;
        let refusal = match self.store.hf_holdings(name, NAMED_HOLDINGS).await {
            Ok(held) if held.is_empty() => self.registry.remove(name).await.err(),
            Ok(held) => Some(AppError::Conflict(format!(
                "strategy '{name}' still holds {}; disable it (PUT /api/v1/providers/{name} with \"enabled\": false) so it takes no new work, let HostFactory return its machines, then delete it",
                describe_holdings(&held)
            ))),
            Err(e) => Some(e.into()),
        };
        if let Some(e) = refusal {
            self.registry.restore(entry);
            return Err(e);
        }
        Ok(self.unregistered(name))
    }

    fn unregistered(&self, name: &str) -> UnregisterView {
        self.events.emit(
            EventKind::Registration,
            Some(name),
            json!({"action": "unregistered"}),
        );
        UnregisterView {
            strategy_name: name.to_string(),
            status: "unregistered".into(),
        }
    }

    pub async fn configure(&self, patch: SettingsPatch) -> AppResult<ConfigureView> {
        let _changing = self.changes.lock().await;
        let known = |name: &str| self.registry.get(name).is_some();
        let errors: Vec<FieldError> = patch
            .problems(&self.settings.effective(), &known)
            .into_iter()
            .map(|(path, message)| FieldError::new(path, message))
            .collect();
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        self.settings.apply(&patch).await?;
        self.events.emit(
            EventKind::Configuration,
            None,
            json!({"changed": patch.fields()}),
        );
        Ok(ConfigureView {
            status: "configured".into(),
            configuration: self.configuration(),
        })
    }

    pub fn configuration(&self) -> ConfigurationView {
        let s = self.settings.snapshot();
        ConfigurationView::new(&s.effective, &s.overrides, s.updated_at.map(rfc3339))
    }

    /// checkProviderHealth: probes the strategy now (with the health check's timeout and
    /// retries, counted in its metrics and by its breaker as a background check is) and
    /// records the result, unless an outside report holds: a mark with `retry_after` is
    /// lifted only by another report, never by a check.
    pub async fn check_health_now(&self, name: &str) -> AppResult<HealthCheckView> {
        let entry = self.registry.entry(name)?;
        let checked = health::check(self, &entry, Checker::OnDemand).await;
        Ok(HealthCheckView {
            check: CheckView::of(checked.observed, checked.recorded),
            health: HealthView::of(&entry, &self.settings.breaker()),
        })
    }

    /// An external monitor's or an operator's word on health; effective at once, until the
    /// next background check says otherwise.
    pub async fn update_health(
        &self,
        name: &str,
        cmd: UpdateHealthCommand,
    ) -> AppResult<HealthView> {
        let entry = self.registry.entry(name)?;
        for (field, given) in [
            ("provider_name", &cmd.provider_name),
            ("strategy_name", &cmd.strategy_name),
        ] {
            if let Some(given) = given
                && given != name
            {
                return Err(AppError::field(
                    field,
                    format!("'{given}' does not match the strategy in the path ('{name}')"),
                ));
            }
        }
        if let Some(v) = cmd
            .health_status
            .error_details
            .as_ref()
            .and_then(|d| d.get("retry_after"))
            && !v
                .as_f64()
                .is_some_and(|s| (0.0..=health::MAX_RETRY_AFTER_SECONDS).contains(&s))
        {
            return Err(AppError::field(
                "health_status.error_details.retry_after",
                format!(
                    "must be a number of seconds from 0 to {}, got {v}",
                    health::MAX_RETRY_AFTER_SECONDS
                ),
            ));
        }
        let source = source_of(cmd.source.as_deref())?;
        let status = HealthStatus {
            state: if cmd.health_status.is_healthy {
                HealthState::Healthy
            } else {
                HealthState::Unhealthy
            },
            status_message: cmd.health_status.status_message,
            error_details: cmd.health_status.error_details,
            source,
            checked_at: Some(now_millis()),
            response_time_ms: None,
        };
        health::record(&self.store, &self.events, &entry, status).await?;
        Ok(HealthView::of(&entry, &self.settings.breaker()))
    }

    /// setProviderCircuit: forces a strategy's circuit open or closed, or hands it back to
    /// its rules; persisted with who did it, and announced.
    pub async fn set_circuit(&self, name: &str, cmd: SetCircuitCommand) -> AppResult<CircuitView> {
        let entry = self.registry.entry(name)?;
        let source = source_of(cmd.source.as_deref())?;
        let reason = cmd
            .reason
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
        {
            return Err(AppError::field(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} characters"),
            ));
        }
        let setting = ModeSetting {
            source,
            reason,
            at: now_millis(),
        };
        self.executor
            .set_circuit_mode(&entry, cmd.mode, setting)
            .await?;
        Ok(CircuitView::of(&entry, &self.settings.breaker()))
    }
}

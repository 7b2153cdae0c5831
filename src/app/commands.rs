//! Commands: everything that changes state or runs an operation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::Instrument;
use utoipa::ToSchema;

use super::events::EventKind;
use super::executor::{Active, Route};
use super::settings::SettingsPatch;
use super::views::{CheckView, CircuitView, HealthCheckView, HealthView};
use super::{AppError, AppResult, Attempt, ConfigurationView, Engine, FieldError};
use crate::config::MAX_TIMEOUT_SECONDS;
use crate::domain::{HealthState, HealthStatus, OperationType, now_millis, rfc3339};
use crate::monitor::health::{self, Checker};
use crate::providers::Operation;
use crate::strategy::{CircuitMode, ModeSetting, SelectionCriteria, Verdict};

mod registration;

pub use registration::{RegisterCommand, SetWeightCommand, UnregisterView};

/// executeProviderOperation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operation_type": "CREATE_INSTANCES",
    "parameters": {"template_id": "web-server", "count": 2}, "strategy_override": "sim-primary"}))]
pub struct ExecuteCommand {
    /// Any case: `CREATE_INSTANCES` or `create_instances`.
    #[schema(value_type = OperationType, example = "CREATE_INSTANCES")]
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
    /// What the operation gave; null when it failed.
    #[schema(value_type = Option<Object>)]
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
    #[schema(value_type = OperationType, example = "CREATE_INSTANCES")]
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
    /// Free-form details kept with the report; `retry_after` (seconds, 0 to 86400) holds
    /// the report against the background checks for that long.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub error_details: Option<Map<String, Value>>,
}

/// The words `mode` accepts (the document's enum; read as [`CircuitMode`]).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CircuitModeInput {
    Auto,
    Open,
    ForcedOpen,
    Closed,
    ForcedClosed,
}

/// setProviderCircuit: an operator's decision on a strategy's circuit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"mode": "open", "source": "ops-oncall", "reason": "provider maintenance"}))]
pub struct SetCircuitCommand {
    /// `open` (also `forced_open`): reject every call until told otherwise; `closed` (also
    /// `forced_closed`): admit every call, failures not counted; `auto`: the breaker's rules
    /// decide again, from the state it is in.
    #[schema(value_type = CircuitModeInput, example = "open")]
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

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigureView {
    pub status: String,
    pub configuration: ConfigurationView,
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
            error_details: cmd.health_status.error_details.map(Value::Object),
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

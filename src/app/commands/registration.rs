//! Registration commands: register, update, reweigh and unregister strategies.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::app::events::EventKind;
use crate::app::registry::{StrategyRuntime, Write, already_registered};
use crate::app::settings::explicit_null;
use crate::app::views::StrategyView;
use crate::app::{AppError, AppResult, Engine, FieldError, StrategyEntry};
use crate::config::{StrategySpec, check_strategy_name};
use crate::domain::{CapabilityFlags, HealthStatus};
use crate::providers;
use crate::providers::composite::LoadBalancerConfig;
use crate::store::{CircuitRow, HostFactoryRepo, StrategyHoldings, StrategySource};
use crate::strategy::BreakerPatch;
use crate::strategy::balancing::{WeightError, with_weight};

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
    /// Share under WEIGHTED_ROUND_ROBIN: more than 0, at most 1000000.
    #[serde(default)]
    #[schema(exclusive_minimum = 0, maximum = 1000000)]
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

/// setStrategyWeight: one load balancer member's weight.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"weight": 0.8}))]
pub struct SetWeightCommand {
    /// Any positive number up to 1000000, fractions too; the other members keep theirs.
    #[schema(exclusive_minimum = 0, maximum = 1000000)]
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "sim-eu", "status": "unregistered"}))]
pub struct UnregisterView {
    pub strategy_name: String,
    pub status: String,
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

/// How many machine and request ids a refused unregistration names.
const NAMED_HOLDINGS: u32 = 5;

impl Engine {
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
}

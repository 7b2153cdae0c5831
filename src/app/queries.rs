//! Queries: read-only views of strategies, health, metrics and capabilities.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::metrics::{self, ErrorDetails, MetricTotals, RETENTION_HOURS};
use super::views::{CircuitView, HealthView, StrategyView};
use super::{AppError, AppResult, Engine};
use crate::domain::{HealthState, OperationType, now_millis, rfc3339};
use crate::providers::aws::ParkedPools;
use crate::providers::composite;
use crate::store::HealthRepo;
use crate::strategy::RecentStats;

/// listAvailableProviders.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only strategies that are enabled, not known unhealthy and whose circuit is not open.
    #[serde(default)]
    pub healthy_only: bool,
    /// Only this provider type (`simulated`, `aws`, …).
    #[serde(default)]
    pub provider_type: Option<String>,
}

/// The parked pools of one AWS strategy (in memory: a restart forgets them).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "aws-east", "cooldown_seconds": 600,
    "pools": [{"instance_type": "c5.large", "subnet": "subnet-0a1b", "code": "InsufficientInstanceCapacity",
    "until": "2026-11-30T15:10:00.000Z", "times_parked": 1}], "parked_total": 1, "failovers_total": 1}))]
pub struct ParkedPoolsView {
    pub strategy_name: String,
    #[serde(flatten)]
    pub parked: ParkedPools,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"providers": [{"strategy_name": "sim-primary", "provider_type": "simulated", "enabled": true,
    "priority": 0, "weight": 70.0, "source": "config", "strategy_config": {"region": "sim-east-1"},
    "capabilities": {"provider_type": "simulated", "supported_operations": ["CREATE_INSTANCES"],
    "features": {"simulated": true}, "limitations": {}}, "health": "healthy", "circuit_state": "closed",
    "in_flight": 0, "recent": {"samples": 0, "success_rate": null, "mean_response_ms": null},
    "registered_at": "2026-11-22T00:10:00.000Z", "updated_at": "2026-11-22T00:10:00.000Z"}], "count": 1}))]
pub struct ProviderList {
    pub providers: Vec<StrategyView>,
    pub count: usize,
}

/// getProviderHealth for one strategy.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Add the last 50 health changes.
    #[serde(default)]
    pub include_history: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthSummary {
    pub healthy: usize,
    pub unhealthy: usize,
    pub unknown: usize,
    pub open_circuits: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategies": [{"strategy_name": "sim-primary", "provider_type": "simulated",
    "is_healthy": true, "state": "healthy", "status_message": "health check passed", "error_details": null,
    "source": "health_check", "last_check": "2026-11-22T00:16:55.659Z", "response_time_ms": 12.3,
    "circuit": {"state": "closed", "consecutive_failures": 0, "opened_at": null, "last_transition_at": null,
    "next_probe_at": null, "last_reason": null, "probes_in_flight": 0}}],
    "summary": {"healthy": 1, "unhealthy": 0, "unknown": 0, "open_circuits": 0}}))]
pub struct HealthList {
    pub strategies: Vec<HealthView>,
    pub summary: HealthSummary,
}

/// getProviderMetrics.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Window ending now, 1 to 744 hours (31 days, the retention).
    #[serde(default = "default_hours")]
    #[param(minimum = 1, maximum = 744)]
    pub time_range_hours: u32,
    /// Totals per operation type as well.
    #[serde(default = "default_true")]
    pub include_operation_breakdown: bool,
    /// Error codes with counts and the latest error.
    #[serde(default)]
    pub include_error_details: bool,
}

fn default_hours() -> u32 {
    24
}
fn default_true() -> bool {
    true
}

impl Default for MetricsQuery {
    fn default() -> Self {
        Self {
            time_range_hours: default_hours(),
            include_operation_breakdown: true,
            include_error_details: false,
        }
    }
}

/// Live numbers that are not windowed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveStats {
    pub in_flight: u64,
    /// The last 100 operations, as the selection policies see them.
    pub recent: RecentStats,
    pub circuit: CircuitView,
    pub health: HealthState,
    /// Composite types: their own figures (a load balancer's per-member statistics: active
    /// connections, success rate, average response time, weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub strategy_stats: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperationMetrics {
    #[serde(flatten)]
    pub totals: MetricTotals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorDetails>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StrategyMetrics {
    pub strategy_name: String,
    /// `false` for a strategy that has metrics but is no longer registered.
    pub registered: bool,
    pub totals: MetricTotals,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorDetails>,
    /// Keyed by operation type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<BTreeMap<String, OperationMetrics>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveStats>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricsReport {
    pub time_range_hours: u32,
    pub from: String,
    pub to: String,
    pub totals: MetricTotals,
    pub strategies: Vec<StrategyMetrics>,
}

/// getProviderCapabilities.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CapabilitiesQuery {
    #[serde(default = "default_true")]
    pub include_performance_metrics: bool,
    #[serde(default = "default_true")]
    pub include_limitations: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"strategy_name": "sim-primary", "provider_type": "simulated",
    "supported_operations": ["CREATE_INSTANCES", "TERMINATE_INSTANCES", "GET_INSTANCE_STATUS", "VALIDATE_TEMPLATE",
    "GET_AVAILABLE_TEMPLATES", "HEALTH_CHECK"], "features": {"simulated": true, "instances": true,
    "region": "sim-east-1", "spot_instances": true}, "limitations": {"max_live_instances": 500,
    "max_instances_per_request": 10000}, "performance_metrics": {"configured_failure_rate": 0.0,
    "last_24h": {"count": 2, "successes": 2, "failures": 0, "success_rate": 100.0}}}))]
pub struct CapabilitiesView {
    pub strategy_name: String,
    pub provider_type: String,
    pub supported_operations: Vec<OperationType>,
    #[schema(value_type = Object)]
    pub features: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub limitations: Option<Map<String, Value>>,
    /// The provider's own figures plus what was measured (last 24 h and the recent window).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub performance_metrics: Option<Map<String, Value>>,
}

impl Engine {
    pub fn list_providers(&self, q: &ListQuery) -> ProviderList {
        let providers: Vec<StrategyView> = self
            .registry
            .all()
            .iter()
            .filter(|e| {
                q.provider_type
                    .as_ref()
                    .is_none_or(|t| &e.spec.provider_type == t)
            })
            .map(|e| StrategyView::of(e))
            .filter(|v| {
                !q.healthy_only
                    || (v.enabled
                        && v.health.is_usable()
                        && v.circuit_state != crate::strategy::CircuitState::Open)
            })
            .collect();
        ProviderList {
            count: providers.len(),
            providers,
        }
    }

    pub fn health_all(&self) -> HealthList {
        let cfg = self.settings.breaker();
        let strategies: Vec<HealthView> = self
            .registry
            .all()
            .iter()
            .map(|e| HealthView::of(e, &cfg))
            .collect();
        let count = |s: HealthState| strategies.iter().filter(|h| h.state == s).count();
        let summary = HealthSummary {
            healthy: count(HealthState::Healthy),
            unhealthy: count(HealthState::Unhealthy),
            unknown: count(HealthState::Unknown),
            open_circuits: strategies
                .iter()
                .filter(|h| h.circuit.state == crate::strategy::CircuitState::Open)
                .count(),
        };
        HealthList {
            strategies,
            summary,
        }
    }

    pub async fn health_of(&self, name: &str, q: &HealthQuery) -> AppResult<HealthView> {
        let entry = self.registry.entry(name)?;
        let mut view = HealthView::of(&entry, &self.settings.breaker());
        if q.include_history {
            view.history = Some(self.store.health_history(name, 50).await?);
        }
        Ok(view)
    }

    pub async fn metrics(&self, name: Option<&str>, q: &MetricsQuery) -> AppResult<MetricsReport> {
        if !(1..=RETENTION_HOURS).contains(&q.time_range_hours) {
            return Err(AppError::field(
                "time_range_hours",
                format!(
                    "must be from 1 to {RETENTION_HOURS} (the retention), got {}",
                    q.time_range_hours
                ),
            ));
        }
        if let Some(n) = name {
            self.registry.entry(n)?;
        }
        let now = now_millis();
        let buckets = self
            .metrics
            .buckets(&self.store, now, q.time_range_hours, name)
            .await?;
        let mut names: Vec<String> = self
            .registry
            .all()
            .iter()
            .map(|e| e.name().to_string())
            .filter(|n| name.is_none_or(|only| only == n))
            .collect();
        for b in &buckets {
            if !names.contains(&b.strategy) {
                names.push(b.strategy.clone());
            }
        }
        let cfg = self.settings.breaker();
        let strategies = names
            .into_iter()
            .map(|strategy| {
                let mine: Vec<_> = buckets.iter().filter(|b| b.strategy == strategy).collect();
                let all = metrics::merge(&mine);
                let operations = q.include_operation_breakdown.then(|| {
                    let mut ops = BTreeMap::new();
                    for op in OperationType::ALL {
                        let of_op: Vec<_> = mine
                            .iter()
                            .copied()
                            .filter(|b| b.operation == op.as_str())
                            .collect();
                        if of_op.is_empty() {
                            continue;
                        }
                        let merged = metrics::merge(&of_op);
                        ops.insert(
                            op.as_str().to_string(),
                            OperationMetrics {
                                totals: metrics::totals(&merged),
                                errors: q
                                    .include_error_details
                                    .then(|| metrics::error_details(&merged)),
                            },
                        );
                    }
                    ops
                });
                let entry = self.registry.get(&strategy);
                StrategyMetrics {
                    registered: entry.is_some(),
                    totals: metrics::totals(&all),
                    errors: q
                        .include_error_details
                        .then(|| metrics::error_details(&all)),
                    operations,
                    live: entry.map(|e| {
                        let c = e.candidate();
                        LiveStats {
                            in_flight: c.in_flight,
                            recent: c.recent,
                            circuit: CircuitView::of(&e, &cfg),
                            health: c.health,
                            strategy_stats: composite::is_composite(&e.spec.provider_type)
                                .then(|| c.capabilities.performance_metrics.clone())
                                .flatten(),
                        }
                    }),
                    strategy_name: strategy,
                }
            })
            .collect();
        let everything: Vec<_> = buckets.iter().collect();
        Ok(MetricsReport {
            time_range_hours: q.time_range_hours,
            from: rfc3339(now - i64::from(q.time_range_hours) * 3_600_000),
            to: rfc3339(now),
            totals: metrics::totals(&metrics::merge(&everything)),
            strategies,
        })
    }

    /// The capacity pools an AWS strategy skips for now, with its parking counters.
    pub fn parked_pools_of(&self, name: &str) -> AppResult<ParkedPoolsView> {
        let entry = self.registry.entry(name)?;
        let parked = entry.provider.parked_pools().ok_or_else(|| {
            AppError::Conflict(format!(
                "strategy '{name}' is of type '{}': only aws strategies park capacity pools",
                entry.spec.provider_type
            ))
        })?;
        Ok(ParkedPoolsView {
            strategy_name: name.to_string(),
            parked,
        })
    }

    pub async fn capabilities_of(
        &self,
        name: &str,
        q: &CapabilitiesQuery,
    ) -> AppResult<CapabilitiesView> {
        let entry = self.registry.entry(name)?;
        let caps = entry.capabilities();
        let performance_metrics = if q.include_performance_metrics {
            let now = now_millis();
            let buckets = self
                .metrics
                .buckets(&self.store, now, 24, Some(name))
                .await?;
            let day = metrics::totals(&metrics::merge(&buckets.iter().collect::<Vec<_>>()));
            let mut perf = caps.performance_metrics.clone().unwrap_or_default();
            perf.insert("last_24h".into(), json!(day));
            perf.insert("recent".into(), json!(entry.candidate().recent));
            Some(perf)
        } else {
            None
        };
        Ok(CapabilitiesView {
            strategy_name: name.to_string(),
            provider_type: caps.provider_type,
            supported_operations: caps.supported_operations,
            features: caps.features,
            limitations: q.include_limitations.then_some(caps.limitations),
            performance_metrics,
        })
    }
}

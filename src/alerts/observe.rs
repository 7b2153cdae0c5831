//! What each rule sees now: one observation per strategy for per-strategy conditions, one for
//! the service otherwise.

use std::collections::BTreeMap;

use crate::app::Engine;
use crate::app::metrics::{self, MetricTotals};
use crate::config::{AlertRule, Condition, Statistic};
use crate::domain::{EpochMillis, HealthState, OperationType};
use crate::hostfactory::model::RequestState;
use crate::store::{HostFactoryRepo, MetricBucket, StoreResult};
use crate::strategy::CircuitState;

/// Whether a rule's condition holds for `strategy` (None: the service), and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub strategy: Option<String>,
    pub holds: bool,
    pub message: String,
}

fn per_strategy(
    engine: &Engine,
    rule: &AlertRule,
    judge: impl Fn(&crate::app::StrategyEntry) -> (bool, String),
) -> Vec<Observation> {
    engine
        .entries()
        .iter()
        .filter(|e| rule.strategy.as_deref().is_none_or(|s| s == e.name()))
        .map(|e| {
            let (holds, message) = judge(e);
            Observation {
                strategy: Some(e.name().to_string()),
                holds,
                message,
            }
        })
        .collect()
}

fn circuit_of(e: &crate::app::StrategyEntry) -> (CircuitState, Option<String>) {
    let slot = e.runtime.breaker.lock().expect("breaker lock");
    (slot.breaker.state, slot.last_reason.clone())
}

/// Totals per strategy over the last `window_seconds` (whole minutes, as metrics are kept).
async fn window_totals(
    engine: &Engine,
    now: EpochMillis,
    window_seconds: f64,
) -> StoreResult<BTreeMap<String, MetricTotals>> {
    let minutes = (window_seconds / 60.0).ceil().max(1.0) as i64;
    let hours = u32::try_from((minutes + 59) / 60).unwrap_or(u32::MAX);
    let since = now.div_euclid(60_000) - minutes + 1;
    let buckets = engine
        .metrics_recorder()
        .buckets(engine.store(), now, hours, None)
        .await?;
    let mut by_strategy: BTreeMap<String, Vec<&MetricBucket>> = BTreeMap::new();
    for b in buckets.iter().filter(|b| b.minute >= since) {
        by_strategy.entry(b.strategy.clone()).or_default().push(b);
    }
    Ok(by_strategy
        .into_iter()
        .map(|(s, bs)| (s, metrics::totals(&metrics::merge(&bs))))
        .collect())
}

/// A condition on a strategy's metrics over a window, judged once it has `min_samples`.
struct Windowed {
    what: &'static str,
    unit: &'static str,
    threshold: f64,
    window_seconds: f64,
    min_samples: u32,
}

impl Windowed {
    async fn observe(
        &self,
        engine: &Engine,
        rule: &AlertRule,
        now: EpochMillis,
        pick: impl Fn(&MetricTotals) -> Option<f64>,
        breaks: impl Fn(f64) -> bool,
    ) -> StoreResult<Vec<Observation>> {
        let totals = window_totals(engine, now, self.window_seconds).await?;
        Ok(per_strategy(engine, rule, |e| {
            let t = totals.get(e.name());
            let count = t.map_or(0, |t| t.count);
            let value = t.and_then(&pick);
            let holds = count >= u64::from(self.min_samples) && value.is_some_and(&breaks);
            let shown = value.map_or("none".into(), |v| format!("{v:.1}{}", self.unit));
            let message = format!(
                "{} of '{}' is {shown} over {count} operation(s) in the last {} s (threshold {}{}, judged from {} operations)",
                self.what,
                e.name(),
                self.window_seconds,
                self.threshold,
                self.unit,
                self.min_samples
            );
            (holds, message)
        }))
    }
}

/// The observations of `rule` at `now`.
pub async fn observe(
    engine: &Engine,
    rule: &AlertRule,
    now: EpochMillis,
) -> StoreResult<Vec<Observation>> {
    Ok(match &rule.condition {
        Condition::StrategyUnhealthy {} => per_strategy(engine, rule, |e| {
            let health = e.runtime.health();
            (
                health.state == HealthState::Unhealthy,
                format!(
                    "strategy '{}' is {}: {}",
                    e.name(),
                    health.state.as_str(),
                    health.status_message.unwrap_or_default()
                ),
            )
        }),
        Condition::CircuitOpen {} => per_strategy(engine, rule, |e| {
            let (state, reason) = circuit_of(e);
            (
                state == CircuitState::Open,
                format!(
                    "the circuit of '{}' is {} ({})",
                    e.name(),
                    state.as_str(),
                    reason.unwrap_or_default()
                ),
            )
        }),
        Condition::SuccessRateBelow {
            percent,
            window_seconds,
            min_samples,
        } => {
            let judge = Windowed {
                what: "success rate",
                unit: "%",
                threshold: *percent,
                window_seconds: *window_seconds,
                min_samples: *min_samples,
            };
            judge
                .observe(
                    engine,
                    rule,
                    now,
                    |t| t.success_rate,
                    |rate| rate < *percent,
                )
                .await?
        }
        Condition::ResponseTimeAbove {
            statistic,
            ms,
            window_seconds,
            min_samples,
        } => {
            let judge = Windowed {
                what: match statistic {
                    Statistic::P95 => "p95 response time",
                    Statistic::Mean => "mean response time",
                },
                unit: " ms",
                threshold: *ms,
                window_seconds: *window_seconds,
                min_samples: *min_samples,
            };
            let pick = |t: &MetricTotals| match statistic {
                Statistic::P95 => t.p95_response_time_ms,
                Statistic::Mean => t.mean_response_time_ms,
            };
            judge
                .observe(engine, rule, now, pick, |value| value > *ms)
                .await?
        }
        Condition::HostfactoryRequestFailed { window_seconds } => {
            let since = now - (window_seconds * 1000.0) as EpochMillis;
            let failed: Vec<_> = engine
                .store()
                .hf_requests_in(&[RequestState::Failed])
                .await?
                .into_iter()
                .filter(|r| r.updated_at >= since)
                .collect();
            let latest = failed.iter().max_by_key(|r| r.updated_at);
            vec![Observation {
                strategy: None,
                holds: !failed.is_empty(),
                message: match latest {
                    Some(r) => format!(
                        "{} HostFactory request(s) failed in the last {window_seconds} s; the latest, {}: {}",
                        failed.len(),
                        r.request_id,
                        r.message
                    ),
                    None => format!("no HostFactory request failed in the last {window_seconds} s"),
                },
            }]
        }
        Condition::NoHealthyCreator {} => {
            let usable: Vec<String> = engine
                .entries()
                .iter()
                .filter(|e| {
                    e.spec.enabled
                        && e.capabilities().supports(OperationType::CreateInstances)
                        && e.runtime.health().state != HealthState::Unhealthy
                        && circuit_of(e).0 != CircuitState::Open
                })
                .map(|e| e.name().to_string())
                .collect();
            vec![Observation {
                strategy: None,
                holds: usable.is_empty(),
                message: if usable.is_empty() {
                    "no enabled strategy that creates instances is healthy with a closed circuit"
                        .into()
                } else {
                    format!("strategies able to create instances: {}", usable.join(", "))
                },
            }]
        }
    })
}

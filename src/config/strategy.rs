//! The strategy settings and their one validation. The configuration file (`strategy.<field>`)
//! and `PUT /api/v1/providers/configuration` (the request's field names) both accept exactly
//! the values [`StrategySettings::problems`] accepts.
//!
//! Bounds (inclusive):
//!
//! | setting                                | bounds               |
//! |----------------------------------------|----------------------|
//! | `health_check_interval`                | 1 s to 1 day         |
//! | `health_check_initial_delay`           | 0 to 1 day           |
//! | `health_check_timeout`                 | over 0 to 1 hour     |
//! | `health_check_retries`                 | 0 to 10              |
//! | `operation_timeout`                    | over 0 to 1 hour     |
//! | `circuit_breaker.failure_threshold`    | 1 to 1000            |
//! | `circuit_breaker.recovery_timeout`     | over 0 to 1 day      |
//! | `circuit_breaker.half_open_max_calls`  | 1 to 100             |
//! | `fallback_strategies`                  | at most 100, no duplicates, each a known strategy |
//! | `active_strategy`                      | a known strategy, or null |
//!
//! `selection_criteria` are checked by [`SelectionCriteria::validate`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::check_strategy_name;
use crate::strategy::{BreakerConfig, SelectionCriteria, SelectionPolicy};

/// Shortest `health_check_interval`, in seconds.
pub const MIN_HEALTH_CHECK_INTERVAL_SECONDS: f64 = 1.0;
/// Longest `health_check_interval` and `health_check_initial_delay`: one day, in seconds.
pub const MAX_INTERVAL_SECONDS: f64 = 86_400.0;
/// Longest `health_check_timeout`, `operation_timeout` (and an operation's own
/// `timeout_seconds`): one hour, in seconds.
pub const MAX_TIMEOUT_SECONDS: f64 = 3_600.0;
/// Longest `circuit_breaker.recovery_timeout`: one day, in seconds.
pub const MAX_RECOVERY_TIMEOUT_SECONDS: f64 = 86_400.0;
/// Most `health_check_retries`.
pub const MAX_HEALTH_CHECK_RETRIES: u32 = 10;
/// Largest `circuit_breaker.failure_threshold`.
pub const MAX_FAILURE_THRESHOLD: u32 = 1_000;
/// Largest `circuit_breaker.half_open_max_calls`.
pub const MAX_HALF_OPEN_MAX_CALLS: u32 = 100;
/// Most entries in `fallback_strategies`.
pub const MAX_FALLBACK_STRATEGIES: usize = 100;

/// The strategy layer's settings; `PUT /api/v1/providers/configuration` overrides them at run
/// time. Both paths accept what [`StrategySettings::problems`] accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategySettings {
    pub selection_policy: SelectionPolicy,
    pub selection_criteria: SelectionCriteria,
    /// While set, operations without an override go to this strategy (a known strategy).
    pub active_strategy: Option<String>,
    /// Tried in order when the chosen strategy fails with an error another strategy may not
    /// have. At most 100 known strategies, no duplicates.
    pub fallback_strategies: Vec<String>,
    /// Seconds between background health checks: 1 to 86400 (one day).
    pub health_check_interval: f64,
    /// Seconds after start before the first round of health checks, and after a strategy is
    /// registered or changed before its first check: 0 to 86400 (one day).
    pub health_check_initial_delay: f64,
    /// Seconds one health check may take: more than 0, at most 3600 (one hour).
    pub health_check_timeout: f64,
    /// Extra attempts of a failed health check before it counts: 0 to 10.
    pub health_check_retries: u32,
    /// Seconds one provider operation may take: more than 0, at most 3600 (one hour).
    pub operation_timeout: f64,
    /// `failure_threshold` 1 to 1000; `recovery_timeout` more than 0, at most 86400 seconds
    /// (one day); `half_open_max_calls` 1 to 100.
    pub circuit_breaker: BreakerConfig,
    /// `false`: an operation that fails is not retried down `fallback_strategies` (a
    /// `fallback` strategy still does its own job).
    pub failover_enabled: bool,
    /// `false`: operations and health checks are not recorded into the metrics (breakers,
    /// health and the selection window still see every outcome).
    pub metrics_collection_enabled: bool,
    /// Seed for the RANDOM policy (tests); random when absent.
    pub random_seed: Option<u64>,
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            selection_policy: SelectionPolicy::FirstAvailable,
            // Written out as config/default.json shows it (absent means the same).
            selection_criteria: SelectionCriteria {
                require_healthy: Some(true),
                ..SelectionCriteria::default()
            },
            active_strategy: None,
            fallback_strategies: Vec::new(),
            health_check_interval: 30.0,
            health_check_initial_delay: 0.0,
            health_check_timeout: 5.0,
            health_check_retries: 1,
            operation_timeout: 30.0,
            circuit_breaker: BreakerConfig::default(),
            failover_enabled: true,
            metrics_collection_enabled: true,
            random_seed: None,
        }
    }
}

/// Seconds within `min..=max` (`min` itself excluded when `open_min`).
fn seconds(value: f64, min: f64, open_min: bool, max: f64) -> Option<String> {
    let above_min = if open_min { value > min } else { value >= min };
    if value.is_finite() && above_min && value <= max {
        return None;
    }
    let low = if open_min {
        format!("more than {min}")
    } else {
        format!("at least {min}")
    };
    // 1e308 reads better than its 309 digits.
    let got = if value.abs() < 1e15 {
        value.to_string()
    } else {
        format!("{value:e}")
    };
    Some(format!(
        "must be {low} and at most {max} seconds, got {got}"
    ))
}

fn count(value: u32, min: u32, max: u32) -> Option<String> {
    (!(min..=max).contains(&value)).then(|| format!("must be from {min} to {max}, got {value}"))
}

fn strategy_name(name: &str, known: &dyn Fn(&str) -> bool) -> Option<String> {
    match check_strategy_name(name) {
        Err(m) => Some(m),
        Ok(()) if !known(name) => Some(format!("no strategy named '{name}'")),
        Ok(()) => None,
    }
}

/// Problems with circuit-breaker settings, as (field, message): the one check of the global
/// `circuit_breaker` and of a strategy's own.
pub fn breaker_problems(cb: &BreakerConfig) -> Vec<(&'static str, String)> {
    [
        (
            "failure_threshold",
            count(cb.failure_threshold, 1, MAX_FAILURE_THRESHOLD),
        ),
        (
            "recovery_timeout",
            seconds(cb.recovery_timeout, 0.0, true, MAX_RECOVERY_TIMEOUT_SECONDS),
        ),
        (
            "half_open_max_calls",
            count(cb.half_open_max_calls, 1, MAX_HALF_OPEN_MAX_CALLS),
        ),
    ]
    .into_iter()
    .filter_map(|(field, problem)| problem.map(|m| (field, m)))
    .collect()
}

impl StrategySettings {
    /// Every problem, as (path below `strategy`, message), in field order. `known` says whether
    /// a strategy name may be used (the file's strategies at load, the registered ones at run
    /// time). The paths are the file's names (`circuit_breaker.recovery_timeout`,
    /// `fallback_strategies[2]`, `selection_criteria.min_success_rate`).
    pub fn problems(&self, known: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |path: &str, problem: Option<String>| {
            if let Some(m) = problem {
                out.push((path.to_string(), m));
            }
        };
        if let Some(active) = &self.active_strategy {
            push("active_strategy", strategy_name(active, known));
        }
        if self.fallback_strategies.len() > MAX_FALLBACK_STRATEGIES {
            push(
                "fallback_strategies",
                Some(format!(
                    "must have at most {MAX_FALLBACK_STRATEGIES} entries, got {}",
                    self.fallback_strategies.len()
                )),
            );
        }
        let mut seen = HashSet::new();
        for (i, name) in self.fallback_strategies.iter().enumerate() {
            let problem = if seen.insert(name.as_str()) {
                strategy_name(name, known)
            } else {
                Some(format!("'{name}' is listed more than once"))
            };
            push(&format!("fallback_strategies[{i}]"), problem);
        }
        let bounded = [
            (
                "health_check_interval",
                seconds(
                    self.health_check_interval,
                    MIN_HEALTH_CHECK_INTERVAL_SECONDS,
                    false,
                    MAX_INTERVAL_SECONDS,
                ),
            ),
            (
                "health_check_initial_delay",
                seconds(
                    self.health_check_initial_delay,
                    0.0,
                    false,
                    MAX_INTERVAL_SECONDS,
                ),
            ),
            (
                "health_check_timeout",
                seconds(self.health_check_timeout, 0.0, true, MAX_TIMEOUT_SECONDS),
            ),
            (
                "health_check_retries",
                count(self.health_check_retries, 0, MAX_HEALTH_CHECK_RETRIES),
            ),
            (
                "operation_timeout",
                seconds(self.operation_timeout, 0.0, true, MAX_TIMEOUT_SECONDS),
            ),
        ];
        for (path, problem) in bounded {
            push(path, problem);
        }
        for (field, message) in breaker_problems(&self.circuit_breaker) {
            out.push((format!("circuit_breaker.{field}"), message));
        }
        for (field, message) in self.selection_criteria.validate() {
            out.push((format!("selection_criteria.{field}"), message));
        }
        out
    }
}

#[cfg(test)]
mod tests;

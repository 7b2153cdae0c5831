//! `provider_type: load_balancer`: one member per call, chosen by the balancer in
//! `crate::strategy::balancing`; statistics survive updates through the state shelf.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Combinator;
use super::{Members, check_names};
use crate::config::MAX_RECOVERY_TIMEOUT_SECONDS;
use crate::domain::{Capabilities, ProviderError, ProviderErrorKind, now_millis};
use crate::providers::{Operation, ProviderDeps, Traced, parse_config};
use crate::strategy::balancing::{
    Algorithm, Balancer, BalancerConfig, HealthCheckMode, weight_problems,
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancerConfig {
    pub strategies: Vec<String>,
    /// Member name → weight (any positive number, fractions too): every member, or none (each
    /// then weighs 1).
    #[serde(default)]
    pub weights: HashMap<String, f64>,
    #[serde(default = "default_algorithm")]
    pub algorithm: Algorithm,
    #[serde(default = "default_mode")]
    pub health_check_mode: HealthCheckMode,
    #[serde(default)]
    pub max_connections_per_strategy: Option<u64>,
    #[serde(default = "default_factor")]
    pub weight_adjustment_factor: f64,
    /// How long a member stays out after failing calls in PASSIVE and HYBRID modes.
    #[serde(default = "default_passive_recovery")]
    pub passive_recovery_seconds: f64,
}

fn default_algorithm() -> Algorithm {
    Algorithm::RoundRobin
}
fn default_mode() -> HealthCheckMode {
    HealthCheckMode::Hybrid
}
fn default_factor() -> f64 {
    0.1
}
fn default_passive_recovery() -> f64 {
    30.0
}

/// Most operations one member may have in flight through a balancer.
pub const MAX_CONNECTIONS_PER_STRATEGY: u64 = 100_000;

impl LoadBalancerConfig {
    pub fn from_spec(config: &Map<String, Value>) -> Result<Self, (String, String)> {
        let cfg: Self = parse_config(config)?;
        let bad = |field: &str, msg: String| Err((format!("config.{field}"), msg));
        if cfg.strategies.is_empty() {
            return bad(
                "strategies",
                "must name at least one member strategy".into(),
            );
        }
        check_names("strategies", &cfg.strategies)?;
        if let Some((key, message)) = weight_problems(&cfg.strategies, &cfg.weights)
            .into_iter()
            .next()
        {
            let path = if key.is_empty() {
                "weights".to_string()
            } else {
                format!("weights.{key}")
            };
            return bad(&path, message);
        }
        if cfg
            .max_connections_per_strategy
            .is_some_and(|n| !(1..=MAX_CONNECTIONS_PER_STRATEGY).contains(&n))
        {
            return bad(
                "max_connections_per_strategy",
                format!("must be from 1 to {MAX_CONNECTIONS_PER_STRATEGY}"),
            );
        }
        if !(cfg.weight_adjustment_factor > 0.0 && cfg.weight_adjustment_factor <= 1.0) {
            return bad(
                "weight_adjustment_factor",
                format!(
                    "must be more than 0 and at most 1, got {}",
                    cfg.weight_adjustment_factor
                ),
            );
        }
        let recovery = cfg.passive_recovery_seconds;
        if !(recovery > 0.0 && recovery <= MAX_RECOVERY_TIMEOUT_SECONDS) {
            return bad(
                "passive_recovery_seconds",
                format!(
                    "must be more than 0 and at most {MAX_RECOVERY_TIMEOUT_SECONDS} seconds, got {recovery:?}"
                ),
            );
        }
        Ok(cfg)
    }

    fn balancer_config(&self) -> BalancerConfig {
        BalancerConfig {
            algorithm: self.algorithm,
            health_check_mode: self.health_check_mode,
            max_connections_per_strategy: self.max_connections_per_strategy,
            weight_adjustment_factor: self.weight_adjustment_factor,
            passive_recovery_ms: (self.passive_recovery_seconds * 1000.0).round() as i64,
        }
    }
}

pub struct LoadBalancer {
    cfg: LoadBalancerConfig,
    balancer_cfg: BalancerConfig,
    members: Members,
    state: Arc<Mutex<Balancer>>,
}

impl LoadBalancer {
    pub(super) fn new(
        name: &str,
        cfg: LoadBalancerConfig,
        members: Members,
        deps: &ProviderDeps,
    ) -> Self {
        let state = deps
            .shelf
            .get_or_insert(name, || Mutex::new(Balancer::new(None)));
        let weighted: Vec<(String, f64)> = cfg
            .strategies
            .iter()
            .map(|m| (m.clone(), cfg.weights.get(m).copied().unwrap_or(1.0)))
            .collect();
        state.lock().expect("balancer lock").reconfigure(&weighted);
        Self {
            balancer_cfg: cfg.balancer_config(),
            cfg,
            members,
            state,
        }
    }
}

/// A member call counted as an active connection; ends as a failure if the call is dropped
/// before it reports (the operation timed out around it).
struct Lease<'a> {
    lb: &'a LoadBalancer,
    member: String,
    open: bool,
}

impl Lease<'_> {
    fn end(mut self, success: bool, counts: bool, response_ms: f64) {
        self.open = false;
        self.lb.state.lock().expect("balancer lock").finish(
            &self.lb.balancer_cfg,
            &self.member,
            success,
            counts,
            response_ms,
            now_millis(),
        );
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.open {
            self.lb.state.lock().expect("balancer lock").finish(
                &self.lb.balancer_cfg,
                &self.member,
                false,
                true,
                0.0,
                now_millis(),
            );
        }
    }
}

#[async_trait]
impl Combinator for LoadBalancer {
    fn capabilities(&self) -> Capabilities {
        let stats: Vec<Value> = self
            .state
            .lock()
            .expect("balancer lock")
            .stats()
            .into_iter()
            .map(|(name, s)| {
                let mut v = json!({"strategy": name});
                if let (Some(o), Ok(Value::Object(s))) =
                    (v.as_object_mut(), serde_json::to_value(s))
                {
                    o.extend(s);
                }
                v
            })
            .collect();
        let performance = json!({
            "algorithm": self.cfg.algorithm,
            "health_check_mode": self.cfg.health_check_mode,
            "max_connections_per_strategy": self.cfg.max_connections_per_strategy,
            "member_stats": stats,
        });
        self.members.capabilities(
            Map::from_iter([("load_balancing".to_string(), json!(true))]),
            performance.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn run(&self, op: &Operation) -> Traced {
        if let Some(answer) = self.members.health_answer(op, 1) {
            return answer;
        }
        let candidates: Vec<_> = self
            .members
            .candidates()
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.map(|mut c| {
                    c.order = i as u64;
                    c
                })
            })
            .collect();
        let picked = self.state.lock().expect("balancer lock").pick(
            &self.balancer_cfg,
            &candidates,
            op.kind(),
            op.affinity_key(),
            now_millis(),
        );
        let pick = match picked {
            Ok(p) => p,
            Err(verdicts) => {
                let saturated = !verdicts.is_empty()
                    && verdicts
                        .iter()
                        .all(|v| v.reason.contains("max_connections_per_strategy"));
                let reasons: Vec<String> = verdicts
                    .iter()
                    .map(|v| format!("{}: {}", v.strategy, v.reason))
                    .collect();
                let (kind, code) = if saturated {
                    (ProviderErrorKind::Throttling, "MAX_CONNECTIONS_REACHED")
                } else {
                    (ProviderErrorKind::Transient, "NO_MEMBER_AVAILABLE")
                };
                return Traced::plain(Err(ProviderError::new(
                    kind,
                    code,
                    format!("no member can take this call ({})", reasons.join("; ")),
                )));
            }
        };
        let lease = Lease {
            lb: self,
            member: pick.member.clone(),
            open: true,
        };
        let (attempt, result) = self.members.invoker.invoke(&pick.member, op, None).await;
        let counts = match &result {
            Ok(_) => true,
            Err(e) => e.kind.counts_as_failure(),
        };
        lease.end(result.is_ok(), counts, attempt.response_time_ms);
        Traced {
            result,
            members: vec![attempt],
            contributors: Vec::new(),
        }
    }
}

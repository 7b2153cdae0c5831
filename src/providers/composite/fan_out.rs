//! `provider_type: composite`: the same operation on several members (PARALLEL, SEQUENTIAL,
//! REDUNDANT), answers combined by `crate::strategy::composition::aggregate` in member order.
//! Each member call has its own deadline (`timeout_seconds`), so one slow member costs its own
//! answer only, never the others'.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Combinator, Members, check_names};
use crate::domain::{Attempt, Capabilities, ProviderError};
use crate::providers::{Operation, OperationOutput, Traced, parse_config};
use crate::strategy::composition::{
    AggregationPolicy, AggregationRules, CompositionMode, aggregate,
};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    pub strategies: Vec<String>,
    #[serde(default = "default_mode")]
    pub mode: CompositionMode,
    #[serde(default = "default_policy")]
    pub aggregation_policy: AggregationPolicy,
    #[serde(default = "default_min_success")]
    pub min_success_count: usize,
    /// Share of failed members (0–1) above which the operation fails; 1 never fails by share.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: f64,
    /// Member calls in flight at once (default: all members).
    #[serde(default)]
    pub max_concurrent_operations: Option<usize>,
    /// Deadline of each member call.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Any member failure fails the whole operation. SEQUENTIAL then stops at the first
    /// failure, and REDUNDANT waits for every member (a late failure would fail the whole).
    #[serde(default)]
    pub require_all_success: bool,
}

fn default_mode() -> CompositionMode {
    CompositionMode::Parallel
}
fn default_policy() -> AggregationPolicy {
    AggregationPolicy::MergeAll
}
fn default_min_success() -> usize {
    1
}
fn default_failure_threshold() -> f64 {
    1.0
}
fn default_timeout() -> f64 {
    30.0
}

impl CompositeConfig {
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
        if !(1..=cfg.strategies.len()).contains(&cfg.min_success_count) {
            return bad(
                "min_success_count",
                format!(
                    "must be from 1 to the number of strategies ({})",
                    cfg.strategies.len()
                ),
            );
        }
        if !(0.0..=1.0).contains(&cfg.failure_threshold) {
            return bad(
                "failure_threshold",
                format!(
                    "must be a fraction from 0 to 1, got {}",
                    cfg.failure_threshold
                ),
            );
        }
        if cfg.max_concurrent_operations == Some(0) {
            return bad("max_concurrent_operations", "must be at least 1".into());
        }
        if !(cfg.timeout_seconds.is_finite()
            && cfg.timeout_seconds > 0.0
            && cfg.timeout_seconds <= 3600.0)
        {
            return bad(
                "timeout_seconds",
                "must be more than 0 and at most 3600".into(),
            );
        }
        Ok(cfg)
    }

    fn rules(&self) -> AggregationRules {
        AggregationRules {
            policy: self.aggregation_policy,
            min_success_count: self.min_success_count,
            failure_threshold: self.failure_threshold,
            require_all_success: self.require_all_success,
        }
    }
}

pub struct Composite {
    cfg: CompositeConfig,
    members: Members,
}

type Outcome = Option<(Attempt, Result<OperationOutput, ProviderError>)>;

impl Composite {
    pub(super) fn new(cfg: CompositeConfig, members: Members) -> Self {
        Self { cfg, members }
    }

    /// Whether REDUNDANT has heard enough: `min_success_count` successes, or for MAJORITY_WINS
    /// one answer from more than half of the members that will run.
    fn enough(&self, outcomes: &[Outcome], running: usize) -> bool {
        let oks: Vec<&OperationOutput> = outcomes
            .iter()
            .flatten()
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect();
        match self.cfg.aggregation_policy {
            AggregationPolicy::MajorityWins => oks
                .iter()
                .any(|v| oks.iter().filter(|w| w == &v).count() * 2 > running),
            _ => oks.len() >= self.cfg.min_success_count,
        }
    }
}

#[async_trait]
impl Combinator for Composite {
    fn capabilities(&self) -> Capabilities {
        let performance = json!({
            "mode": self.cfg.mode,
            "aggregation_policy": self.cfg.aggregation_policy,
            "min_success_count": self.cfg.min_success_count,
            "failure_threshold": self.cfg.failure_threshold,
            "timeout_seconds": self.cfg.timeout_seconds,
            "require_all_success": self.cfg.require_all_success,
        });
        self.members.capabilities(
            Map::from_iter([("composite".to_string(), json!(true))]),
            performance.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn run(&self, op: &Operation) -> Traced {
        if let Some(answer) = self.members.health_answer(op, self.cfg.min_success_count) {
            return answer;
        }
        // Members that cannot take the operation do not run (and count neither way). A
        // disabled member takes no new work, but still polls and returns the machines it holds.
        let runnable: Vec<bool> = self
            .members
            .candidates()
            .iter()
            .map(|c| {
                c.as_ref().is_some_and(|c| {
                    (c.enabled || op.kind().tends_existing_machines())
                        && c.capabilities.supports(op.kind())
                })
            })
            .collect();
        let names = &self.members.names;
        let timeout = Some(Duration::from_secs_f64(self.cfg.timeout_seconds));
        let concurrency = self
            .cfg
            .max_concurrent_operations
            .unwrap_or(names.len())
            .max(1);
        let call = |i: usize| {
            let name = names[i].clone();
            async move { (i, self.members.invoker.invoke(&name, op, timeout).await) }
        };
        let to_run: Vec<usize> = (0..names.len()).filter(|i| runnable[*i]).collect();
        let mut outcomes: Vec<Outcome> = vec![None; names.len()];
        match self.cfg.mode {
            CompositionMode::Parallel => {
                let done: Vec<_> = futures::stream::iter(to_run.iter().copied().map(call))
                    .buffer_unordered(concurrency)
                    .collect()
                    .await;
                for (i, o) in done {
                    outcomes[i] = Some(o);
                }
            }
            CompositionMode::Sequential => {
                for &i in &to_run {
                    let (_, o) = call(i).await;
                    let ok = o.1.is_ok();
                    outcomes[i] = Some(o);
                    let decided = if ok {
                        self.cfg.aggregation_policy == AggregationPolicy::FirstSuccess
                    } else {
                        self.cfg.require_all_success
                    };
                    if decided {
                        break;
                    }
                }
            }
            CompositionMode::Redundant => {
                let mut stream = futures::stream::iter(to_run.iter().copied().map(call))
                    .buffer_unordered(concurrency);
                // Members still running when the answer is ready finish on their own (the
                // engine runs each call in its own task) and are left out of the answer.
                while let Some((i, o)) = stream.next().await {
                    let failed = o.1.is_err();
                    outcomes[i] = Some(o);
                    let decided = if self.cfg.require_all_success {
                        failed
                    } else {
                        self.enough(&outcomes, to_run.len())
                    };
                    if decided {
                        break;
                    }
                }
            }
        }
        let results: Vec<(String, Option<Result<OperationOutput, ProviderError>>)> = names
            .iter()
            .zip(&outcomes)
            .map(|(n, o)| (n.clone(), o.as_ref().map(|(_, r)| r.clone())))
            .collect();
        let members = outcomes.into_iter().flatten().map(|(a, _)| a).collect();
        match aggregate(&self.cfg.rules(), &results) {
            Ok(agg) => Traced {
                result: Ok(agg.data),
                members,
                contributors: if self.cfg.aggregation_policy == AggregationPolicy::FirstSuccess {
                    Vec::new()
                } else {
                    agg.contributors
                },
            },
            Err(e) => Traced {
                result: Err(e),
                members,
                contributors: Vec::new(),
            },
        }
    }
}

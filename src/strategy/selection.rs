//! Selection = filter, then prefer, then policy (product spec §4).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{CircuitState, RecentStats};
use crate::domain::{Capabilities, HealthState, OperationType};

/// `min_success_rate` and `max_response_time_ms` only judge a strategy with at least this many
/// recent operations, so a new strategy is not starved before it has a record.
pub const MIN_SAMPLES_FOR_CRITERIA: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SelectionPolicy {
    FirstAvailable,
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    FastestResponse,
    HighestSuccessRate,
    CapabilityBased,
    HealthBased,
    Random,
    PerformanceBased,
}

impl SelectionPolicy {
    pub const ALL: [SelectionPolicy; 10] = [
        SelectionPolicy::FirstAvailable,
        SelectionPolicy::RoundRobin,
        SelectionPolicy::WeightedRoundRobin,
        SelectionPolicy::LeastConnections,
        SelectionPolicy::FastestResponse,
        SelectionPolicy::HighestSuccessRate,
        SelectionPolicy::CapabilityBased,
        SelectionPolicy::HealthBased,
        SelectionPolicy::Random,
        SelectionPolicy::PerformanceBased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SelectionPolicy::FirstAvailable => "FIRST_AVAILABLE",
            SelectionPolicy::RoundRobin => "ROUND_ROBIN",
            SelectionPolicy::WeightedRoundRobin => "WEIGHTED_ROUND_ROBIN",
            SelectionPolicy::LeastConnections => "LEAST_CONNECTIONS",
            SelectionPolicy::FastestResponse => "FASTEST_RESPONSE",
            SelectionPolicy::HighestSuccessRate => "HIGHEST_SUCCESS_RATE",
            SelectionPolicy::CapabilityBased => "CAPABILITY_BASED",
            SelectionPolicy::HealthBased => "HEALTH_BASED",
            SelectionPolicy::Random => "RANDOM",
            SelectionPolicy::PerformanceBased => "PERFORMANCE_BASED",
        }
    }
}

impl fmt::Display for SelectionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SelectionPolicy {
    type Err = String;

    /// Any case; `LEAST_RESPONSE_TIME` is the reference's name for FASTEST_RESPONSE.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase().replace('-', "_");
        if upper == "LEAST_RESPONSE_TIME" {
            return Ok(SelectionPolicy::FastestResponse);
        }
        SelectionPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == upper)
            .ok_or_else(|| {
                format!(
                    "unknown selection policy '{s}', expected one of {}",
                    SelectionPolicy::ALL.map(|p| p.as_str()).join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for SelectionPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Largest `max_response_time_ms`: one hour.
pub const MAX_RESPONSE_TIME_MS: f64 = 3_600_000.0;

/// Criteria a caller or the configuration puts on selection. Every field is optional so that a
/// request's criteria can be laid over the configured ones field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"required_capabilities": ["instances"], "min_success_rate": 90.0,
    "max_response_time_ms": 2000.0, "require_healthy": true, "exclude_strategies": ["sim-secondary"],
    "prefer_strategies": []}))]
pub struct SelectionCriteria {
    /// Capability flags that must all be true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_capabilities: Option<Vec<String>>,
    /// Percent, 0–100; judged only after MIN_SAMPLES_FOR_CRITERIA (5) recent operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 100)]
    pub min_success_rate: Option<f64>,
    /// More than 0, at most 3600000 (one hour). Judged only after MIN_SAMPLES_FOR_CRITERIA (5)
    /// recent operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 3600000)]
    pub max_response_time_ms: Option<f64>,
    /// Drop unhealthy strategies and open circuits (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_strategies: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_strategies: Option<Vec<String>>,
}

impl SelectionCriteria {
    /// `other`'s fields win where set.
    pub fn overlay(&self, other: &SelectionCriteria) -> SelectionCriteria {
        SelectionCriteria {
            required_capabilities: other
                .required_capabilities
                .clone()
                .or_else(|| self.required_capabilities.clone()),
            min_success_rate: other.min_success_rate.or(self.min_success_rate),
            max_response_time_ms: other.max_response_time_ms.or(self.max_response_time_ms),
            require_healthy: other.require_healthy.or(self.require_healthy),
            exclude_strategies: other
                .exclude_strategies
                .clone()
                .or_else(|| self.exclude_strategies.clone()),
            prefer_strategies: other
                .prefer_strategies
                .clone()
                .or_else(|| self.prefer_strategies.clone()),
        }
    }

    pub fn require_healthy(&self) -> bool {
        self.require_healthy.unwrap_or(true)
    }

    /// Field errors as (JSON path below the criteria object, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Some(r) = self.min_success_rate
            && !(0.0..=100.0).contains(&r)
        {
            errors.push((
                "min_success_rate".into(),
                format!("must be a percentage from 0 to 100, got {r}"),
            ));
        }
        if let Some(ms) = self.max_response_time_ms
            && !(ms.is_finite() && ms > 0.0 && ms <= MAX_RESPONSE_TIME_MS)
        {
            errors.push((
                "max_response_time_ms".into(),
                format!(
                    "must be more than 0 and at most {MAX_RESPONSE_TIME_MS} milliseconds, got {ms}"
                ),
            ));
        }
        errors
    }
}

/// A strategy as the selection pipeline sees it at one instant.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    /// A disabled strategy stays registered but is never chosen.
    pub enabled: bool,
    /// Lower is preferred.
    pub priority: i64,
    pub weight: f64,
    /// Registration order.
    pub order: u64,
    pub capabilities: Capabilities,
    pub health: HealthState,
    pub health_message: Option<String>,
    pub circuit: CircuitState,
    pub in_flight: u64,
    pub recent: RecentStats,
}

/// Why a strategy was or was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Verdict {
    pub strategy: String,
    /// Passed the filter.
    pub eligible: bool,
    pub selected: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub selected: String,
    pub policy: SelectionPolicy,
    pub reason: String,
    /// The other eligible strategies, best first by the policy's ranking.
    pub alternatives: Vec<String>,
    pub verdicts: Vec<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoCandidate {
    pub policy: SelectionPolicy,
    pub verdicts: Vec<Verdict>,
}

impl fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.verdicts.is_empty() {
            return f.write_str("no provider strategies are registered");
        }
        let reasons: Vec<String> = self
            .verdicts
            .iter()
            .map(|v| format!("{}: {}", v.strategy, v.reason))
            .collect();
        write!(
            f,
            "no strategy can take this operation ({})",
            reasons.join("; ")
        )
    }
}

/// Rotation and randomness that persist between selections.
#[derive(Debug)]
pub struct SelectorState {
    last_round_robin: Option<u64>,
    smooth_weights: HashMap<String, i64>,
    rng: ChaCha8Rng,
}

impl SelectorState {
    pub fn new(seed: Option<u64>) -> Self {
        Self {
            last_round_robin: None,
            smooth_weights: HashMap::new(),
            rng: match seed {
                Some(s) => ChaCha8Rng::seed_from_u64(s),
                None => ChaCha8Rng::from_os_rng(),
            },
        }
    }
}

fn filter_reason(
    c: &Candidate,
    op: OperationType,
    criteria: &SelectionCriteria,
    policy: SelectionPolicy,
) -> Option<String> {
    if !c.enabled {
        return Some("disabled".into());
    }
    if criteria
        .exclude_strategies
        .as_ref()
        .is_some_and(|ex| ex.iter().any(|n| n == &c.name))
    {
        return Some("excluded by exclude_strategies".into());
    }
    if !c.capabilities.supports(op) {
        return Some(format!("does not support {op}"));
    }
    if let Some(missing) = criteria
        .required_capabilities
        .iter()
        .flatten()
        .find(|cap| !c.capabilities.has_feature(cap))
    {
        return Some(format!("lacks required capability '{missing}'"));
    }
    let health_required = criteria.require_healthy() || policy == SelectionPolicy::HealthBased;
    if health_required {
        if c.health == HealthState::Unhealthy {
            return Some(match &c.health_message {
                Some(m) => format!("unhealthy: {m}"),
                None => "unhealthy".into(),
            });
        }
        if c.circuit == CircuitState::Open {
            return Some("circuit open".into());
        }
    }
    if c.recent.samples >= MIN_SAMPLES_FOR_CRITERIA {
        if let (Some(min), Some(rate)) = (criteria.min_success_rate, c.recent.success_rate)
            && rate < min
        {
            return Some(format!(
                "success rate {rate:.1}% below minimum {min}% (last {} operations)",
                c.recent.samples
            ));
        }
        if let (Some(max), Some(mean)) = (criteria.max_response_time_ms, c.recent.mean_response_ms)
            && mean > max
        {
            return Some(format!(
                "mean response time {mean:.1} ms above maximum {max} ms (last {} operations)",
                c.recent.samples
            ));
        }
    }
    None
}

/// Ranking key: candidates sort ascending, the first is chosen.
fn by_priority(c: &Candidate) -> (i64, u64) {
    (c.priority, c.order)
}

/// Without measurements a strategy scores best, so that it gets measured.
fn performance_score(c: &Candidate) -> f64 {
    match (c.recent.success_rate, c.recent.mean_response_ms) {
        (Some(rate), Some(mean)) => {
            let speed = (1000.0 / mean.max(1.0)).min(1.0);
            0.7 * (rate / 100.0) + 0.3 * speed
        }
        _ => 1.0,
    }
}

/// Weights as integers (thousandths) so that smooth WRR is exact.
fn weight_units(c: &Candidate) -> i64 {
    ((c.weight * 1000.0).round() as i64).max(1)
}

/// Orders `pool` best first under `policy` and returns the reason for the first. Stateful
/// policies (round robin, smooth WRR, random) update `state` with the choice.
fn rank(pool: &mut [&Candidate], policy: SelectionPolicy, state: &mut SelectorState) -> String {
    use std::cmp::Ordering;
    let f64_cmp = |a: f64, b: f64| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    // Unmeasured (None) sorts first, as the metric policies want.
    let measured_cmp =
        |a: Option<f64>, b: Option<f64>| a.partial_cmp(&b).unwrap_or(Ordering::Equal);
    pool.sort_by_key(|c| by_priority(c));
    match policy {
        SelectionPolicy::FirstAvailable => {
            format!("lowest priority value ({})", pool[0].priority)
        }
        SelectionPolicy::RoundRobin => {
            pool.sort_by_key(|c| c.order);
            let next = state
                .last_round_robin
                .and_then(|last| pool.iter().position(|c| c.order > last))
                .unwrap_or(0);
            pool.rotate_left(next);
            state.last_round_robin = Some(pool[0].order);
            "next in rotation".into()
        }
        SelectionPolicy::WeightedRoundRobin => {
            pool.sort_by_key(|c| c.order);
            // A set of the pool's names, not a scan of the pool per kept weight: quadratic
            // at a hundred strategies and more.
            let in_pool: HashSet<&str> = pool.iter().map(|c| c.name.as_str()).collect();
            state
                .smooth_weights
                .retain(|name, _| in_pool.contains(name.as_str()));
            let total: i64 = pool.iter().map(|c| weight_units(c)).sum();
            for c in pool.iter() {
                *state.smooth_weights.entry(c.name.clone()).or_insert(0) += weight_units(c);
            }
            // Highest current weight wins; ties go to the earlier registration. Each weight is
            // looked up once, not per comparison.
            let weights = &state.smooth_weights;
            pool.sort_by_cached_key(|c| (std::cmp::Reverse(weights[&c.name]), c.order));
            *state
                .smooth_weights
                .get_mut(&pool[0].name)
                .expect("present") -= total;
            format!("smooth weighted round robin (weight {})", pool[0].weight)
        }
        SelectionPolicy::LeastConnections => {
            pool.sort_by_key(|c| (c.in_flight, c.priority, c.order));
            format!("fewest operations in flight ({})", pool[0].in_flight)
        }
        SelectionPolicy::FastestResponse => {
            // Untried strategies go first so that they get measured.
            pool.sort_by(|a, b| {
                measured_cmp(a.recent.mean_response_ms, b.recent.mean_response_ms)
                    .then(by_priority(a).cmp(&by_priority(b)))
            });
            match pool[0].recent.mean_response_ms {
                None => "no response times recorded yet; measured first".into(),
                Some(mean) => format!("lowest recent mean response time ({mean:.1} ms)"),
            }
        }
        SelectionPolicy::HighestSuccessRate => {
            pool.sort_by(|a, b| {
                (a.recent.success_rate.is_some())
                    .cmp(&b.recent.success_rate.is_some())
                    .then(measured_cmp(b.recent.success_rate, a.recent.success_rate))
                    .then(b.recent.samples.cmp(&a.recent.samples))
                    .then(by_priority(a).cmp(&by_priority(b)))
            });
            match pool[0].recent.success_rate {
                None => "no operations recorded yet; measured first".into(),
                Some(rate) => format!("highest recent success rate ({rate:.1}%)"),
            }
        }
        SelectionPolicy::PerformanceBased => {
            pool.sort_by(|a, b| {
                f64_cmp(performance_score(b), performance_score(a))
                    .then(by_priority(a).cmp(&by_priority(b)))
            });
            format!("best performance score ({:.3})", performance_score(pool[0]))
        }
        SelectionPolicy::CapabilityBased => {
            // Features counted once per strategy, not per comparison.
            pool.sort_by_cached_key(|c| {
                (
                    std::cmp::Reverse(c.capabilities.feature_count()),
                    by_priority(c),
                )
            });
            format!(
                "most capabilities ({})",
                pool[0].capabilities.feature_count()
            )
        }
        SelectionPolicy::HealthBased => {
            let health_rank = |c: &Candidate| match (c.health, c.circuit) {
                (HealthState::Healthy, CircuitState::Closed) => 0,
                (HealthState::Healthy, _) => 1,
                _ => 2,
            };
            pool.sort_by_key(|c| (health_rank(c), c.priority, c.order));
            format!("{} with lowest priority value", pool[0].health.as_str())
        }
        SelectionPolicy::Random => {
            let i = state.rng.random_range(0..pool.len());
            pool.swap(0, i);
            "uniform random choice".into()
        }
    }
}

/// Runs the pipeline over `candidates` (any order).
pub fn select(
    candidates: &[Candidate],
    op: OperationType,
    criteria: &SelectionCriteria,
    policy: SelectionPolicy,
    state: &mut SelectorState,
) -> Result<Selection, NoCandidate> {
    let mut verdicts: Vec<Verdict> = candidates
        .iter()
        .map(|c| {
            let dropped = filter_reason(c, op, criteria, policy);
            Verdict {
                strategy: c.name.clone(),
                eligible: dropped.is_none(),
                selected: false,
                reason: dropped.unwrap_or_default(),
            }
        })
        .collect();
    let eligible: Vec<&Candidate> = candidates
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.eligible)
        .map(|(c, _)| c)
        .collect();
    if eligible.is_empty() {
        return Err(NoCandidate { policy, verdicts });
    }
    let preferred: Vec<&Candidate> = eligible
        .iter()
        .copied()
        .filter(|c| {
            criteria
                .prefer_strategies
                .as_ref()
                .is_some_and(|p| p.contains(&c.name))
        })
        .collect();
    let restricted_to_preferred = !preferred.is_empty();
    let mut pool = if restricted_to_preferred {
        preferred
    } else {
        eligible
    };
    let reason = rank(&mut pool, policy, state);
    let selected = pool[0].name.clone();
    for v in verdicts.iter_mut().filter(|v| v.eligible) {
        if v.strategy == selected {
            v.selected = true;
            v.reason = format!("selected by {policy}: {reason}");
        } else if restricted_to_preferred && !pool.iter().any(|c| c.name == v.strategy) {
            v.reason = "eligible, but not in prefer_strategies".into();
        } else {
            v.reason = format!("eligible, ranked lower by {policy}");
        }
    }
    Ok(Selection {
        selected,
        policy,
        reason,
        alternatives: pool[1..].iter().map(|c| c.name.clone()).collect(),
        verdicts,
    })
}

#[cfg(test)]
mod tests;

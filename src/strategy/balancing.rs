//! Member choice of a `load_balancer` strategy, as pure state: algorithms, per-member
//! statistics, passive health and adaptive weights. The caller passes `now` and the members
//! as [`Candidate`]s (health and circuit from the engine's cache); this module reuses the
//! selection pipeline for filtering, rotation, smooth WRR and least connections.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::OutcomeWindow;
use super::selection::{
    self, Candidate, SelectionCriteria, SelectionPolicy, SelectorState, Verdict,
};
use crate::domain::named_enum;
use crate::domain::{EpochMillis, HealthState, OperationType};

named_enum! {
    pub enum Algorithm ("load balancing algorithm") {
        RoundRobin => "ROUND_ROBIN",
        WeightedRoundRobin => "WEIGHTED_ROUND_ROBIN",
        LeastConnections => "LEAST_CONNECTIONS",
        Adaptive => "ADAPTIVE",
        HashBased => "HASH_BASED",
    }
}

named_enum! {
    /// Which health signal takes a member out of rotation (open circuits always do).
    pub enum HealthCheckMode ("health check mode") {
        /// Cached results of the background HEALTH_CHECK probes (and updateProviderHealth).
        Active => "ACTIVE",
        /// Outcomes of real calls through this load balancer.
        Passive => "PASSIVE",
        /// Both.
        Hybrid => "HYBRID",
    }
}

/// Consecutive failed calls through the balancer that take a member out (PASSIVE, HYBRID).
pub const PASSIVE_UNHEALTHY_AFTER: u32 = 3;
/// An adaptive weight never drops below this share of the configured weight, so a member that
/// did badly still gets some calls and can show it has recovered.
pub const ADAPTIVE_MIN_SHARE: f64 = 0.05;

#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    pub algorithm: Algorithm,
    pub health_check_mode: HealthCheckMode,
    /// Calls through this balancer in flight on one member at most.
    pub max_connections_per_strategy: Option<u64>,
    /// How far (0–1] an adaptive weight moves toward its target after each call.
    pub weight_adjustment_factor: f64,
    /// How long a passively failed member stays out before it gets calls again.
    pub passive_recovery_ms: EpochMillis,
}

/// Statistics of one member, counting calls through this balancer only.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStats {
    pub weight: f64,
    /// The weight the algorithm uses: the configured one, or under ADAPTIVE the adjusted one.
    pub effective_weight: f64,
    pub active_connections: u64,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    /// Percent over the recent window; `null` before the first call.
    pub success_rate: Option<f64>,
    /// Mean over the recent window; `null` before the first call.
    pub average_response_time_ms: Option<f64>,
    pub consecutive_failures: u32,
    /// Set while the member is out of rotation after PASSIVE_UNHEALTHY_AFTER failures.
    pub passive_down_until: Option<EpochMillis>,
    #[serde(skip)]
    window: OutcomeWindow,
}

impl MemberStats {
    fn new(weight: f64) -> Self {
        Self {
            weight,
            effective_weight: weight,
            active_connections: 0,
            total_requests: 0,
            successful_requests: 0,
            failed_requests: 0,
            success_rate: None,
            average_response_time_ms: None,
            consecutive_failures: 0,
            passive_down_until: None,
            window: OutcomeWindow::default(),
        }
    }
}

/// Whether `weight` can be a member's weight: a positive finite number.
/// Largest weight: a share of a million to one is beyond any real split, and larger sums lose
/// the precision weighted round robin counts with.
pub const MAX_WEIGHT: f64 = 1_000_000.0;

/// Why `weight` is not a weight (more than 0, at most [`MAX_WEIGHT`]), if it is not.
pub fn weight_problem(weight: f64) -> Option<String> {
    (!(weight > 0.0 && weight <= MAX_WEIGHT))
        .then(|| format!("must be more than 0 and at most {MAX_WEIGHT}, got {weight:?}"))
}

/// Problems with a load balancer's `weights` over its `members`, as (path below `weights`,
/// message). Each weight belongs to a member and is a positive number; the map is empty (every
/// member weighs 1) or names every member. A partial map is refused rather than completed: a
/// weight filled in by the service (1, or the one before) would be one the caller never wrote.
pub fn weight_problems(
    members: &[String],
    weights: &HashMap<String, f64>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let sorted: BTreeMap<_, _> = weights.iter().collect();
    for (name, w) in sorted {
        if !members.contains(name) {
            out.push((name.clone(), format!("'{name}' is not in strategies")));
        } else if let Some(m) = weight_problem(*w) {
            out.push((name.clone(), m));
        }
    }
    let missing: Vec<&str> = members
        .iter()
        .filter(|m| !weights.contains_key(*m))
        .map(String::as_str)
        .collect();
    if !weights.is_empty() && !missing.is_empty() {
        out.push((
            String::new(),
            format!(
                "names some members but not {}: give every member a weight, or none (each then weighs 1); to change one member's weight use PUT /api/v1/providers/{{name}}/weights/{{member}}",
                missing.join(", ")
            ),
        ));
    }
    out
}

/// Why a member's weight cannot be set.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightError {
    NotAMember,
    Invalid(String),
}

/// Every member's weight after setting `member`'s to `weight`: the others keep theirs (1 each
/// when the map was empty), so the result always names every member.
pub fn with_weight(
    members: &[String],
    weights: &HashMap<String, f64>,
    member: &str,
    weight: f64,
) -> Result<BTreeMap<String, f64>, WeightError> {
    if !members.iter().any(|m| m == member) {
        return Err(WeightError::NotAMember);
    }
    if let Some(m) = weight_problem(weight) {
        return Err(WeightError::Invalid(m));
    }
    Ok(members
        .iter()
        .map(|m| {
            let w = if m == member {
                weight
            } else {
                weights.get(m).copied().unwrap_or(1.0)
            };
            (m.clone(), w)
        })
        .collect())
}

/// The member chosen for one call, already counted as an active connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub member: String,
    pub reason: String,
}

/// State of one load balancer; survives reconfiguration (keyed by member name).
#[derive(Debug)]
pub struct Balancer {
    members: Vec<String>,
    stats: HashMap<String, MemberStats>,
    selector: SelectorState,
}

/// FNV-1a, 64 bits: the same on every platform and in every process, unlike the standard
/// library's randomly seeded hasher.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Rendezvous hashing: each key goes to the member with the highest hash of (key, member), so
/// a member leaving moves only its own keys.
fn rendezvous<'a>(key: &str, members: &[&'a str]) -> Option<&'a str> {
    members.iter().copied().max_by_key(|m| {
        let mut bytes = Vec::with_capacity(key.len() + m.len() + 1);
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(m.as_bytes());
        stable_hash(&bytes)
    })
}

impl Balancer {
    pub fn new(seed: Option<u64>) -> Self {
        Self {
            members: Vec::new(),
            stats: HashMap::new(),
            selector: SelectorState::new(seed),
        }
    }

    /// Sets members and weights; members that stay keep their statistics, a changed weight
    /// resets the adaptive weight to it.
    pub fn reconfigure(&mut self, members: &[(String, f64)]) {
        self.members = members.iter().map(|(n, _)| n.clone()).collect();
        self.stats
            .retain(|n, _| members.iter().any(|(m, _)| m == n));
        for (name, weight) in members {
            let s = self
                .stats
                .entry(name.clone())
                .or_insert_with(|| MemberStats::new(*weight));
            if s.weight != *weight {
                s.weight = *weight;
                s.effective_weight = *weight;
            }
        }
    }

    /// Statistics in member order.
    pub fn stats(&self) -> Vec<(String, MemberStats)> {
        self.members
            .iter()
            .filter_map(|m| self.stats.get(m).map(|s| (m.clone(), s.clone())))
            .collect()
    }

    /// Chooses a member for `op` among `candidates` (the members, in member order, as the
    /// engine sees them) and counts it active. `Err` lists every member and why it was out.
    pub fn pick(
        &mut self,
        cfg: &BalancerConfig,
        candidates: &[Candidate],
        op: OperationType,
        key: Option<&str>,
        now: EpochMillis,
    ) -> Result<Pick, Vec<Verdict>> {
        let mut held_out: Vec<(String, String)> = Vec::new();
        let mut views = Vec::with_capacity(candidates.len());
        for c in candidates {
            let Some(s) = self.stats.get(&c.name) else {
                continue;
            };
            if let Some(max) = cfg.max_connections_per_strategy
                && s.active_connections >= max
            {
                held_out.push((
                    c.name.clone(),
                    format!("at max_connections_per_strategy ({max})"),
                ));
            }
            if cfg.health_check_mode != HealthCheckMode::Active
                && s.passive_down_until.is_some_and(|until| until > now)
            {
                held_out.push((
                    c.name.clone(),
                    format!(
                        "{} consecutive failed calls through this load balancer",
                        s.consecutive_failures
                    ),
                ));
            }
            let mut v = c.clone();
            v.in_flight = s.active_connections;
            v.weight = match cfg.algorithm {
                Algorithm::Adaptive => s.effective_weight,
                _ => s.weight,
            };
            if cfg.health_check_mode == HealthCheckMode::Passive
                && v.health == HealthState::Unhealthy
            {
                // Probe results are not this mode's signal; the circuit still is.
                v.health = HealthState::Unknown;
            }
            views.push(v);
        }
        let criteria = SelectionCriteria {
            require_healthy: Some(true),
            exclude_strategies: Some(held_out.iter().map(|(n, _)| n.clone()).collect()),
            ..SelectionCriteria::default()
        };
        let policy = match cfg.algorithm {
            Algorithm::RoundRobin => SelectionPolicy::RoundRobin,
            Algorithm::WeightedRoundRobin | Algorithm::Adaptive => {
                SelectionPolicy::WeightedRoundRobin
            }
            Algorithm::LeastConnections => SelectionPolicy::LeastConnections,
            Algorithm::HashBased if key.is_some() => SelectionPolicy::FirstAvailable,
            Algorithm::HashBased => SelectionPolicy::RoundRobin,
        };
        let chosen = selection::select(&views, op, &criteria, policy, &mut self.selector);
        let (member, reason) = match chosen {
            Err(none) => {
                let mut verdicts = none.verdicts;
                for v in &mut verdicts {
                    if let Some((_, why)) = held_out.iter().find(|(n, _)| n == &v.strategy) {
                        v.reason.clone_from(why);
                    }
                }
                return Err(verdicts);
            }
            Ok(sel) => match (cfg.algorithm, key) {
                (Algorithm::HashBased, Some(key)) => {
                    let mut eligible = vec![sel.selected.as_str()];
                    eligible.extend(sel.alternatives.iter().map(String::as_str));
                    let m = rendezvous(key, &eligible).expect("at least one eligible member");
                    (m.to_string(), format!("stable hash of request key '{key}'"))
                }
                (Algorithm::HashBased, None) => (
                    sel.selected,
                    "no request key (request_id or template_id); next in rotation".into(),
                ),
                _ => (sel.selected, sel.reason),
            },
        };
        let s = self.stats.get_mut(&member).expect("member has stats");
        s.active_connections += 1;
        s.total_requests += 1;
        Ok(Pick { member, reason })
    }

    /// Records the end of a call picked earlier. `counts` is false for the caller's own
    /// mistakes (validation errors), which say nothing of the member.
    pub fn finish(
        &mut self,
        cfg: &BalancerConfig,
        member: &str,
        success: bool,
        counts: bool,
        response_ms: f64,
        now: EpochMillis,
    ) {
        let Some(s) = self.stats.get_mut(member) else {
            return;
        };
        s.active_connections = s.active_connections.saturating_sub(1);
        if !counts {
            s.total_requests = s.total_requests.saturating_sub(1);
            return;
        }
        s.window.record(success, response_ms);
        let recent = s.window.stats();
        s.success_rate = recent.success_rate;
        s.average_response_time_ms = recent.mean_response_ms;
        if success {
            s.successful_requests += 1;
            s.consecutive_failures = 0;
            s.passive_down_until = None;
        } else {
            s.failed_requests += 1;
            s.consecutive_failures += 1;
            if s.consecutive_failures >= PASSIVE_UNHEALTHY_AFTER {
                s.passive_down_until = Some(now + cfg.passive_recovery_ms);
            }
        }
        if cfg.algorithm == Algorithm::Adaptive {
            self.adapt(cfg.weight_adjustment_factor);
        }
    }

    /// Moves every effective weight toward `weight × success rate × relative speed`, where
    /// relative speed is the fastest member's mean latency over this member's (1 without data).
    fn adapt(&mut self, factor: f64) {
        let fastest = self
            .stats
            .values()
            .filter_map(|s| s.average_response_time_ms)
            .fold(f64::INFINITY, f64::min)
            .max(1.0);
        for s in self.stats.values_mut() {
            let success = s.success_rate.map_or(1.0, |r| r / 100.0);
            let speed = s
                .average_response_time_ms
                .map_or(1.0, |ms| (fastest / ms.max(1.0)).min(1.0));
            let target = (s.weight * success * speed).max(s.weight * ADAPTIVE_MIN_SHARE);
            s.effective_weight += factor * (target - s.effective_weight);
        }
    }
}

#[cfg(test)]
mod tests;

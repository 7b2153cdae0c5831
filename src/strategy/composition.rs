//! Decisions of a `composite` strategy as pure logic: modes, aggregation of member outcomes
//! (always in member order, never completion order), and the cycle check that keeps nested
//! strategies finite.

use crate::domain::{ProviderError, ProviderErrorKind, named_enum};

named_enum! {
    pub enum CompositionMode ("composition mode") {
        /// Every member at once (at most max_concurrent_operations at a time).
        Parallel => "PARALLEL",
        /// One member after the other, in member order; FIRST_SUCCESS stops at the first success.
        Sequential => "SEQUENTIAL",
        /// Every member at once; the answer is ready as soon as min_success_count members have
        /// succeeded, and members still running are not waited for.
        Redundant => "REDUNDANT",
    }
}

named_enum! {
    pub enum AggregationPolicy ("aggregation policy") {
        /// Successful answers merged in member order.
        MergeAll => "MERGE_ALL",
        /// The first successful answer in member order.
        FirstSuccess => "FIRST_SUCCESS",
        /// The answer more than half of the members that ran gave.
        MajorityWins => "MAJORITY_WINS",
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregationRules {
    pub policy: AggregationPolicy,
    pub min_success_count: usize,
    /// The share (0–1) of failed members above which the whole operation fails.
    pub failure_threshold: f64,
    /// Any member failure fails the whole operation (members that did not run count
    /// neither way).
    pub require_all_success: bool,
}

/// Answers that MERGE_ALL can combine: `merge` folds a later member's answer into an
/// earlier one (lists joined, counts added, the earlier member's single values kept).
pub trait Merge {
    fn merge(&mut self, later: &Self);
}

/// The combined answer and the members whose answers it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated<T> {
    pub data: T,
    pub contributors: Vec<String>,
}

/// The error kind of a combined failure: the members' kind when they agree, else Internal.
fn common_kind<'a>(errors: impl Iterator<Item = &'a ProviderError>) -> ProviderErrorKind {
    let kinds: Vec<ProviderErrorKind> = errors.map(|e| e.kind).collect();
    match kinds.first() {
        Some(k) if kinds.iter().all(|x| x == k) => *k,
        _ => ProviderErrorKind::Internal,
    }
}

/// Combines member outcomes given in member order; `None` marks a member that did not run (or
/// was not waited for), which counts neither as success nor as failure.
pub fn aggregate<T: Merge + PartialEq + Clone>(
    rules: &AggregationRules,
    outcomes: &[(String, Option<Result<T, ProviderError>>)],
) -> Result<Aggregated<T>, ProviderError> {
    let ran: Vec<(&str, &Result<T, ProviderError>)> = outcomes
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n.as_str(), r)))
        .collect();
    let failures: Vec<(&str, &ProviderError)> = ran
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| (*n, e)))
        .collect();
    let successes: Vec<(&str, &T)> = ran
        .iter()
        .filter_map(|(n, r)| r.as_ref().ok().map(|v| (*n, v)))
        .collect();
    let describe = || {
        failures
            .iter()
            .map(|(n, e)| format!("{n}: {}", e.code))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ran.is_empty() {
        return Err(ProviderError::new(
            ProviderErrorKind::Unsupported,
            "NO_MEMBER_RAN",
            "no member of the composite could take this operation",
        ));
    }
    if rules.require_all_success && !failures.is_empty() {
        return Err(ProviderError::new(
            common_kind(failures.iter().map(|(_, e)| *e)),
            "MEMBER_FAILED",
            format!(
                "{} of {} members failed and require_all_success is set ({})",
                failures.len(),
                ran.len(),
                describe()
            ),
        ));
    }
    let failure_rate = failures.len() as f64 / ran.len() as f64;
    if failure_rate > rules.failure_threshold {
        return Err(ProviderError::new(
            common_kind(failures.iter().map(|(_, e)| *e)),
            "FAILURE_THRESHOLD_EXCEEDED",
            format!(
                "{} of {} members failed, above failure_threshold {} ({})",
                failures.len(),
                ran.len(),
                rules.failure_threshold,
                describe()
            ),
        ));
    }
    if successes.len() < rules.min_success_count {
        return Err(ProviderError::new(
            common_kind(failures.iter().map(|(_, e)| *e)),
            "INSUFFICIENT_SUCCESS",
            format!(
                "{} member(s) succeeded, min_success_count is {} ({})",
                successes.len(),
                rules.min_success_count,
                describe()
            ),
        ));
    }
    match rules.policy {
        AggregationPolicy::FirstSuccess => {
            let (name, data) = successes[0];
            Ok(Aggregated {
                data: data.clone(),
                contributors: vec![name.to_string()],
            })
        }
        AggregationPolicy::MergeAll => {
            let mut data = successes[0].1.clone();
            for (_, later) in &successes[1..] {
                data.merge(later);
            }
            Ok(Aggregated {
                data,
                contributors: successes.iter().map(|(n, _)| n.to_string()).collect(),
            })
        }
        AggregationPolicy::MajorityWins => {
            // Groups of equal answers, in order of first appearance.
            let mut groups: Vec<(&T, Vec<&str>)> = Vec::new();
            for (name, v) in &successes {
                match groups.iter_mut().find(|(g, _)| g == v) {
                    Some((_, names)) => names.push(name),
                    None => groups.push((v, vec![name])),
                }
            }
            match groups.iter().find(|(_, names)| names.len() * 2 > ran.len()) {
                Some((v, names)) => Ok(Aggregated {
                    data: (*v).clone(),
                    contributors: names.iter().map(|n| n.to_string()).collect(),
                }),
                None => Err(ProviderError::new(
                    ProviderErrorKind::Internal,
                    "NO_MAJORITY",
                    format!(
                        "no answer was given by more than half of the {} members that ran ({} distinct answers)",
                        ran.len(),
                        groups.len()
                    ),
                )),
            }
        }
    }
}

/// A path `start → … → start` through `members_of`, if there is one.
pub fn find_cycle(start: &str, members_of: &dyn Fn(&str) -> Vec<String>) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        members_of: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        seen: &mut Vec<String>,
    ) -> bool {
        for m in members_of(at) {
            path.push(m.clone());
            if m == start {
                return true;
            }
            if !seen.contains(&m) {
                seen.push(m.clone());
                if walk(&m, start, members_of, path, seen) {
                    return true;
                }
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(start, start, members_of, &mut path, &mut Vec::new()).then_some(path)
}

#[cfg(test)]
mod tests;

//! Decisions of a `composite` strategy as pure logic: modes, aggregation of member outcomes
//! (always in member order, never completion order), and the cycle check that keeps nested
//! strategies finite.

use serde_json::{Map, Value};

use crate::domain::named_enum;
use crate::domain::{ProviderError, ProviderErrorKind};

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
}

/// The combined answer and the members whose answers it is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregated {
    pub data: Value,
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
pub fn aggregate(
    rules: &AggregationRules,
    outcomes: &[(String, Option<Result<Value, ProviderError>>)],
) -> Result<Aggregated, ProviderError> {
    let ran: Vec<(&str, &Result<Value, ProviderError>)> = outcomes
        .iter()
        .filter_map(|(n, r)| r.as_ref().map(|r| (n.as_str(), r)))
        .collect();
    let failures: Vec<(&str, &ProviderError)> = ran
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| (*n, e)))
        .collect();
    let successes: Vec<(&str, &Value)> = ran
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
            let data = if successes.iter().all(|(_, v)| v.is_object()) {
                let mut merged = Map::new();
                for (_, v) in &successes {
                    merge_into(&mut merged, v.as_object().expect("checked"));
                }
                Value::Object(merged)
            } else {
                let results = successes.iter().map(|(_, v)| (*v).clone()).collect();
                Value::Object(Map::from_iter([(
                    "results".to_string(),
                    Value::Array(results),
                )]))
            };
            Ok(Aggregated {
                data,
                contributors: successes.iter().map(|(n, _)| n.to_string()).collect(),
            })
        }
        AggregationPolicy::MajorityWins => {
            // Groups of equal answers, in order of first appearance.
            let mut groups: Vec<(&Value, Vec<&str>)> = Vec::new();
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

/// Merges `from` into `into`: lists are concatenated, numbers added, objects merged key by
/// key; any other value already present is kept (the earlier member's).
pub fn merge_into(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (None, _) => {
                into.insert(k.clone(), v.clone());
            }
            (Some(Value::Array(a)), Value::Array(b)) => a.extend(b.iter().cloned()),
            (Some(Value::Object(a)), Value::Object(b)) => merge_into(a, b),
            (Some(Value::Number(a)), Value::Number(b)) => {
                let sum = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => x.checked_add(y).map(Value::from),
                    _ => None,
                };
                let sum = sum.or_else(|| {
                    let f = a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0);
                    serde_json::Number::from_f64(f).map(Value::Number)
                });
                if let Some(s) = sum {
                    into.insert(k.clone(), s);
                }
            }
            (Some(_), _) => {}
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

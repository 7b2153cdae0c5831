//! Alert rules and webhooks (`alerts` in the file; the rules also through
//! `PUT /api/v1/alerts/rules`). Checked by one validation ([`problems`]) for both.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::named_enum;

named_enum! {
    /// The kind of a [`Condition`], as stored with an alert.
    pub enum ConditionKind ("alert condition") {
        StrategyUnhealthy => "strategy_unhealthy",
        SuccessRateBelow => "success_rate_below",
        ResponseTimeAbove => "response_time_above",
        CircuitOpen => "circuit_open",
        HostfactoryRequestFailed => "hostfactory_request_failed",
        NoHealthyCreator => "no_healthy_creator",
    }
}

/// Longest wait a rule may ask for (one day).
pub const MAX_RULE_SECONDS: f64 = 86_400.0;
pub const MAX_RULES: usize = 100;
const MAX_NAME_CHARS: usize = 100;

/// What an alert watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// A strategy's cached health is unhealthy (with `for_seconds`: for that long).
    StrategyUnhealthy {},
    /// A strategy's success rate over the last `window_seconds` is under `percent`, once it has
    /// at least `min_samples` operations there.
    SuccessRateBelow {
        percent: f64,
        window_seconds: f64,
        min_samples: u32,
    },
    /// A strategy's p95 or mean response time over the last `window_seconds` is over `ms`,
    /// once it has at least `min_samples` operations there.
    ResponseTimeAbove {
        statistic: Statistic,
        ms: f64,
        window_seconds: f64,
        min_samples: u32,
    },
    /// A strategy's circuit is open.
    CircuitOpen {},
    /// A HostFactory request failed within the last `window_seconds`.
    HostfactoryRequestFailed { window_seconds: f64 },
    /// No enabled strategy that supports CREATE_INSTANCES is usable (not unhealthy, circuit
    /// not open): selection would find none.
    NoHealthyCreator {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    P95,
    Mean,
}

impl Condition {
    /// Whether the condition is judged per strategy (else once for the service).
    pub fn per_strategy(&self) -> bool {
        !matches!(
            self,
            Condition::HostfactoryRequestFailed { .. } | Condition::NoHealthyCreator {}
        )
    }

    pub fn kind(&self) -> ConditionKind {
        match self {
            Condition::StrategyUnhealthy {} => ConditionKind::StrategyUnhealthy,
            Condition::SuccessRateBelow { .. } => ConditionKind::SuccessRateBelow,
            Condition::ResponseTimeAbove { .. } => ConditionKind::ResponseTimeAbove,
            Condition::CircuitOpen {} => ConditionKind::CircuitOpen,
            Condition::HostfactoryRequestFailed { .. } => ConditionKind::HostfactoryRequestFailed,
            Condition::NoHealthyCreator {} => ConditionKind::NoHealthyCreator,
        }
    }
}

/// One rule: raised once its condition has held for `for_seconds`, cleared once it has not
/// held for `clear_seconds` (so a value hovering at the threshold does not flap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "low-success-rate", "condition": {"type": "success_rate_below",
    "percent": 90.0, "window_seconds": 300.0, "min_samples": 20}, "for_seconds": 0.0, "clear_seconds": 60.0}))]
pub struct AlertRule {
    /// Unique; letters, digits, `-` and `_`.
    pub name: String,
    pub condition: Condition,
    /// Only this strategy (per-strategy conditions); absent: every strategy.
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub for_seconds: f64,
    #[serde(default = "default_clear_seconds")]
    pub clear_seconds: f64,
}

fn default_clear_seconds() -> f64 {
    60.0
}

/// The `alerts` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Seconds between evaluations of the rules.
    pub evaluate_every_seconds: f64,
    pub rules: Vec<AlertRule>,
    /// URLs each raise and clear is POSTed to as JSON.
    pub webhooks: Vec<String>,
    /// Retries of a failed POST (0 to 10), waiting `webhook_backoff_seconds`, doubling.
    pub webhook_retries: u32,
    pub webhook_backoff_seconds: f64,
    pub webhook_timeout_seconds: f64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            evaluate_every_seconds: 5.0,
            rules: Vec::new(),
            webhooks: Vec::new(),
            webhook_retries: 3,
            webhook_backoff_seconds: 1.0,
            webhook_timeout_seconds: 5.0,
        }
    }
}

fn within(value: f64, low: f64, high: f64) -> bool {
    value.is_finite() && value >= low && value <= high
}

/// Problems of a rule list as (path below the list's key, message): `[2].condition.percent`.
pub fn problems(rules: &[AlertRule]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if rules.len() > MAX_RULES {
        out.push((String::new(), format!("at most {MAX_RULES} rules")));
    }
    for (i, rule) in rules.iter().enumerate() {
        let mut bad = |field: &str, message: String| out.push((format!("[{i}].{field}"), message));
        let name_ok = !rule.name.is_empty()
            && rule.name.chars().count() <= MAX_NAME_CHARS
            && rule
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            bad(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} letters, digits, '-' or '_'"),
            );
        } else if rules[..i].iter().any(|r| r.name == rule.name) {
            bad(
                "name",
                format!("'{}' is used by an earlier rule", rule.name),
            );
        }
        for (field, value) in [
            ("for_seconds", rule.for_seconds),
            ("clear_seconds", rule.clear_seconds),
        ] {
            if !within(value, 0.0, MAX_RULE_SECONDS) {
                bad(field, format!("must be from 0 to {MAX_RULE_SECONDS}"));
            }
        }
        if rule.strategy.is_some() && !rule.condition.per_strategy() {
            bad(
                "strategy",
                format!("{} is not judged per strategy", rule.condition.kind()),
            );
        }
        let window_ok = |w: f64| within(w, 60.0, MAX_RULE_SECONDS);
        let window_message = format!("must be from 60 to {MAX_RULE_SECONDS}");
        match &rule.condition {
            Condition::SuccessRateBelow {
                percent,
                window_seconds,
                min_samples,
            } => {
                if !within(*percent, 0.0, 100.0) {
                    bad("condition.percent", "must be from 0 to 100".into());
                }
                if !window_ok(*window_seconds) {
                    bad("condition.window_seconds", window_message);
                }
                if !(1..=1_000_000).contains(min_samples) {
                    bad("condition.min_samples", "must be from 1 to 1000000".into());
                }
            }
            Condition::ResponseTimeAbove {
                ms,
                window_seconds,
                min_samples,
                ..
            } => {
                if !(within(*ms, 0.0, 3_600_000.0) && *ms > 0.0) {
                    bad(
                        "condition.ms",
                        "must be more than 0, at most 3600000".into(),
                    );
                }
                if !window_ok(*window_seconds) {
                    bad("condition.window_seconds", window_message);
                }
                if !(1..=1_000_000).contains(min_samples) {
                    bad("condition.min_samples", "must be from 1 to 1000000".into());
                }
            }
            Condition::HostfactoryRequestFailed { window_seconds } => {
                if !window_ok(*window_seconds) {
                    bad("condition.window_seconds", window_message);
                }
            }
            Condition::StrategyUnhealthy {}
            | Condition::CircuitOpen {}
            | Condition::NoHealthyCreator {} => {}
        }
    }
    out
}

impl AlertsConfig {
    /// Problems as (path below `alerts`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = problems(&self.rules)
            .into_iter()
            .map(|(p, m)| (format!("rules{p}"), m))
            .collect();
        if !within(self.evaluate_every_seconds, 1.0, 3600.0) {
            out.push((
                "evaluate_every_seconds".into(),
                "must be from 1 to 3600".into(),
            ));
        }
        if self.webhooks.len() > 20 {
            out.push(("webhooks".into(), "at most 20 URLs".into()));
        }
        for (i, url) in self.webhooks.iter().enumerate() {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                out.push((
                    format!("webhooks[{i}]"),
                    format!("'{url}' is not an http(s) URL"),
                ));
            }
        }
        if self.webhook_retries > 10 {
            out.push(("webhook_retries".into(), "must be from 0 to 10".into()));
        }
        if !within(self.webhook_backoff_seconds, 0.01, 60.0) {
            out.push((
                "webhook_backoff_seconds".into(),
                "must be from 0.01 to 60".into(),
            ));
        }
        if !within(self.webhook_timeout_seconds, 0.1, 60.0) {
            out.push((
                "webhook_timeout_seconds".into(),
                "must be from 0.1 to 60".into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_checked_field_by_field() {
        let rules: Vec<AlertRule> = serde_json::from_value(serde_json::json!([
            {"name": "ok", "condition": {"type": "circuit_open"}},
            {"name": "ok", "condition": {"type": "success_rate_below", "percent": 120,
             "window_seconds": 10, "min_samples": 0}, "for_seconds": -1},
            {"name": "x y", "condition": {"type": "no_healthy_creator"}, "strategy": "s"}
        ]))
        .unwrap();
        let paths: Vec<String> = problems(&rules).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "[1].name",
                "[1].for_seconds",
                "[1].condition.percent",
                "[1].condition.window_seconds",
                "[1].condition.min_samples",
                "[2].name",
                "[2].strategy"
            ]
        );
        assert_eq!(rules[0].clear_seconds, 60.0);
    }

    #[test]
    fn an_unknown_condition_or_field_does_not_parse() {
        for bad in [
            serde_json::json!({"name": "a", "condition": {"type": "disk_full"}}),
            serde_json::json!({"name": "a", "condition": {"type": "circuit_open", "ms": 1}}),
            serde_json::json!({"name": "a", "condition": {"type": "circuit_open"}, "colour": 1}),
        ] {
            assert!(serde_json::from_value::<AlertRule>(bad).is_err());
        }
    }
}

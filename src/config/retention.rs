use serde::{Deserialize, Serialize};

/// How long finished rows are kept; the background monitor prunes them every
/// `prune_interval_seconds`, `batch_size` rows a statement at most. Open HostFactory requests,
/// machines still in the cloud and the latest health of each strategy are never pruned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between prune rounds.
    pub prune_interval_seconds: f64,
    /// Most rows one delete statement removes; a round repeats it while there is more.
    pub batch_size: u32,
    /// Finished HostFactory requests (done or failed, every machine terminated) and their
    /// machines, this many days after they last changed.
    pub hostfactory_days: f64,
    /// Simulated instances, this many hours after they finished shutting down.
    pub sim_instance_hours: f64,
    /// Health changes older than this many days,
    pub health_history_days: f64,
    /// and beyond the newest this many of each strategy.
    pub health_history_per_strategy: u32,
    /// Events older than this many days,
    pub events_days: f64,
    /// and beyond the newest this many.
    pub events_max: u32,
    /// Cleared alerts, this many days after they cleared (active ones stay).
    pub alerts_days: f64,
    /// The audit trail of cloud-changing calls, this many days after each call.
    pub audit_days: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            prune_interval_seconds: 300.0,
            batch_size: 500,
            hostfactory_days: 7.0,
            sim_instance_hours: 24.0,
            health_history_days: 30.0,
            health_history_per_strategy: 1000,
            events_days: 7.0,
            events_max: 100_000,
            alerts_days: 30.0,
            audit_days: 90.0,
        }
    }
}

impl RetentionConfig {
    /// Problems as (field, message).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        // Each becomes a timer or an age in milliseconds: bounded so that it stays one.
        for (field, value, max) in [
            (
                "prune_interval_seconds",
                self.prune_interval_seconds,
                86_400.0,
            ),
            ("hostfactory_days", self.hostfactory_days, 3650.0),
            ("sim_instance_hours", self.sim_instance_hours, 87_600.0),
            ("health_history_days", self.health_history_days, 3650.0),
            ("events_days", self.events_days, 3650.0),
            ("alerts_days", self.alerts_days, 3650.0),
            ("audit_days", self.audit_days, 3650.0),
        ] {
            if !(value > 0.0 && value <= max) {
                errors.push((
                    field,
                    format!("must be more than 0 and at most {max}, got {value:?}"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch_size) {
            errors.push(("batch_size", "must be from 1 to 10000".into()));
        }
        // The operator view shows the last 50 changes of a strategy.
        if self.health_history_per_strategy < 50 {
            errors.push(("health_history_per_strategy", "must be at least 50".into()));
        }
        // A follower that reconnects gets what it missed from the newest `events_max`.
        if !(1000..=10_000_000).contains(&self.events_max) {
            errors.push(("events_max", "must be from 1000 to 10000000".into()));
        }
        errors
    }
}

//! Effective strategy settings: the file's `strategy` section with run-time overrides laid over
//! it field by field. Overrides persist, so a restart keeps what an operator configured.
//! [`Settings`] holds the three (file, overrides, effective) and says when they change.

use std::sync::RwLock;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::AppResult;
use crate::config::StrategySettings;
use crate::domain::{EpochMillis, now_millis};
use crate::store::{SettingsRepo, Store, StoreResult};
use crate::strategy::{BreakerConfig, BreakerPatch, SelectionCriteria, SelectionPolicy};

struct State {
    file: StrategySettings,
    overrides: SettingsPatch,
    effective: StrategySettings,
    updated_at: Option<EpochMillis>,
}

/// The stored overrides, without what does not apply to `file`; unreadable ones are logged
/// and left out.
async fn stored_overrides(
    store: &Store,
    file: &StrategySettings,
) -> StoreResult<(SettingsPatch, Option<EpochMillis>)> {
    let (overrides, updated_at) = match store.load_settings_overrides().await? {
        Some((map, at)) => (
            serde_json::from_value(Value::Object(map)).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "stored strategy configuration unreadable; using the file's");
                SettingsPatch::default()
            }),
            Some(at),
        ),
        None => (SettingsPatch::default(), None),
    };
    Ok((without_problems(overrides, file), updated_at))
}

/// The strategy settings in force: the file's, the stored run-time overrides, and the
/// effective settings made of both.
pub struct Settings {
    store: Store,
    state: RwLock<State>,
    /// Serializes changes, so that two concurrent patches both land.
    writer: tokio::sync::Mutex<()>,
    /// Signalled when the run-time configuration changes (the monitor re-reads its interval).
    changed: Notify,
}

/// The settings as `GET /api/v1/providers/configuration` needs them.
pub struct SettingsSnapshot {
    pub effective: StrategySettings,
    pub overrides: SettingsPatch,
    pub updated_at: Option<EpochMillis>,
}

impl Settings {
    pub fn new(file: StrategySettings, overrides: SettingsPatch, store: Store) -> Self {
        Self::with_state(file, overrides, None, store)
    }

    fn with_state(
        file: StrategySettings,
        overrides: SettingsPatch,
        updated_at: Option<EpochMillis>,
        store: Store,
    ) -> Self {
        Self {
            state: RwLock::new(State {
                effective: overrides.apply(&file),
                file,
                overrides,
                updated_at,
            }),
            store,
            writer: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        }
    }

    /// The file's settings with the stored overrides laid over them. Unreadable stored
    /// overrides are logged and left out.
    pub async fn load(file: &StrategySettings, store: Store) -> anyhow::Result<Self> {
        let (overrides, updated_at) = stored_overrides(&store, file).await?;
        Ok(Self::with_state(file.clone(), overrides, updated_at, store))
    }

    /// Reads the stored overrides again (another replica saved them) and applies them.
    pub async fn reload(&self) -> StoreResult<()> {
        let _writing = self.writer.lock().await;
        let file = self.state.read().expect("settings lock").file.clone();
        let (overrides, updated_at) = stored_overrides(&self.store, &file).await?;
        {
            let mut s = self.state.write().expect("settings lock");
            if s.updated_at == updated_at {
                return Ok(());
            }
            s.effective = overrides.apply(&s.file);
            s.overrides = overrides;
            s.updated_at = updated_at;
        }
        self.changed.notify_one();
        Ok(())
    }

    /// The effective settings now.
    pub fn effective(&self) -> StrategySettings {
        self.state.read().expect("settings lock").effective.clone()
    }

    pub fn breaker(&self) -> BreakerConfig {
        self.state
            .read()
            .expect("settings lock")
            .effective
            .circuit_breaker
    }

    pub fn metrics_collection_enabled(&self) -> bool {
        self.state
            .read()
            .expect("settings lock")
            .effective
            .metrics_collection_enabled
    }

    pub fn snapshot(&self) -> SettingsSnapshot {
        let s = self.state.read().expect("settings lock");
        SettingsSnapshot {
            effective: s.effective.clone(),
            overrides: s.overrides.clone(),
            updated_at: s.updated_at,
        }
    }

    /// Lays a (validated) patch over the stored overrides, persists them first, and answers
    /// the new effective settings.
    pub async fn apply(&self, patch: &SettingsPatch) -> AppResult<StrategySettings> {
        let _writing = self.writer.lock().await;
        let overrides = self
            .state
            .read()
            .expect("settings lock")
            .overrides
            .then(patch);
        let now = now_millis();
        let map = match serde_json::to_value(&overrides).expect("serializes") {
            Value::Object(m) => m,
            _ => unreachable!("a struct serializes to an object"),
        };
        self.store.save_settings_overrides(&map, now).await?;
        let effective = {
            let mut s = self.state.write().expect("settings lock");
            s.effective = overrides.apply(&s.file);
            s.overrides = overrides;
            s.updated_at = Some(now);
            s.effective.clone()
        };
        // One stored permit: a change made while the monitor is busy is seen when it is done.
        self.changed.notify_one();
        Ok(effective)
    }

    /// Completes after the next run-time configuration change.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// Stored overrides outside today's bounds (saved by a version with looser checks) are logged
/// and left out, field by field, so that the service never runs on them.
fn without_problems(mut overrides: SettingsPatch, file: &StrategySettings) -> SettingsPatch {
    for (path, message) in overrides.problems(file, &|_| true) {
        tracing::warn!(field = %path, %message, "stored strategy configuration out of bounds; using the file's value");
        overrides.clear(&path);
    }
    overrides
}

/// The request's path for a path of [`StrategySettings::problems`].
fn patch_path(path: &str) -> String {
    match path.strip_prefix("circuit_breaker.") {
        Some(rest) => format!("circuit_breaker_config.{rest}"),
        None if path == "selection_policy" => "default_selection_policy".into(),
        None => path.to_string(),
    }
}

/// `Some(None)` for an explicit `null`, `None` when the key is absent.
pub fn explicit_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Body of `PUT /api/v1/providers/configuration`: every field optional, absent fields keep
/// their value. `active_strategy: null` hands the choice back to the policy. The values are
/// checked as the configuration file's `strategy` section is, with the same bounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"default_selection_policy": "ROUND_ROBIN", "active_strategy": null,
    "fallback_strategies": ["sim-secondary"], "health_check_interval": 15,
    "circuit_breaker_config": {"failure_threshold": 3, "recovery_timeout": 30, "half_open_max_calls": 1}}))]
pub struct SettingsPatch {
    /// Also read as `selection_policy`, the file's name (the usage guide's
    /// `set_selection_policy`).
    #[serde(
        default,
        alias = "selection_policy",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<SelectionPolicy>, example = "ROUND_ROBIN")]
    pub default_selection_policy: Option<SelectionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_criteria: Option<SelectionCriteria>,
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, nullable = true)]
    pub active_strategy: Option<Option<String>>,
    /// Registered strategies, at most 100, no duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub fallback_strategies: Option<Vec<String>>,
    /// Seconds between background health checks: 1 to 86400 (one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub health_check_interval: Option<f64>,
    /// Seconds one health check may take: more than 0, at most 3600 (one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 3600)]
    pub health_check_timeout: Option<f64>,
    /// Extra attempts of a failed health check before it counts: 0 to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10)]
    pub health_check_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_config: Option<BreakerPatch>,
    /// `false`: a failed operation is not retried down `fallback_strategies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_enabled: Option<bool>,
    /// `false`: operations and health checks are not recorded into the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_collection_enabled: Option<bool>,
}

impl SettingsPatch {
    /// `newer` wins field by field (breaker fields one by one).
    pub fn then(&self, newer: &SettingsPatch) -> SettingsPatch {
        let breaker = match (&self.circuit_breaker_config, &newer.circuit_breaker_config) {
            (Some(old), Some(new)) => Some(old.then(new)),
            (old, new) => new.or(*old),
        };
        SettingsPatch {
            default_selection_policy: newer
                .default_selection_policy
                .or(self.default_selection_policy),
            selection_criteria: newer
                .selection_criteria
                .clone()
                .or_else(|| self.selection_criteria.clone()),
            active_strategy: newer
                .active_strategy
                .clone()
                .or_else(|| self.active_strategy.clone()),
            fallback_strategies: newer
                .fallback_strategies
                .clone()
                .or_else(|| self.fallback_strategies.clone()),
            health_check_interval: newer.health_check_interval.or(self.health_check_interval),
            health_check_timeout: newer.health_check_timeout.or(self.health_check_timeout),
            health_check_retries: newer.health_check_retries.or(self.health_check_retries),
            circuit_breaker_config: breaker,
            failover_enabled: newer.failover_enabled.or(self.failover_enabled),
            metrics_collection_enabled: newer
                .metrics_collection_enabled
                .or(self.metrics_collection_enabled),
        }
    }

    pub fn apply(&self, base: &StrategySettings) -> StrategySettings {
        let mut s = base.clone();
        if let Some(p) = self.default_selection_policy {
            s.selection_policy = p;
        }
        if let Some(c) = &self.selection_criteria {
            s.selection_criteria = c.clone();
        }
        if let Some(a) = &self.active_strategy {
            s.active_strategy = a.clone();
        }
        if let Some(f) = &self.fallback_strategies {
            s.fallback_strategies = f.clone();
        }
        if let Some(i) = self.health_check_interval {
            s.health_check_interval = i;
        }
        if let Some(t) = self.health_check_timeout {
            s.health_check_timeout = t;
        }
        if let Some(r) = self.health_check_retries {
            s.health_check_retries = r;
        }
        if let Some(b) = &self.circuit_breaker_config {
            s.circuit_breaker = b.over(&s.circuit_breaker);
        }
        if let Some(f) = self.failover_enabled {
            s.failover_enabled = f;
        }
        if let Some(m) = self.metrics_collection_enabled {
            s.metrics_collection_enabled = m;
        }
        s
    }

    /// Problems with the values this patch sets, as (request path, message): the one
    /// validation of [`StrategySettings::problems`], run on `base` with the patch laid over it,
    /// so that the file and the API accept exactly the same values. `known` says whether a
    /// strategy name may be used.
    pub fn problems(
        &self,
        base: &StrategySettings,
        known: &dyn Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        self.apply(base)
            .problems(known)
            .into_iter()
            .map(|(path, message)| (patch_path(&path), message))
            .filter(|(path, _)| self.sets(path))
            .collect()
    }

    /// Whether this patch sets the value at a request path such as `fallback_strategies[1]` or
    /// `circuit_breaker_config.recovery_timeout`.
    fn sets(&self, path: &str) -> bool {
        let top = path.split(['.', '[']).next().unwrap_or(path);
        match (&self.circuit_breaker_config, top) {
            (Some(b), "circuit_breaker_config") => match path.split_once('.') {
                Some((_, "enabled")) => b.enabled.is_some(),
                Some((_, "failure_threshold")) => b.failure_threshold.is_some(),
                Some((_, "recovery_timeout")) => b.recovery_timeout.is_some(),
                Some((_, "half_open_max_calls")) => b.half_open_max_calls.is_some(),
                _ => true,
            },
            _ => self.fields().contains(&top),
        }
    }

    /// Unsets the value at a request path (the whole field for a top-level path or a list
    /// entry).
    fn clear(&mut self, path: &str) {
        let top = path.split(['.', '[']).next().unwrap_or(path);
        match top {
            "default_selection_policy" => self.default_selection_policy = None,
            "selection_criteria" => self.selection_criteria = None,
            "active_strategy" => self.active_strategy = None,
            "fallback_strategies" => self.fallback_strategies = None,
            "health_check_interval" => self.health_check_interval = None,
            "health_check_timeout" => self.health_check_timeout = None,
            "health_check_retries" => self.health_check_retries = None,
            "failover_enabled" => self.failover_enabled = None,
            "metrics_collection_enabled" => self.metrics_collection_enabled = None,
            "circuit_breaker_config" => {
                if let Some(b) = &mut self.circuit_breaker_config {
                    match path.split_once('.') {
                        Some((_, "enabled")) => b.enabled = None,
                        Some((_, "failure_threshold")) => b.failure_threshold = None,
                        Some((_, "recovery_timeout")) => b.recovery_timeout = None,
                        Some((_, "half_open_max_calls")) => b.half_open_max_calls = None,
                        _ => self.circuit_breaker_config = None,
                    }
                }
            }
            _ => {}
        }
    }

    /// Names of the fields set.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        let set = [
            (
                "default_selection_policy",
                self.default_selection_policy.is_some(),
            ),
            ("selection_criteria", self.selection_criteria.is_some()),
            ("active_strategy", self.active_strategy.is_some()),
            ("fallback_strategies", self.fallback_strategies.is_some()),
            (
                "health_check_interval",
                self.health_check_interval.is_some(),
            ),
            ("health_check_timeout", self.health_check_timeout.is_some()),
            ("health_check_retries", self.health_check_retries.is_some()),
            (
                "circuit_breaker_config",
                self.circuit_breaker_config.is_some(),
            ),
            ("failover_enabled", self.failover_enabled.is_some()),
            (
                "metrics_collection_enabled",
                self.metrics_collection_enabled.is_some(),
            ),
        ];
        for (name, on) in set {
            if on {
                f.push(name);
            }
        }
        f
    }
}

/// The effective configuration as `GET /api/v1/providers/configuration` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"default_selection_policy": "FIRST_AVAILABLE", "selection_criteria": {"require_healthy": true},
    "active_strategy": null, "fallback_strategies": ["sim-primary", "sim-secondary"], "health_check_interval": 30.0,
    "health_check_timeout": 5.0, "health_check_retries": 1, "operation_timeout": 30.0,
    "circuit_breaker_config": {"enabled": true, "failure_threshold": 5, "recovery_timeout": 60.0, "half_open_max_calls": 1},
    "failover_enabled": true, "metrics_collection_enabled": true,
    "overridden_fields": [], "updated_at": null}))]
pub struct ConfigurationView {
    #[schema(value_type = String, example = "FIRST_AVAILABLE")]
    pub default_selection_policy: SelectionPolicy,
    pub selection_criteria: SelectionCriteria,
    pub active_strategy: Option<String>,
    pub fallback_strategies: Vec<String>,
    pub health_check_interval: f64,
    pub health_check_timeout: f64,
    pub health_check_retries: u32,
    pub operation_timeout: f64,
    pub circuit_breaker_config: BreakerConfig,
    pub failover_enabled: bool,
    pub metrics_collection_enabled: bool,
    /// Fields set at run time (they override the configuration file and survive restarts).
    pub overridden_fields: Vec<&'static str>,
    pub updated_at: Option<String>,
}

impl ConfigurationView {
    pub fn new(
        s: &StrategySettings,
        overrides: &SettingsPatch,
        updated_at: Option<String>,
    ) -> Self {
        Self {
            default_selection_policy: s.selection_policy,
            selection_criteria: s.selection_criteria.clone(),
            active_strategy: s.active_strategy.clone(),
            fallback_strategies: s.fallback_strategies.clone(),
            health_check_interval: s.health_check_interval,
            health_check_timeout: s.health_check_timeout,
            health_check_retries: s.health_check_retries,
            operation_timeout: s.operation_timeout,
            circuit_breaker_config: s.circuit_breaker,
            failover_enabled: s.failover_enabled,
            metrics_collection_enabled: s.metrics_collection_enabled,
            overridden_fields: overrides.fields(),
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests;

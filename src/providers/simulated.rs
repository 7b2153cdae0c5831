//! The simulated provider: an in-process stand-in for a cloud region, labelled as a simulator
//! everywhere. Latency, failure rate, capacity and health are configurable; instances live in
//! the database and move pending → running → shutting-down → terminated over configured times.
//! With a `seed`, the sequence of latencies and injected failures is deterministic.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Provider, parse_config, string_list};
use crate::domain::{
    Capabilities, EpochMillis, Machine, MachineState, OperationType, ProviderError,
    ProviderErrorKind, ProviderOperation, now_millis,
};
use crate::store::{SimInstanceRepo, SimInstanceRow, Store};

/// `latency_ms`: a fixed number or a `[min, max]` range.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Latency {
    Fixed(f64),
    Range([f64; 2]),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    #[serde(default = "default_latency")]
    pub latency_ms: Latency,
    /// Probability (0–1) that an operation fails with SIMULATED_FAILURE.
    #[serde(default)]
    pub failure_rate: f64,
    /// Most instances alive at once; unlimited when absent.
    #[serde(default)]
    pub capacity: Option<u64>,
    #[serde(default = "default_region")]
    pub region: String,
    /// `false` makes every operation fail with PROVIDER_UNAVAILABLE, as a region outage would.
    #[serde(default = "default_healthy")]
    pub healthy: bool,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default = "default_boot")]
    pub boot_seconds: f64,
    #[serde(default = "default_shutdown")]
    pub shutdown_seconds: f64,
}

fn default_latency() -> Latency {
    Latency::Fixed(0.0)
}
fn default_region() -> String {
    "sim-local-1".into()
}
fn default_healthy() -> bool {
    true
}
fn default_boot() -> f64 {
    5.0
}
fn default_shutdown() -> f64 {
    3.0
}

impl SimulatedConfig {
    pub fn from_spec(config: &Map<String, Value>) -> Result<Self, (String, String)> {
        let cfg: SimulatedConfig = parse_config(config)?;
        let bad = |field: &str, msg: String| Err((format!("config.{field}"), msg));
        if !(0.0..=1.0).contains(&cfg.failure_rate) {
            return bad(
                "failure_rate",
                format!("must be between 0 and 1, got {}", cfg.failure_rate),
            );
        }
        match cfg.latency_ms {
            Latency::Fixed(ms) if !(ms.is_finite() && ms >= 0.0) => {
                return bad("latency_ms", format!("must be 0 or more, got {ms}"));
            }
            Latency::Range([lo, hi])
                if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) =>
            {
                return bad(
                    "latency_ms",
                    format!("must be [min, max] with 0 <= min <= max, got [{lo}, {hi}]"),
                );
            }
            _ => {}
        }
        for (field, v) in [
            ("boot_seconds", cfg.boot_seconds),
            ("shutdown_seconds", cfg.shutdown_seconds),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("must be 0 or more seconds, got {v}"));
            }
        }
        if cfg.region.trim().is_empty() {
            return bad("region", "must not be empty".into());
        }
        Ok(cfg)
    }
}

pub struct SimulatedProvider {
    strategy: String,
    cfg: SimulatedConfig,
    store: Store,
    rng: Mutex<ChaCha8Rng>,
    /// Serialises the capacity check with the insert.
    create_lock: tokio::sync::Mutex<()>,
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::validation(message)
}

fn store_error(e: sqlx::Error) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Internal,
        "STORE_ERROR",
        format!("simulator state unavailable: {e}"),
    )
}

fn id_list(params: &Map<String, Value>) -> Result<Vec<String>, ProviderError> {
    string_list(params, "instance_ids")?
        .ok_or_else(|| invalid("parameters.instance_ids is required (a list of instance ids)"))
}

impl SimulatedProvider {
    pub fn new(strategy: &str, cfg: SimulatedConfig, store: Store) -> Self {
        let rng = match cfg.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Self {
            strategy: strategy.to_string(),
            cfg,
            store,
            rng: Mutex::new(rng),
            create_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Draws this call's latency and whether it fails, in one step so that a seed fixes both.
    fn draw(&self) -> (f64, bool) {
        let mut rng = self.rng.lock().expect("rng lock");
        let latency = match self.cfg.latency_ms {
            Latency::Fixed(ms) => ms,
            Latency::Range([lo, hi]) if hi > lo => rng.random_range(lo..=hi),
            Latency::Range([lo, _]) => lo,
        };
        let fails = rng.random::<f64>() < self.cfg.failure_rate;
        (latency, fails)
    }

    fn machine(&self, row: &SimInstanceRow, now: EpochMillis) -> Machine {
        let state = match row.terminating_at {
            Some(t) if now >= t + row.shutdown_ms => MachineState::Terminated,
            Some(_) => MachineState::ShuttingDown,
            None if now >= row.launched_at + row.boot_ms => MachineState::Running,
            None => MachineState::Pending,
        };
        let booted = state != MachineState::Pending;
        Machine {
            instance_id: row.instance_id.clone(),
            state,
            // Like EC2, the address is known once the instance is placed; the DNS name with it.
            private_ip: booted.then(|| row.private_ip.clone()),
            public_ip: None,
            private_dns: booted.then(|| {
                format!(
                    "ip-{}.{}.compute.internal",
                    row.private_ip.replace('.', "-"),
                    self.cfg.region
                )
            }),
            instance_type: Some(row.instance_type.clone()),
            launch_time: Some(row.launched_at / 1000),
            region: Some(self.cfg.region.clone()),
            price_type: row
                .tags
                .get("price_type")
                .and_then(Value::as_str)
                .map(str::to_string),
            reclaim_notice: row
                .reclaimed
                .then(|| "reclaimed by the simulated cloud".to_string()),
            request_id: row.request_id.clone(),
            resource_id: None,
            provider_api: Some("simulated".into()),
        }
    }

    async fn create(&self, params: &Map<String, Value>) -> Result<Value, ProviderError> {
        let units = params
            .get("count")
            .or_else(|| params.get("machine_count"))
            .ok_or_else(|| invalid("parameters.count is required"))?
            .as_u64()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid("parameters.count must be an integer from 1 to 10000"))?;
        let text = |key: &str, default: &str| -> Result<String, ProviderError> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(default.to_string()),
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(invalid(format!(
                    "parameters.{key} must be a non-empty string"
                ))),
            }
        };
        let template_id = text("template_id", "default")?;
        // A weighted template (vmTypes) asks for capacity units, as a fleet would: the
        // simulator places its first instance type, as many as cover the units.
        let weighted = params
            .get("template")
            .and_then(|t| t.get("vmTypes"))
            .and_then(Value::as_object)
            .and_then(|types| types.iter().next())
            .and_then(|(t, w)| Some((t.clone(), w.as_u64().filter(|w| *w > 0)?)));
        let (instance_type, count) = match (params.get("instance_type"), weighted) {
            (None | Some(Value::Null), Some((t, weight))) => (t, units.div_ceil(weight)),
            _ => (text("instance_type", "sim.standard")?, units),
        };
        let request_id = params
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut tags = match params.get("tags") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => t.clone(),
            Some(_) => return Err(invalid("parameters.tags must be an object")),
        };
        tags.insert(
            "price_type".into(),
            Value::String(text("price_type", "ondemand")?),
        );

        let _guard = self.create_lock.lock().await;
        let now = now_millis();
        if let Some(capacity) = self.cfg.capacity {
            let live = self
                .store
                .count_live_sim_instances(&self.strategy, now)
                .await
                .map_err(store_error)?;
            if live + count > capacity {
                return Err(ProviderError::new(
                    ProviderErrorKind::Capacity,
                    "INSUFFICIENT_CAPACITY",
                    format!(
                        "simulated region {} has room for {} more instance(s), {count} requested",
                        self.cfg.region,
                        capacity.saturating_sub(live)
                    ),
                ));
            }
        }
        let rows: Vec<SimInstanceRow> = (0..count)
            .map(|_| {
                let id = uuid::Uuid::new_v4().simple().to_string();
                let b = uuid::Uuid::new_v4().into_bytes();
                SimInstanceRow {
                    instance_id: format!("i-{}", &id[..17]),
                    strategy: self.strategy.clone(),
                    template_id: template_id.clone(),
                    instance_type: instance_type.clone(),
                    request_id: request_id.clone(),
                    tags: tags.clone(),
                    private_ip: format!("10.{}.{}.{}", b[0], b[1], b[2].max(4)),
                    launched_at: now,
                    boot_ms: (self.cfg.boot_seconds * 1000.0) as i64,
                    terminating_at: None,
                    shutdown_ms: (self.cfg.shutdown_seconds * 1000.0) as i64,
                    reclaimed: false,
                }
            })
            .collect();
        self.store
            .insert_sim_instances(&rows)
            .await
            .map_err(store_error)?;
        let machines: Vec<Machine> = rows.iter().map(|r| self.machine(r, now)).collect();
        Ok(json!({
            "instance_ids": rows.iter().map(|r| r.instance_id.clone()).collect::<Vec<_>>(),
            "instances": machines,
            "count": count,
            "region": self.cfg.region,
            "simulated": true,
        }))
    }

    async fn status(&self, params: &Map<String, Value>) -> Result<Value, ProviderError> {
        let ids = string_list(params, "instance_ids")?;
        let request_ids = string_list(params, "request_ids")?;
        if ids.is_none() && request_ids.is_none() {
            return Err(invalid(
                "parameters.instance_ids or parameters.request_ids is required",
            ));
        }
        let ids = ids.unwrap_or_default();
        let mut rows = self
            .store
            .sim_instances_by_ids(&self.strategy, &ids)
            .await
            .map_err(store_error)?;
        // Answer in the order asked.
        rows.sort_by_key(|r| ids.iter().position(|id| id == &r.instance_id));
        for row in self
            .store
            .sim_instances_by_request(&self.strategy, &request_ids.unwrap_or_default())
            .await
            .map_err(store_error)?
        {
            if !rows.iter().any(|r| r.instance_id == row.instance_id) {
                rows.push(row);
            }
        }
        let now = now_millis();
        let not_found: Vec<&String> = ids
            .iter()
            .filter(|id| !rows.iter().any(|r| &r.instance_id == *id))
            .collect();
        let machines: Vec<Machine> = rows.iter().map(|r| self.machine(r, now)).collect();
        Ok(json!({"machines": machines, "not_found": not_found, "simulated": true}))
    }

    async fn terminate(&self, params: &Map<String, Value>) -> Result<Value, ProviderError> {
        let ids = id_list(params)?;
        if ids.is_empty() {
            return Err(invalid("parameters.instance_ids must not be empty"));
        }
        // The simulator's stand-in for a spot interruption or a console termination.
        let reclaimed = params
            .get("simulate_reclaim")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let now = now_millis();
        let known = self
            .store
            .sim_instances_by_ids(&self.strategy, &ids)
            .await
            .map_err(store_error)?;
        let touched = self
            .store
            .terminate_sim_instances(&self.strategy, &ids, now, reclaimed)
            .await
            .map_err(store_error)?;
        let already: Vec<&String> = known
            .iter()
            .map(|r| &r.instance_id)
            .filter(|id| !touched.contains(id))
            .collect();
        let not_found: Vec<&String> = ids
            .iter()
            .filter(|id| !known.iter().any(|r| &r.instance_id == *id))
            .collect();
        Ok(json!({
            "terminating": touched,
            "already_terminating": already,
            "not_found": not_found,
            "simulated": true,
        }))
    }

    fn validate_template(&self, params: &Map<String, Value>) -> Result<Value, ProviderError> {
        let template = params
            .get("template")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("parameters.template is required (an object)"))?;
        let mut errors = Vec::new();
        let id = template
            .get("template_id")
            .or_else(|| template.get("templateId"));
        if id.and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push("template_id is required".to_string());
        }
        let has_type = ["instance_type", "vmType", "vmTypes"]
            .iter()
            .any(|k| template.contains_key(*k));
        if !has_type {
            errors.push(
                "an instance type is required (instance_type, vmType or vmTypes)".to_string(),
            );
        }
        if errors.is_empty() {
            Ok(json!({"valid": true, "errors": [], "simulated": true}))
        } else {
            Err(ProviderError::new(
                ProviderErrorKind::Validation,
                "INVALID_TEMPLATE",
                errors.join("; "),
            ))
        }
    }

    async fn health(&self) -> Result<Value, ProviderError> {
        let live = self
            .store
            .count_live_sim_instances(&self.strategy, now_millis())
            .await
            .map_err(store_error)?;
        Ok(json!({
            "is_healthy": true,
            "region": self.cfg.region,
            "live_instances": live,
            "capacity": self.cfg.capacity,
            "simulated": true,
        }))
    }
}

#[async_trait]
impl Provider for SimulatedProvider {
    fn capabilities(&self) -> Capabilities {
        let features = json!({
            "simulated": true,
            "instances": true,
            "region": self.cfg.region,
        });
        let mut limitations = Map::new();
        if let Some(c) = self.cfg.capacity {
            limitations.insert("max_live_instances".into(), json!(c));
        }
        limitations.insert("max_instances_per_request".into(), json!(10_000));
        Capabilities {
            provider_type: "simulated".into(),
            supported_operations: OperationType::ALL.to_vec(),
            features: features.as_object().cloned().unwrap_or_default(),
            limitations,
            performance_metrics: Some(
                json!({
                    "configured_latency_ms": match self.cfg.latency_ms {
                        Latency::Fixed(ms) => json!(ms),
                        Latency::Range([lo, hi]) => json!([lo, hi]),
                    },
                    "configured_failure_rate": self.cfg.failure_rate,
                    "boot_seconds": self.cfg.boot_seconds,
                    "shutdown_seconds": self.cfg.shutdown_seconds,
                })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ),
        }
    }

    async fn execute(&self, op: &ProviderOperation) -> Result<Value, ProviderError> {
        let (latency_ms, fails) = self.draw();
        if latency_ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(latency_ms / 1000.0)).await;
        }
        if !self.cfg.healthy {
            return Err(ProviderError::new(
                ProviderErrorKind::Transient,
                "PROVIDER_UNAVAILABLE",
                format!(
                    "simulated region {} is configured unhealthy",
                    self.cfg.region
                ),
            ));
        }
        if fails {
            return Err(ProviderError::new(
                ProviderErrorKind::Transient,
                "SIMULATED_FAILURE",
                format!("injected failure (failure_rate {})", self.cfg.failure_rate),
            ));
        }
        let p = &op.parameters;
        match op.operation_type {
            OperationType::CreateInstances => self.create(p).await,
            OperationType::TerminateInstances => self.terminate(p).await,
            OperationType::GetInstanceStatus => self.status(p).await,
            OperationType::ValidateTemplate => self.validate_template(p),
            OperationType::GetAvailableTemplates => Ok(json!({
                "templates": [
                    {"template_id": "sim-standard", "instance_type": "sim.standard", "region": self.cfg.region},
                ],
                "simulated": true,
            })),
            OperationType::HealthCheck => self.health().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Result<SimulatedConfig, (String, String)> {
        SimulatedConfig::from_spec(v.as_object().unwrap())
    }

    #[test]
    fn config_validation_names_the_field() {
        assert_eq!(
            cfg(json!({"failure_rate": 1.5})).unwrap_err().0,
            "config.failure_rate"
        );
        assert_eq!(
            cfg(json!({"latency_ms": [9, 1]})).unwrap_err().0,
            "config.latency_ms"
        );
        assert_eq!(
            cfg(json!({"latency_ms": "fast"})).unwrap_err().0,
            "config.latency_ms"
        );
        assert_eq!(
            cfg(json!({"capacity": -1})).unwrap_err().0,
            "config.capacity"
        );
        let err = cfg(json!({"failure_rat": 0.1})).unwrap_err();
        assert!(err.1.contains("unknown field `failure_rat`"), "{err:?}");
        let ok = cfg(json!({"latency_ms": [5, 20], "seed": 7, "capacity": 3})).unwrap();
        assert_eq!(ok.latency_ms, Latency::Range([5.0, 20.0]));
    }

    #[tokio::test]
    async fn a_seed_fixes_the_sequence_of_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("t.db").to_str().unwrap(), 1000, 2)
            .await
            .unwrap();
        let config = cfg(json!({"failure_rate": 0.5, "seed": 42, "latency_ms": [0, 1]})).unwrap();
        let outcomes = |p: SimulatedProvider| async move {
            let mut v = Vec::new();
            for _ in 0..40 {
                v.push(p.execute(&ProviderOperation::health_check()).await.is_ok());
            }
            v
        };
        let a = outcomes(SimulatedProvider::new("a", config.clone(), store.clone())).await;
        let b = outcomes(SimulatedProvider::new("a", config, store.clone())).await;
        assert_eq!(a, b);
        let failures = a.iter().filter(|ok| !**ok).count();
        assert!((10..=30).contains(&failures), "{failures}");
    }

    #[tokio::test]
    async fn instances_move_through_their_states_and_capacity_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("t.db").to_str().unwrap(), 1000, 2)
            .await
            .unwrap();
        let config =
            cfg(json!({"capacity": 2, "boot_seconds": 0.2, "shutdown_seconds": 0.2})).unwrap();
        let p = SimulatedProvider::new("sim", config, store);
        let op = |t, params: Value| ProviderOperation::new(t, params.as_object().unwrap().clone());
        let created = p
            .execute(&op(
                OperationType::CreateInstances,
                json!({"count": 2, "template_id": "t"}),
            ))
            .await
            .unwrap();
        let ids = created["instance_ids"].clone();
        assert_eq!(created["instances"][0]["state"], "pending");
        assert!(created["instances"][0]["private_ip"].is_null());
        let err = p
            .execute(&op(OperationType::CreateInstances, json!({"count": 1})))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Capacity);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let status = p
            .execute(&op(
                OperationType::GetInstanceStatus,
                json!({"instance_ids": ids.clone()}),
            ))
            .await
            .unwrap();
        assert_eq!(status["machines"][0]["state"], "running");
        assert!(
            status["machines"][0]["private_dns"]
                .as_str()
                .unwrap()
                .starts_with("ip-10-")
        );
        let gone = p
            .execute(&op(
                OperationType::TerminateInstances,
                json!({"instance_ids": [ids[0].clone(), "i-unknown"]}),
            ))
            .await
            .unwrap();
        assert_eq!(gone["not_found"], json!(["i-unknown"]));
        let status = p
            .execute(&op(
                OperationType::GetInstanceStatus,
                json!({"instance_ids": ids.clone()}),
            ))
            .await
            .unwrap();
        assert_eq!(status["machines"][0]["state"], "shutting-down");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let status = p
            .execute(&op(
                OperationType::GetInstanceStatus,
                json!({"instance_ids": ids}),
            ))
            .await
            .unwrap();
        assert_eq!(status["machines"][0]["state"], "terminated");
        // Capacity is free again once the instance is gone.
        p.execute(&op(OperationType::CreateInstances, json!({"count": 1})))
            .await
            .unwrap();
    }
}

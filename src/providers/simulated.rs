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

use super::{
    CreateRequest, Created, HealthReport, LaunchPlan, OfferedTemplate, PlannedPool, Provider,
    SpecProblem, StatusQuery, StatusReport, TemplatesReport, TerminateReport, TerminateRequest,
    ValidationReport, parse_config,
};
use crate::domain::{
    Capabilities, EpochMillis, LaunchSpec, Machine, MachineState, OperationType, ProviderError,
    ProviderErrorKind, SpecField, now_millis,
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
    /// The operations it takes, as a provider that implements only some would (any case);
    /// every one when absent. Must include HEALTH_CHECK, which the health checks use. The
    /// engine answers `UNSUPPORTED_OPERATION` for the others without calling it.
    #[serde(default = "all_operations")]
    pub supported_operations: Vec<OperationType>,
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
fn all_operations() -> Vec<OperationType> {
    OperationType::ALL.to_vec()
}

/// Longest simulated call (one hour, the longest operation timeout): a longer one could only
/// time out, and a huge one does not fit a `Duration`.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// Longest simulated boot or shutdown (one day).
pub const MAX_PHASE_SECONDS: f64 = 86_400.0;

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
        let latency_ok = |ms: f64| (0.0..=MAX_LATENCY_MS).contains(&ms);
        match cfg.latency_ms {
            Latency::Fixed(ms) if !latency_ok(ms) => {
                return bad(
                    "latency_ms",
                    format!("must be from 0 to {MAX_LATENCY_MS} ms, got {ms:?}"),
                );
            }
            Latency::Range([lo, hi]) if !(latency_ok(lo) && latency_ok(hi) && lo <= hi) => {
                return bad(
                    "latency_ms",
                    format!(
                        "must be [min, max] with 0 <= min <= max <= {MAX_LATENCY_MS}, got [{lo:?}, {hi:?}]"
                    ),
                );
            }
            _ => {}
        }
        for (field, v) in [
            ("boot_seconds", cfg.boot_seconds),
            ("shutdown_seconds", cfg.shutdown_seconds),
        ] {
            if !(0.0..=MAX_PHASE_SECONDS).contains(&v) {
                return bad(
                    field,
                    format!("must be from 0 to {MAX_PHASE_SECONDS} seconds, got {v:?}"),
                );
            }
        }
        if cfg.region.trim().is_empty() {
            return bad("region", "must not be empty".into());
        }
        if !cfg
            .supported_operations
            .contains(&OperationType::HealthCheck)
        {
            return bad(
                "supported_operations",
                "must include HEALTH_CHECK: the health checks use it".into(),
            );
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

fn store_error(e: sqlx::Error) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Internal,
        "STORE_ERROR",
        format!("simulator state unavailable: {e}"),
    )
}

/// The instance type the simulator places when a spec names none.
const DEFAULT_INSTANCE_TYPE: &str = "sim.standard";

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
            reclaim_deadline: None,
            reclaim_notice: row
                .reclaimed
                .then(|| "reclaimed by the simulated cloud".to_string()),
            request_id: row.request_id.clone(),
            resource_id: None,
            provider_api: None,
        }
    }

    /// Every call first waits the configured latency, then may fail as configured.
    async fn gate(&self) -> Result<(), ProviderError> {
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
        Ok(())
    }

    fn live_limit_error(&self, live: u64, count: u64) -> ProviderError {
        ProviderError::new(
            ProviderErrorKind::Capacity,
            "INSUFFICIENT_CAPACITY",
            format!(
                "simulated region {} has room for {} more instance(s), {count} requested",
                self.cfg.region,
                self.cfg.capacity.unwrap_or(0).saturating_sub(live)
            ),
        )
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
            supported_operations: OperationType::ALL
                .into_iter()
                .filter(|op| self.cfg.supported_operations.contains(op))
                .collect(),
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

    /// The creation it would make: the spec's first instance type, as many as cover the units;
    /// there is no cloud to dry-run, so the request is the operation itself.
    async fn plan(&self, req: &CreateRequest) -> Result<LaunchPlan, ProviderError> {
        let spec = &req.spec;
        let instance_type = spec.primary_type().unwrap_or(DEFAULT_INSTANCE_TYPE);
        let request = serde_json::to_value(req).map_err(|e| {
            ProviderError::validation(format!("the request does not serialize: {e}"))
        })?;
        Ok(LaunchPlan {
            provider_api: spec.provisioning_api,
            instance_types: vec![instance_type.to_string()],
            subnets: spec.subnets.clone(),
            pools: vec![PlannedPool {
                instance_type: instance_type.to_string(),
                subnet: spec.subnets.first().cloned(),
                parked: false,
            }],
            action: "CREATE_INSTANCES".into(),
            request,
            dry_run: None,
            notes: vec!["simulated: no cloud to dry-run".into()],
        })
    }

    /// Places the spec's first instance type; in a weighted spec, as many as cover the units,
    /// as a fleet would.
    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        self.gate().await?;
        let spec = &req.spec;
        let instance_type = spec.primary_type().unwrap_or(DEFAULT_INSTANCE_TYPE);
        let weight = spec.units_of(Some(instance_type)).max(1) as u64;
        let count = u64::from(req.units).div_ceil(weight);
        let mut tags: Map<String, Value> = spec
            .tags
            .iter()
            .chain(&req.tags)
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let price_type = if spec.price_type.is_spot() {
            "spot"
        } else {
            "ondemand"
        };
        tags.insert("price_type".into(), json!(price_type));
        let template_id = if spec.template_id.is_empty() {
            "default".to_string()
        } else {
            spec.template_id.clone()
        };

        let _guard = self.create_lock.lock().await;
        let now = now_millis();
        if let Some(capacity) = self.cfg.capacity {
            let live = self
                .store
                .count_live_sim_instances(&self.strategy, now)
                .await
                .map_err(store_error)?;
            if live + count > capacity {
                return Err(self.live_limit_error(live, count));
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
                    instance_type: instance_type.to_string(),
                    request_id: req.request_id.clone(),
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
        Ok(Created {
            instance_ids: rows.iter().map(|r| r.instance_id.clone()).collect(),
            instances: rows.iter().map(|r| self.machine(r, now)).collect(),
            resource_id: None,
            count: rows.len(),
            ..Created::default()
        })
    }

    async fn status(&self, query: &StatusQuery) -> Result<StatusReport, ProviderError> {
        self.gate().await?;
        let ids = &query.instance_ids;
        let mut rows = self
            .store
            .sim_instances_by_ids(&self.strategy, ids)
            .await
            .map_err(store_error)?;
        // Answer in the order asked.
        rows.sort_by_key(|r| ids.iter().position(|id| id == &r.instance_id));
        for row in self
            .store
            .sim_instances_by_request(&self.strategy, &query.request_ids)
            .await
            .map_err(store_error)?
        {
            if !rows.iter().any(|r| r.instance_id == row.instance_id) {
                rows.push(row);
            }
        }
        let now = now_millis();
        let not_found = ids
            .iter()
            .filter(|id| !rows.iter().any(|r| &r.instance_id == *id))
            .cloned()
            .collect();
        Ok(StatusReport {
            machines: rows.iter().map(|r| self.machine(r, now)).collect(),
            not_found,
        })
    }

    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError> {
        self.gate().await?;
        let ids = req.instance_ids();
        let now = now_millis();
        let known = self
            .store
            .sim_instances_by_ids(&self.strategy, &ids)
            .await
            .map_err(store_error)?;
        let touched = self
            .store
            .terminate_sim_instances(&self.strategy, &ids, now, req.simulate_reclaim)
            .await
            .map_err(store_error)?;
        let already = known
            .iter()
            .map(|r| &r.instance_id)
            .filter(|id| !touched.contains(id))
            .cloned()
            .collect();
        let not_found = ids
            .iter()
            .filter(|id| !known.iter().any(|r| &r.instance_id == *id))
            .cloned()
            .collect();
        Ok(TerminateReport {
            terminating: touched,
            already_terminating: already,
            not_found,
            failed: Vec::new(),
        })
    }

    /// The simulator can start anything that names a template and an instance type.
    async fn validate(&self, spec: &LaunchSpec) -> Result<ValidationReport, ProviderError> {
        self.gate().await?;
        let mut problems = Vec::new();
        if spec.template_id.is_empty() {
            problems.push(SpecProblem {
                field: SpecField::TemplateId,
                message: "is required".into(),
            });
        }
        if spec.instance_types.is_empty() {
            problems.push(SpecProblem {
                field: SpecField::InstanceTypes,
                message: "an instance type is required".into(),
            });
        }
        Ok(ValidationReport::from_problems(problems))
    }

    async fn templates(&self) -> Result<TemplatesReport, ProviderError> {
        self.gate().await?;
        Ok(TemplatesReport {
            templates: vec![OfferedTemplate {
                template_id: "sim-standard".into(),
                instance_type: Some(DEFAULT_INSTANCE_TYPE.into()),
                region: Some(self.cfg.region.clone()),
            }],
            region: Some(self.cfg.region.clone()),
            ..TemplatesReport::default()
        })
    }

    async fn health(&self) -> Result<HealthReport, ProviderError> {
        self.gate().await?;
        let live = self
            .store
            .count_live_sim_instances(&self.strategy, now_millis())
            .await
            .map_err(store_error)?;
        Ok(HealthReport {
            region: Some(self.cfg.region.clone()),
            live_instances: Some(live),
            capacity: self.cfg.capacity,
            ..HealthReport::healthy(format!(
                "simulated region {} answers ({live} live instances)",
                self.cfg.region
            ))
        })
    }
}

#[cfg(test)]
mod tests;

//! Providers: the trait every cloud (or simulator) implements, and the factory that builds
//! one from a strategy definition.

pub mod aws;
pub mod composite;
pub mod contract;
pub mod http;
pub mod plan;
pub mod simulated;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::{StrategySpec, breaker_problems};
use crate::domain::{Attempt, Capabilities, LaunchSpec, ProviderError, ProviderErrorKind};
use crate::objects_only::ObjectsOnly;
use crate::store::Store;
use crate::strategy::{BreakerConfig, Candidate, Transition};

pub use contract::{
    CreateRequest, Created, HealthReport, MachineRef, MemberHealth, OfferedTemplate, Operation,
    OperationOutput, ReclaimNotice, ResourceRef, SpecProblem, StatusQuery, StatusReport,
    TemplatesReport, TerminateFailure, TerminateReport, TerminateRequest, ValidationReport,
};
pub use plan::{DryRunCheck, LaunchPlan, PlannedPool};

/// One provider instance behind a strategy. Implementations are cheap to share (`Arc`) and
/// safe to call concurrently. Every operation takes and answers typed values (see
/// [`contract`]); an `Err` of kind Validation is the caller's mistake, any other kind counts
/// against the strategy.
#[async_trait]
pub trait Provider: Send + Sync {
    /// What the provider says of itself; declared capabilities are laid over this.
    fn capabilities(&self) -> Capabilities;

    /// Starts instances. `request_id` is the idempotency key: instances are tagged with it
    /// so that a retry after a crash finds them instead of making more.
    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError>;

    /// Machines by id, by request id and by holding resource, batched as the API allows.
    async fn status(&self, query: &StatusQuery) -> Result<StatusReport, ProviderError>;

    /// Gives machines back the way each was made. `Err` only when none could be given back;
    /// partial failures are listed in the report.
    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError>;

    /// Checks a launch spec against what the provider can start; problems are in the report.
    async fn validate(&self, spec: &LaunchSpec) -> Result<ValidationReport, ProviderError>;

    /// Templates the provider offers of itself.
    async fn templates(&self) -> Result<TemplatesReport, ProviderError>;

    /// A cheap real call; `Err` means unhealthy.
    async fn health(&self) -> Result<HealthReport, ProviderError>;

    /// The capacity pools the provider skips for now; `None` for providers without pools.
    fn parked_pools(&self) -> Option<aws::ParkedPools> {
        None
    }

    /// Machines of `spec` the account's quotas still allow, from what the provider last
    /// learnt (no call); `None`: no cap known.
    fn quota_headroom(&self, _spec: &LaunchSpec) -> Option<i64> {
        None
    }

    /// How long its machines may stay pending before HostFactory fails them, when the
    /// strategy's configuration says (else `hostfactory.pending_timeout_seconds`).
    fn pending_timeout_seconds(&self) -> Option<f64> {
        None
    }

    /// Reclaim notices that arrived since the last call (a notice queue); each is handed out
    /// once. None for providers without a queue.
    fn take_reclaim_notices(&self) -> Vec<ReclaimNotice> {
        Vec::new()
    }

    /// What `create` would do with `req`, without doing it (the cloud's dry run where its API
    /// has one). Providers that cannot tell answer `Unsupported`.
    async fn plan(&self, _req: &CreateRequest) -> Result<LaunchPlan, ProviderError> {
        Err(ProviderError::new(
            ProviderErrorKind::Unsupported,
            "PLAN_UNSUPPORTED",
            "this provider cannot plan a creation",
        ))
    }

    /// Runs one operation, with the calls made to member strategies (composite types only).
    async fn execute_traced(&self, op: &Operation) -> Traced {
        let result = match op {
            Operation::Create(req) => self.create(req).await.map(OperationOutput::Created),
            Operation::Status(q) => self.status(q).await.map(OperationOutput::Status),
            Operation::Terminate(req) => self.terminate(req).await.map(OperationOutput::Terminated),
            Operation::Validate(spec) => self
                .validate(spec)
                .await
                .and_then(ValidationReport::into_result)
                .map(OperationOutput::Validated),
            Operation::Templates => self.templates().await.map(OperationOutput::Templates),
            Operation::Health => self.health().await.map(OperationOutput::Health),
        };
        Traced::plain(result)
    }
}

/// An answer, the member calls behind it, and the members whose answers it is made of.
pub struct Traced {
    pub result: Result<OperationOutput, ProviderError>,
    pub members: Vec<Attempt>,
    /// Members whose answers were combined (MERGE_ALL, MAJORITY_WINS); empty otherwise.
    pub contributors: Vec<String>,
}

impl Traced {
    pub fn plain(result: Result<OperationOutput, ProviderError>) -> Self {
        Self {
            result,
            members: Vec::new(),
            contributors: Vec::new(),
        }
    }
}

/// How composite strategies call their members: through the engine, so that each member's
/// circuit breaker, in-flight count, metrics and events apply as for any call.
#[async_trait]
pub trait MemberInvoker: Send + Sync {
    /// Calls one strategy by name (`timeout` defaults to the configured operation timeout).
    async fn invoke(
        &self,
        strategy: &str,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> (Attempt, Result<OperationOutput, ProviderError>);

    /// The strategy as selection sees it now (cached health, circuit, capabilities), or
    /// `None` when no strategy has that name.
    fn candidate(&self, strategy: &str) -> Option<Candidate>;

    /// The circuit-breaker settings the strategy's own circuit follows now.
    fn breaker(&self, strategy: &str) -> Option<BreakerConfig>;

    /// Records a transition of a circuit breaker that a composite keeps over one member.
    fn member_circuit_transition(&self, strategy: &str, member: &str, t: &Transition);
}

/// Run-time state of composite strategies, by strategy name, so that it outlives the rebuild
/// an update (`PUT /api/v1/providers/{name}`) makes.
#[derive(Default)]
pub struct StateShelf(Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>);

impl StateShelf {
    /// The state kept under `name`, or a new one when there is none of this type.
    pub fn get_or_insert<T: Any + Send + Sync>(
        &self,
        name: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut map = self.0.lock().expect("shelf lock");
        if let Some(found) = map.get(name).cloned().and_then(|s| s.downcast::<T>().ok()) {
            return found;
        }
        let state = Arc::new(make());
        map.insert(name.to_string(), state.clone());
        state
    }

    pub fn forget(&self, name: &str) {
        self.0.lock().expect("shelf lock").remove(name);
    }
}

/// What providers may need from the service when they are built.
#[derive(Clone)]
pub struct ProviderDeps {
    pub store: Store,
    pub invoker: Arc<dyn MemberInvoker>,
    pub shelf: Arc<StateShelf>,
    /// Where providers report what they decide on their own (the AWS provider's parked pools).
    pub events: Arc<crate::app::events::EventBus>,
}

/// Provider types this build knows.
pub const PROVIDER_TYPES: [&str; 6] = [
    "aws",
    "simulated",
    "http",
    "load_balancer",
    "fallback",
    "composite",
];

/// Deserializes a provider's `config` object, naming the bad key on failure.
pub(crate) fn parse_config<T: DeserializeOwned>(
    config: &Map<String, Value>,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(ObjectsOnly(Value::Object(config.clone()))).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "config".to_string()
        } else {
            format!("config.{path}")
        };
        (path, e.into_inner().to_string())
    })
}

/// Problems with a strategy definition, as (path below the definition, message).
pub fn validate_spec(spec: &StrategySpec) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Some(message) = crate::strategy::balancing::weight_problem(spec.weight) {
        errors.push(("weight".into(), message));
    }
    if let Some(own) = &spec.circuit_breaker {
        // Laid over the defaults, which are in bounds, a problem is one of the fields given.
        errors.extend(
            breaker_problems(&own.over(&BreakerConfig::default()))
                .into_iter()
                .map(|(field, m)| (format!("circuit_breaker.{field}"), m)),
        );
    }
    match spec.provider_type.as_str() {
        "aws" => errors.extend(aws::AwsConfig::from_spec(&spec.config).err()),
        "simulated" => errors.extend(simulated::SimulatedConfig::from_spec(&spec.config).err()),
        "http" => errors.extend(http::HttpConfig::from_spec(&spec.config).err()),
        "load_balancer" | "fallback" | "composite" => {
            errors.extend(composite::validate(&spec.provider_type, &spec.config));
        }
        other => errors.push((
            "type".into(),
            format!(
                "unknown provider type '{other}', expected one of {}",
                PROVIDER_TYPES.join(", ")
            ),
        )),
    }
    errors
}

/// Builds the provider for a (validated) definition.
pub async fn build(spec: &StrategySpec, deps: &ProviderDeps) -> Result<Arc<dyn Provider>, String> {
    match spec.provider_type.as_str() {
        "aws" => {
            let cfg =
                aws::AwsConfig::from_spec(&spec.config).map_err(|(p, m)| format!("{p}: {m}"))?;
            Ok(Arc::new(
                aws::AwsProvider::new(
                    &spec.name,
                    cfg,
                    Arc::clone(&deps.events),
                    deps.store.clone(),
                )
                .await,
            ))
        }
        "simulated" => {
            let cfg = simulated::SimulatedConfig::from_spec(&spec.config)
                .map_err(|(p, m)| format!("{p}: {m}"))?;
            Ok(Arc::new(simulated::SimulatedProvider::new(
                &spec.name,
                cfg,
                deps.store.clone(),
            )))
        }
        "http" => {
            let cfg =
                http::HttpConfig::from_spec(&spec.config).map_err(|(p, m)| format!("{p}: {m}"))?;
            Ok(Arc::new(http::HttpProvider::new(cfg)?))
        }
        "load_balancer" | "fallback" | "composite" => composite::build(spec, deps),
        other => Err(format!("unknown provider type '{other}'")),
    }
}

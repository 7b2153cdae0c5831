//! Providers: the trait every cloud (or simulator) implements, and the factory that builds
//! one from a strategy definition.

pub mod aws;
pub mod composite;
pub mod simulated;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::StrategySpec;
use crate::domain::{Attempt, Capabilities, ProviderError, ProviderOperation};
use crate::store::Store;
use crate::strategy::{Candidate, Transition};

/// One provider instance behind a strategy. Implementations are cheap to share (`Arc`) and
/// safe to call concurrently.
///
/// Parameters and answers of the operations, common to every provider:
/// - `CREATE_INSTANCES` `{count, template_id?, request_id?, template?, instance_type?,
///   price_type?, tags?}`; `template` is the HostFactory template object as written in
///   `awsprov_templates.json` (camelCase keys), `request_id` is tagged on every instance.
///   `count` is in capacity units: machines, or weight units when the template has `vmTypes`
///   (a fleet's target capacity; the machines placed may cover more than asked).
///   Answer: `{instance_ids, instances: [Machine], resource_id?, provider_api?, count}`; APIs
///   that place instances later (fleets of type request, Auto Scaling) may answer with no
///   instances yet and a `resource_id`.
/// - `GET_INSTANCE_STATUS` `{instance_ids?, request_ids?, resources?: [{resource_id,
///   provider_api}]}`, at least one of them; batched by the provider as its API allows.
///   Answer: `{machines: [Machine], not_found: [instance id]}`.
/// - `TERMINATE_INSTANCES` `{instance_ids, machines?: [{instance_id, resource_id?,
///   provider_api?}]}`; `machines` tells the provider how each instance was made, so that it
///   is given back the same way (fleet capacity, Auto Scaling group). Answer: `{terminating,
///   already_terminating, not_found, failed?: [{instance_ids, error_code, error_message}]}`;
///   `failed` lists machines that could not be given back while others were (`Err` when none
///   could), so that the caller retries only those.
/// - `VALIDATE_TEMPLATE` `{template}`: an invalid template is an `Err` of kind Validation.
/// - `GET_AVAILABLE_TEMPLATES` `{}` → `{templates: [...]}`.
/// - `HEALTH_CHECK` `{}`: `Err` means unhealthy.
#[async_trait]
pub trait Provider: Send + Sync {
    /// What the provider says of itself; declared capabilities are laid over this.
    fn capabilities(&self) -> Capabilities;

    /// Performs one operation. `HEALTH_CHECK` is an operation like the others: `Err` means
    /// unhealthy.
    async fn execute(&self, op: &ProviderOperation) -> Result<Value, ProviderError>;

    /// Like `execute`, with the calls made to member strategies (composite types only).
    async fn execute_traced(&self, op: &ProviderOperation) -> Traced {
        Traced {
            result: self.execute(op).await,
            members: Vec::new(),
        }
    }
}

/// An answer and the member calls behind it.
pub struct Traced {
    pub result: Result<Value, ProviderError>,
    pub members: Vec<Attempt>,
}

/// How composite strategies call their members: through the engine, so that each member's
/// circuit breaker, in-flight count, metrics and events apply as for any call.
#[async_trait]
pub trait MemberInvoker: Send + Sync {
    /// Calls one strategy by name (`timeout` defaults to the configured operation timeout).
    async fn invoke(
        &self,
        strategy: &str,
        op: &ProviderOperation,
        timeout: Option<Duration>,
    ) -> (Attempt, Result<Value, ProviderError>);

    /// The strategy as selection sees it now (cached health, circuit, capabilities), or
    /// `None` when no strategy has that name.
    fn candidate(&self, strategy: &str) -> Option<Candidate>;

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
}

/// Provider types this build knows.
pub const PROVIDER_TYPES: [&str; 5] =
    ["aws", "simulated", "load_balancer", "fallback", "composite"];

/// Deserializes a provider's `config` object, naming the bad key on failure.
pub(crate) fn parse_config<T: DeserializeOwned>(
    config: &Map<String, Value>,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(Value::Object(config.clone())).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "config".to_string()
        } else {
            format!("config.{path}")
        };
        (path, e.into_inner().to_string())
    })
}

/// A list of strings under `key`, deduplicated; `None` when absent.
pub(crate) fn string_list(
    params: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, ProviderError> {
    let Some(value) = params.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let list = value.as_array().ok_or_else(|| {
        ProviderError::validation(format!("parameters.{key} must be a list of strings"))
    })?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let id = v.as_str().ok_or_else(|| {
            ProviderError::validation(format!("parameters.{key}[{i}] must be a string"))
        })?;
        if !out.iter().any(|seen| seen == id) {
            out.push(id.to_string());
        }
    }
    Ok(Some(out))
}

/// Problems with a strategy definition, as (path below the definition, message).
pub fn validate_spec(spec: &StrategySpec) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if !(spec.weight.is_finite() && spec.weight > 0.0) {
        errors.push((
            "weight".into(),
            format!("must be a positive number, got {}", spec.weight),
        ));
    }
    match spec.provider_type.as_str() {
        "aws" => errors.extend(aws::AwsConfig::from_spec(&spec.config).err()),
        "simulated" => errors.extend(simulated::SimulatedConfig::from_spec(&spec.config).err()),
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
            Ok(Arc::new(aws::AwsProvider::new(&spec.name, cfg).await))
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
        "load_balancer" | "fallback" | "composite" => composite::build(spec, deps),
        other => Err(format!("unknown provider type '{other}'")),
    }
}

//! Strategies made of strategies: `load_balancer`, `fallback` and `composite`. They call their
//! members through the [`MemberInvoker`] (the engine), never a member's provider directly, so
//! that every member keeps its own circuit breaker, in-flight count, metrics and events. The
//! choices they make are pure logic in `crate::strategy`.
//!
//! HEALTH_CHECK on any of them does not probe the members (the background task probes every
//! strategy already); it aggregates the members' cached health and circuits.

mod fallback;
mod fan_out;
mod load_balancer;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{
    CreateRequest, Created, HealthReport, MemberHealth, MemberInvoker, Operation, Provider,
    ProviderDeps, StatusQuery, StatusReport, TemplatesReport, TerminateReport, TerminateRequest,
    Traced, ValidationReport,
};
use crate::config::StrategySpec;
use crate::domain::{
    Capabilities, HealthState, LaunchSpec, OperationType, ProviderError, ProviderErrorKind,
};
use crate::strategy::{Candidate, CircuitState};

pub use fallback::FallbackConfig;
pub use fan_out::CompositeConfig;
pub use load_balancer::LoadBalancerConfig;

/// The provider types this module builds.
pub const TYPES: [&str; 3] = ["load_balancer", "fallback", "composite"];

pub fn is_composite(provider_type: &str) -> bool {
    TYPES.contains(&provider_type)
}

/// Problems with a composite definition, as (path below the definition, message).
pub fn validate(provider_type: &str, config: &Map<String, Value>) -> Vec<(String, String)> {
    let result = match provider_type {
        "load_balancer" => LoadBalancerConfig::from_spec(config).map(drop),
        "fallback" => FallbackConfig::from_spec(config).map(drop),
        _ => CompositeConfig::from_spec(config).map(drop),
    };
    result.err().into_iter().collect()
}

/// The strategies a definition calls, each with the path naming it (`config.strategies[1]`);
/// empty for plain providers and for definitions that do not parse.
pub fn members_of(spec: &StrategySpec) -> Vec<(String, String)> {
    let named = |names: &[String], field: &str| -> Vec<(String, String)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("config.{field}[{i}]"), n.clone()))
            .collect()
    };
    match spec.provider_type.as_str() {
        "load_balancer" => LoadBalancerConfig::from_spec(&spec.config)
            .map(|c| named(&c.strategies, "strategies"))
            .unwrap_or_default(),
        "fallback" => FallbackConfig::from_spec(&spec.config)
            .map(|c| {
                let mut m = vec![("config.primary".to_string(), c.primary.clone())];
                m.extend(named(&c.fallbacks, "fallbacks"));
                m
            })
            .unwrap_or_default(),
        "composite" => CompositeConfig::from_spec(&spec.config)
            .map(|c| named(&c.strategies, "strategies"))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub fn build(spec: &StrategySpec, deps: &ProviderDeps) -> Result<Arc<dyn Provider>, String> {
    let fail = |(p, m): (String, String)| format!("{p}: {m}");
    let members = Members {
        invoker: Arc::clone(&deps.invoker),
        names: members_of(spec).into_iter().map(|(_, n)| n).collect(),
        provider_type: spec.provider_type.clone(),
    };
    Ok(match spec.provider_type.as_str() {
        "load_balancer" => {
            let cfg = LoadBalancerConfig::from_spec(&spec.config).map_err(fail)?;
            Arc::new(Combined(load_balancer::LoadBalancer::new(
                &spec.name, cfg, members, deps,
            )))
        }
        "fallback" => {
            let cfg = FallbackConfig::from_spec(&spec.config).map_err(fail)?;
            Arc::new(Combined(fallback::Fallback::new(
                &spec.name, cfg, members, deps,
            )))
        }
        _ => {
            let cfg = CompositeConfig::from_spec(&spec.config).map_err(fail)?;
            Arc::new(Combined(fan_out::Composite::new(cfg, members)))
        }
    })
}

/// A strategy made of strategies: runs any operation through its members.
#[async_trait]
trait Combinator: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    async fn run(&self, op: &Operation) -> Traced;
}

/// A combinator as a provider: every typed operation goes through `run`, so the three
/// composite types handle all operations in one place each.
struct Combined<C>(C);

#[async_trait]
impl<C: Combinator> Provider for Combined<C> {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        let op = Operation::Create(req.clone());
        self.0.run(&op).await.result?.into_created()
    }

    async fn status(&self, query: &StatusQuery) -> Result<StatusReport, ProviderError> {
        let op = Operation::Status(query.clone());
        self.0.run(&op).await.result?.into_status()
    }

    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError> {
        let op = Operation::Terminate(req.clone());
        self.0.run(&op).await.result?.into_terminated()
    }

    async fn validate(&self, spec: &LaunchSpec) -> Result<ValidationReport, ProviderError> {
        let op = Operation::Validate(spec.clone());
        self.0.run(&op).await.result?.into_validated()
    }

    async fn templates(&self) -> Result<TemplatesReport, ProviderError> {
        self.0
            .run(&Operation::Templates)
            .await
            .result?
            .into_templates()
    }

    async fn health(&self) -> Result<HealthReport, ProviderError> {
        self.0.run(&Operation::Health).await.result?.into_health()
    }

    async fn execute_traced(&self, op: &Operation) -> Traced {
        self.0.run(op).await
    }
}

/// Member names must not be empty nor listed twice.
fn check_names(field: &str, names: &[String]) -> Result<(), (String, String)> {
    for (i, n) in names.iter().enumerate() {
        if n.trim().is_empty() {
            return Err((format!("config.{field}[{i}]"), "must not be empty".into()));
        }
        if names[..i].contains(n) {
            return Err((
                format!("config.{field}[{i}]"),
                format!("'{n}' is listed twice"),
            ));
        }
    }
    Ok(())
}

/// The members of one composite strategy and the way to reach them.
struct Members {
    invoker: Arc<dyn MemberInvoker>,
    /// Every member, in member order (primary first for a fallback).
    names: Vec<String>,
    provider_type: String,
}

/// A member that selection would consider: registered, enabled, not unhealthy, circuit not
/// open. Unknown health counts as usable, as in selection.
fn usable(c: &Candidate) -> bool {
    c.enabled && c.health != HealthState::Unhealthy && c.circuit != CircuitState::Open
}

impl Members {
    fn candidates(&self) -> Vec<Option<Candidate>> {
        self.names
            .iter()
            .map(|n| self.invoker.candidate(n))
            .collect()
    }

    /// Operations any member supports; features and limitations of the first member that is
    /// registered, then the composite's own figures.
    fn capabilities(
        &self,
        features: Map<String, Value>,
        performance: Map<String, Value>,
    ) -> Capabilities {
        let cands: Vec<Candidate> = self.candidates().into_iter().flatten().collect();
        let supported_operations = OperationType::ALL
            .into_iter()
            .filter(|op| cands.iter().any(|c| c.capabilities.supports(*op)))
            .collect();
        let (mut all_features, limitations) = cands
            .first()
            .map(|c| {
                (
                    c.capabilities.features.clone(),
                    c.capabilities.limitations.clone(),
                )
            })
            .unwrap_or_default();
        all_features.extend(features);
        Capabilities {
            provider_type: self.provider_type.clone(),
            supported_operations,
            features: all_features,
            limitations,
            performance_metrics: Some(performance),
        }
    }

    /// The HEALTH_CHECK answer when `op` is one, from the members' cached state: healthy when
    /// at least `needed` members are usable.
    fn health_answer(&self, op: &Operation, needed: usize) -> Option<Traced> {
        matches!(op, Operation::Health)
            .then(|| Traced::plain(self.health(needed).map(super::OperationOutput::Health)))
    }

    fn health(&self, needed: usize) -> Result<HealthReport, ProviderError> {
        let members: Vec<MemberHealth> = self
            .names
            .iter()
            .zip(self.candidates())
            .map(|(n, c)| match c {
                Some(c) => MemberHealth {
                    strategy: n.clone(),
                    usable: usable(&c),
                    registered: true,
                    health: Some(c.health),
                    circuit_state: Some(c.circuit),
                    enabled: Some(c.enabled),
                },
                None => MemberHealth {
                    strategy: n.clone(),
                    usable: false,
                    registered: false,
                    health: None,
                    circuit_state: None,
                    enabled: None,
                },
            })
            .collect();
        let up = members.iter().filter(|m| m.usable).count();
        let message = format!("{up}/{} members usable", self.names.len());
        if up >= needed.max(1) {
            Ok(HealthReport {
                members,
                ..HealthReport::healthy(message)
            })
        } else {
            Err(ProviderError::new(
                ProviderErrorKind::Transient,
                "MEMBERS_UNAVAILABLE",
                format!("{message}, {} needed", needed.max(1)),
            ))
        }
    }
}

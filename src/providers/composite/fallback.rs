//! `provider_type: fallback`: a primary and ordered fallbacks, with the modes of
//! `crate::strategy::fallback`. CIRCUIT_BREAKER mode keeps a breaker of its own over the
//! primary (its threshold and timeout from this config), in addition to the primary's own:
//! both count the primary's failures and either one open skips it, so the lower threshold
//! decides (`circuit_metrics.effective_threshold` says which).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Combinator;
use super::{Members, check_names, usable};
use crate::config::{MAX_FAILURE_THRESHOLD, MAX_RECOVERY_TIMEOUT_SECONDS};
use crate::domain::{Attempt, Capabilities, ProviderError, ProviderErrorKind, now_millis};
use crate::providers::{
    Operation, OperationOutput, ProviderDeps, TemplatesReport, Traced, parse_config,
};
use crate::strategy::fallback::{FallbackMode, backoff_seconds, effective_threshold, should_retry};
use crate::strategy::{BreakerConfig, CircuitBreaker, OutcomeWindow};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    pub primary: String,
    pub fallbacks: Vec<String>,
    #[serde(default = "default_mode")]
    pub mode: FallbackMode,
    /// Retries of the primary under RETRY_THEN_FALLBACK.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Base of the exponential backoff.
    #[serde(default = "default_delay")]
    pub retry_delay_seconds: f64,
    #[serde(default = "default_threshold")]
    pub circuit_breaker_threshold: u32,
    #[serde(default = "default_timeout")]
    pub circuit_breaker_timeout_seconds: f64,
    #[serde(default)]
    pub enable_graceful_degradation: bool,
}

fn default_mode() -> FallbackMode {
    FallbackMode::Immediate
}
fn default_retries() -> u32 {
    3
}
fn default_delay() -> f64 {
    1.0
}
fn default_threshold() -> u32 {
    5
}
fn default_timeout() -> f64 {
    60.0
}

impl FallbackConfig {
    pub fn from_spec(config: &Map<String, Value>) -> Result<Self, (String, String)> {
        let cfg: Self = parse_config(config)?;
        let bad = |field: &str, msg: String| Err((format!("config.{field}"), msg));
        if cfg.primary.trim().is_empty() {
            return bad("primary", "must name a strategy".into());
        }
        if cfg.fallbacks.is_empty() {
            return bad("fallbacks", "must name at least one strategy".into());
        }
        check_names("fallbacks", &cfg.fallbacks)?;
        if let Some(i) = cfg.fallbacks.iter().position(|f| f == &cfg.primary) {
            return bad(
                &format!("fallbacks[{i}]"),
                format!("'{}' is the primary", cfg.primary),
            );
        }
        if cfg.max_retries > 10 {
            return bad(
                "max_retries",
                format!("must be at most 10, got {}", cfg.max_retries),
            );
        }
        if !(cfg.retry_delay_seconds.is_finite() && (0.0..=60.0).contains(&cfg.retry_delay_seconds))
        {
            return bad("retry_delay_seconds", "must be from 0 to 60 seconds".into());
        }
        if cfg.circuit_breaker_threshold == 0 {
            return bad("circuit_breaker_threshold", "must be at least 1".into());
        }
        let timeout = cfg.circuit_breaker_timeout_seconds;
        if !(timeout > 0.0 && timeout <= MAX_RECOVERY_TIMEOUT_SECONDS) {
            return bad(
                "circuit_breaker_timeout_seconds",
                format!(
                    "must be more than 0 and at most {MAX_RECOVERY_TIMEOUT_SECONDS} seconds, got {timeout:?}"
                ),
            );
        }
        if cfg.circuit_breaker_threshold > MAX_FAILURE_THRESHOLD {
            return bad(
                "circuit_breaker_threshold",
                format!("must be at most {MAX_FAILURE_THRESHOLD}"),
            );
        }
        Ok(cfg)
    }

    fn primary_breaker(&self) -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failure_threshold: self.circuit_breaker_threshold,
            recovery_timeout: self.circuit_breaker_timeout_seconds,
            half_open_max_calls: 1,
        }
    }
}

pub struct Fallback {
    name: String,
    cfg: FallbackConfig,
    members: Members,
    /// CIRCUIT_BREAKER mode's breaker over the primary.
    breaker: Arc<Mutex<PrimaryCircuit>>,
}

/// CIRCUIT_BREAKER mode's view of the primary: its breaker and the primary's recent outcomes
/// through this fallback (for `failure_rate`).
#[derive(Default)]
struct PrimaryCircuit {
    breaker: CircuitBreaker,
    window: OutcomeWindow,
}

impl Fallback {
    pub(super) fn new(
        name: &str,
        cfg: FallbackConfig,
        members: Members,
        deps: &ProviderDeps,
    ) -> Self {
        Self {
            name: name.to_string(),
            breaker: deps
                .shelf
                .get_or_insert(name, || Mutex::new(PrimaryCircuit::default())),
            cfg,
            members,
        }
    }

    /// Whether the primary gets the call, and why not when it does not.
    fn primary_admitted(&self) -> Result<Option<crate::strategy::Permit>, String> {
        match self.cfg.mode {
            FallbackMode::Immediate | FallbackMode::RetryThenFallback => Ok(None),
            FallbackMode::HealthBased => match self.members.invoker.candidate(&self.cfg.primary) {
                Some(c) if usable(&c) => Ok(None),
                Some(c) => Err(format!(
                    "primary skipped: health {}, circuit {}",
                    c.health.as_str(),
                    c.circuit.as_str()
                )),
                None => Err("primary skipped: not registered".into()),
            },
            FallbackMode::CircuitBreaker => {
                let (decision, transition) = self
                    .breaker
                    .lock()
                    .expect("breaker lock")
                    .breaker
                    .try_acquire(&self.cfg.primary_breaker(), now_millis());
                self.report(transition);
                decision.map(Some).map_err(|reason| {
                    format!("primary skipped by this fallback's breaker: {reason}")
                })
            }
        }
    }

    fn report(&self, transition: Option<crate::strategy::Transition>) {
        if let Some(t) = transition {
            self.members
                .invoker
                .member_circuit_transition(&self.name, &self.cfg.primary, &t);
        }
    }

    /// Calls the primary, retrying under RETRY_THEN_FALLBACK; every call is an attempt.
    async fn call_primary(
        &self,
        op: &Operation,
        attempts: &mut Vec<Attempt>,
    ) -> Result<OperationOutput, ProviderError> {
        let mut retries = 0;
        loop {
            let (attempt, result) = self
                .members
                .invoker
                .invoke(&self.cfg.primary, op, None)
                .await;
            attempts.push(attempt);
            match result {
                Err(e)
                    if self.cfg.mode == FallbackMode::RetryThenFallback
                        && should_retry(e.kind, retries, self.cfg.max_retries) =>
                {
                    let pause = backoff_seconds(
                        self.cfg.retry_delay_seconds,
                        retries,
                        rand::random::<f64>(),
                    );
                    tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }
}

impl Fallback {
    /// CIRCUIT_BREAKER mode's breaker over the primary, in the guide's `circuit_metrics` names,
    /// with how it composes with the primary's own breaker.
    fn circuit_metrics(&self) -> Value {
        let (state, failures, recent) = {
            let c = self.breaker.lock().expect("breaker lock");
            (
                c.breaker.state,
                c.breaker.consecutive_failures,
                c.window.stats(),
            )
        };
        let primary_threshold = self
            .members
            .invoker
            .breaker(&self.cfg.primary)
            .filter(|b| b.enabled)
            .map(|b| b.failure_threshold);
        let (effective, limited) =
            effective_threshold(self.cfg.circuit_breaker_threshold, primary_threshold);
        let mut metrics = json!({
            "state": state,
            "failure_count": failures,
            "failure_rate": recent.success_rate.map(|ok| 100.0 - ok),
            "samples": recent.samples,
            "threshold": self.cfg.circuit_breaker_threshold,
            "timeout_seconds": self.cfg.circuit_breaker_timeout_seconds,
            "primary_breaker_threshold": primary_threshold,
            "effective_threshold": effective,
        });
        if limited {
            metrics["note"] = json!(format!(
                "the primary's own circuit breaker opens first, after {effective} consecutive failures; give '{}' a circuit_breaker.failure_threshold of at least {} for this threshold to take effect",
                self.cfg.primary, self.cfg.circuit_breaker_threshold
            ));
        }
        metrics
    }

    /// The primary's result, or `None` (with a note why) when the mode skips it.
    async fn try_primary(
        &self,
        op: &Operation,
        attempts: &mut Vec<Attempt>,
        notes: &mut Vec<String>,
    ) -> Option<Result<OperationOutput, ProviderError>> {
        let permit = match self.primary_admitted() {
            Ok(permit) => permit,
            Err(why) => {
                notes.push(why);
                return None;
            }
        };
        let result = self.call_primary(op, attempts).await;
        if let Some(permit) = permit {
            let cfg = self.cfg.primary_breaker();
            let now = now_millis();
            let ms = attempts.last().map_or(0.0, |a| a.response_time_ms);
            let transition = {
                let mut circuit = self.breaker.lock().expect("breaker lock");
                let PrimaryCircuit { breaker: b, window } = &mut *circuit;
                match &result {
                    Ok(_) => {
                        window.record(true, ms);
                        b.on_success(&cfg, permit, now)
                    }
                    Err(e) if e.kind.counts_as_failure() => {
                        window.record(false, ms);
                        b.on_failure(&cfg, permit, now)
                    }
                    Err(_) => {
                        b.release(permit);
                        None
                    }
                }
            };
            self.report(transition);
        }
        Some(result)
    }
}

#[async_trait]
impl Combinator for Fallback {
    fn capabilities(&self) -> Capabilities {
        let mut performance = json!({
            "mode": self.cfg.mode,
            "max_retries": self.cfg.max_retries,
            "retry_delay_seconds": self.cfg.retry_delay_seconds,
            "graceful_degradation": self.cfg.enable_graceful_degradation,
        });
        if self.cfg.mode == FallbackMode::CircuitBreaker {
            performance["circuit_metrics"] = self.circuit_metrics();
        }
        self.members.capabilities(
            Map::from_iter([
                ("fallback_enabled".to_string(), json!(true)),
                ("fallback_mode".to_string(), json!(self.cfg.mode)),
            ]),
            performance.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn run(&self, op: &Operation) -> Traced {
        if let Some(answer) = self.members.health_answer(op, 1) {
            return answer;
        }
        let mut attempts = Vec::new();
        let mut notes = Vec::new();
        let mut outcome = self.try_primary(op, &mut attempts, &mut notes).await;
        let mut fallbacks = self.cfg.fallbacks.iter();
        loop {
            if let Some(result) = outcome.take()
                && !matches!(&result, Err(e) if e.kind.allows_failover())
            {
                return Traced {
                    result,
                    members: attempts,
                    contributors: Vec::new(),
                };
            }
            let Some(name) = fallbacks.next() else { break };
            let (attempt, result) = self.members.invoker.invoke(name, op, None).await;
            attempts.push(attempt);
            outcome = Some(result);
        }
        let last = attempts.last().and_then(|a| a.error_kind);
        let summary: Vec<String> = notes
            .into_iter()
            .chain(attempts.iter().map(|a| {
                format!(
                    "{}: {}",
                    a.strategy,
                    a.error_code.as_deref().unwrap_or("ok")
                )
            }))
            .collect();
        let result = if self.cfg.enable_graceful_degradation && matches!(op, Operation::Templates) {
            Ok(OperationOutput::Templates(TemplatesReport {
                degraded: true,
                message: Some(format!("every strategy failed ({})", summary.join("; "))),
                ..TemplatesReport::default()
            }))
        } else {
            Err(ProviderError::new(
                last.unwrap_or(ProviderErrorKind::Transient),
                "ALL_STRATEGIES_FAILED",
                format!(
                    "the primary and every fallback failed ({})",
                    summary.join("; ")
                ),
            ))
        };
        Traced {
            result,
            members: attempts,
            contributors: Vec::new(),
        }
    }
}

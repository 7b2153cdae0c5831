//! Per-strategy circuit breaker as a pure state machine.
//!
//! closed --(failure_threshold consecutive failures)--> open
//! open --(recovery_timeout elapsed: `tick` or a late `try_acquire`)--> half_open
//! half_open --(a probe succeeds)--> closed;  --(a probe fails)--> open (timer restarts)
//! In half_open at most `half_open_max_calls` probes are in flight at once.
//!
//! An operator can take the decision away from these rules ([`CircuitMode`]): forced open, the
//! circuit rejects every call; forced closed, it admits every call; in both, outcomes and time
//! change nothing (and are not counted). Back to `auto`, the rules resume from the state the
//! circuit is in: a forced-open circuit stays open until its recovery timeout (counted from
//! when it was opened) lets a probe through; a forced-closed one starts counting from zero.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::EpochMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "closed" => Some(CircuitState::Closed),
            "open" => Some(CircuitState::Open),
            "half_open" => Some(CircuitState::HalfOpen),
            _ => None,
        }
    }
}

/// Who decides the circuit's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitMode {
    /// The breaker's own rules (failures, recovery timeout, probes).
    #[default]
    Auto,
    /// Open until an operator says otherwise: every call is rejected with CIRCUIT_OPEN.
    #[serde(alias = "open")]
    ForcedOpen,
    /// Closed until an operator says otherwise: every call goes through, failures do not count.
    #[serde(alias = "closed")]
    ForcedClosed,
}

impl CircuitMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitMode::Auto => "auto",
            CircuitMode::ForcedOpen => "forced_open",
            CircuitMode::ForcedClosed => "forced_closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(CircuitMode::Auto),
            "forced_open" => Some(CircuitMode::ForcedOpen),
            "forced_closed" => Some(CircuitMode::ForcedClosed),
            _ => None,
        }
    }
}

/// Who set a circuit's mode, when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSetting {
    pub source: String,
    pub reason: Option<String>,
    pub at: EpochMillis,
}

/// Circuit-breaker settings; keys left out of a file's `circuit_breaker` take the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct BreakerConfig {
    pub enabled: bool,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// Seconds an open circuit waits before letting probes through.
    pub recovery_timeout: f64,
    /// Probes allowed in flight at once while half open.
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            recovery_timeout: 60.0,
            half_open_max_calls: 1,
        }
    }
}

impl BreakerConfig {
    fn recovery_ms(&self) -> EpochMillis {
        (self.recovery_timeout * 1000.0).round() as EpochMillis
    }
}

/// Partial circuit-breaker settings: a run-time change of the global ones
/// (`circuit_breaker_config`), or a strategy's own (`circuit_breaker` in its definition), laid
/// over the global settings field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive failures that open the circuit: 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub failure_threshold: Option<u32>,
    /// Seconds an open circuit waits: more than 0, at most 86400 (one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub recovery_timeout: Option<f64>,
    /// Probes allowed at once while half open: 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub half_open_max_calls: Option<u32>,
}

impl BreakerPatch {
    /// `base` with the fields this patch sets replaced.
    pub fn over(&self, base: &BreakerConfig) -> BreakerConfig {
        BreakerConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            failure_threshold: self.failure_threshold.unwrap_or(base.failure_threshold),
            recovery_timeout: self.recovery_timeout.unwrap_or(base.recovery_timeout),
            half_open_max_calls: self.half_open_max_calls.unwrap_or(base.half_open_max_calls),
        }
    }

    /// `newer` wins field by field.
    pub fn then(&self, newer: &BreakerPatch) -> BreakerPatch {
        BreakerPatch {
            enabled: newer.enabled.or(self.enabled),
            failure_threshold: newer.failure_threshold.or(self.failure_threshold),
            recovery_timeout: newer.recovery_timeout.or(self.recovery_timeout),
            half_open_max_calls: newer.half_open_max_calls.or(self.half_open_max_calls),
        }
    }
}

/// A state change, for events and persistence.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
    pub at: EpochMillis,
    pub reason: String,
}

/// Leave to call the provider. `probe` marks a half-open probe, whose outcome decides the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "report the call's outcome with on_success, on_failure or release"]
pub struct Permit {
    pub probe: bool,
    /// Which half-open period admitted the probe; a probe from an earlier period is stale.
    period: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreaker {
    pub state: CircuitState,
    pub mode: CircuitMode,
    pub consecutive_failures: u32,
    pub opened_at: Option<EpochMillis>,
    pub last_transition_at: Option<EpochMillis>,
    pub probes_in_flight: u32,
    #[serde(skip)]
    half_open_period: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            state: CircuitState::Closed,
            mode: CircuitMode::Auto,
            consecutive_failures: 0,
            opened_at: None,
            last_transition_at: None,
            probes_in_flight: 0,
            half_open_period: 0,
        }
    }
}

impl CircuitBreaker {
    fn permit(&self, probe: bool) -> Permit {
        Permit {
            probe,
            period: self.half_open_period,
        }
    }

    /// When an open circuit may next let a probe through.
    /// `None` while an operator holds it open.
    pub fn retry_at(&self, cfg: &BreakerConfig) -> Option<EpochMillis> {
        match (self.state, self.opened_at) {
            (CircuitState::Open, Some(at)) if self.mode == CircuitMode::Auto => {
                Some(at + cfg.recovery_ms())
            }
            _ => None,
        }
    }

    fn move_to(&mut self, to: CircuitState, now: EpochMillis, reason: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.last_transition_at = Some(now);
        match to {
            CircuitState::Open => {
                self.opened_at = Some(now);
                self.probes_in_flight = 0;
            }
            CircuitState::HalfOpen => {
                self.probes_in_flight = 0;
                self.half_open_period += 1;
            }
            CircuitState::Closed => {
                self.opened_at = None;
                self.consecutive_failures = 0;
                self.probes_in_flight = 0;
            }
        }
        Transition {
            from,
            to,
            at: now,
            reason,
        }
    }

    /// Open → half-open once the recovery timeout has passed. Called by the background task
    /// and at the start of every call, so a call arriving late sees the transition too.
    pub fn tick(&mut self, cfg: &BreakerConfig, now: EpochMillis) -> Option<Transition> {
        if !self.decides(cfg) {
            return None;
        }
        match self.retry_at(cfg) {
            Some(at) if now >= at => Some(self.move_to(
                CircuitState::HalfOpen,
                now,
                format!("recovery timeout of {}s elapsed", cfg.recovery_timeout),
            )),
            _ => None,
        }
    }

    /// Asks to make a call. `Err` means the provider must not be touched.
    pub fn try_acquire(
        &mut self,
        cfg: &BreakerConfig,
        now: EpochMillis,
    ) -> (Result<Permit, String>, Option<Transition>) {
        match self.mode {
            CircuitMode::ForcedOpen => {
                return (
                    Err("circuit forced open by an operator (mode forced_open)".into()),
                    None,
                );
            }
            CircuitMode::ForcedClosed => return (Ok(self.permit(false)), None),
            CircuitMode::Auto if !cfg.enabled => return (Ok(self.permit(false)), None),
            CircuitMode::Auto => {}
        }
        let transition = self.tick(cfg, now);
        let decision = match self.state {
            CircuitState::Closed => Ok(self.permit(false)),
            CircuitState::Open => Err(format!(
                "circuit open after {} consecutive failures; next probe in {} ms",
                self.consecutive_failures,
                self.retry_at(cfg).map_or(0, |at| (at - now).max(0))
            )),
            CircuitState::HalfOpen if self.probes_in_flight < cfg.half_open_max_calls => {
                self.probes_in_flight += 1;
                Ok(self.permit(true))
            }
            CircuitState::HalfOpen => Err(format!(
                "circuit half open with {} probe(s) already in flight",
                self.probes_in_flight
            )),
        };
        (decision, transition)
    }

    fn end_probe(&mut self, permit: Permit) -> bool {
        if permit.probe
            && permit.period == self.half_open_period
            && self.state == CircuitState::HalfOpen
        {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
            true
        } else {
            false
        }
    }

    pub fn on_success(
        &mut self,
        cfg: &BreakerConfig,
        permit: Permit,
        now: EpochMillis,
    ) -> Option<Transition> {
        if !self.decides(cfg) {
            return None;
        }
        let state = self.state;
        match state {
            CircuitState::Closed => {
                self.consecutive_failures = 0;
                None
            }
            CircuitState::HalfOpen if self.end_probe(permit) => Some(self.move_to(
                CircuitState::Closed,
                now,
                "half-open probe succeeded".into(),
            )),
            // A call admitted before the circuit opened says nothing about recovery.
            _ => None,
        }
    }

    pub fn on_failure(
        &mut self,
        cfg: &BreakerConfig,
        permit: Permit,
        now: EpochMillis,
    ) -> Option<Transition> {
        if !self.decides(cfg) {
            return None;
        }
        let state = self.state;
        match state {
            CircuitState::Closed => {
                self.consecutive_failures += 1;
                (self.consecutive_failures >= cfg.failure_threshold).then(|| {
                    self.move_to(
                        CircuitState::Open,
                        now,
                        format!("{} consecutive failures", self.consecutive_failures),
                    )
                })
            }
            CircuitState::HalfOpen if self.end_probe(permit) => {
                self.consecutive_failures += 1;
                Some(self.move_to(CircuitState::Open, now, "half-open probe failed".into()))
            }
            _ => None,
        }
    }

    /// The call ended without saying anything about the provider's health (e.g. the request
    /// was invalid): give the probe slot back.
    pub fn release(&mut self, permit: Permit) {
        self.end_probe(permit);
    }

    /// Whether the breaker's own rules decide: enabled, and not forced by an operator.
    fn decides(&self, cfg: &BreakerConfig) -> bool {
        cfg.enabled && self.mode == CircuitMode::Auto
    }

    /// An operator's decision. Forcing open opens the circuit (an open one keeps its opening
    /// time, so its recovery timer runs on); forcing closed closes it with the failure count
    /// reset; `Auto` hands the decision back to the rules from the current state. The
    /// transition, if the state changed, carries `reason`.
    pub fn set_mode(
        &mut self,
        mode: CircuitMode,
        now: EpochMillis,
        reason: String,
    ) -> Option<Transition> {
        self.mode = mode;
        match (mode, self.state) {
            (CircuitMode::ForcedOpen, CircuitState::Open) | (CircuitMode::Auto, _) => None,
            (CircuitMode::ForcedOpen, _) => Some(self.move_to(CircuitState::Open, now, reason)),
            (CircuitMode::ForcedClosed, CircuitState::Closed) => {
                self.consecutive_failures = 0;
                None
            }
            (CircuitMode::ForcedClosed, _) => Some(self.move_to(CircuitState::Closed, now, reason)),
        }
    }

    /// Sets the state by hand (restore from the store).
    pub fn restored(
        state: CircuitState,
        consecutive_failures: u32,
        opened_at: Option<EpochMillis>,
        last_transition_at: Option<EpochMillis>,
    ) -> Self {
        Self {
            state,
            mode: CircuitMode::Auto,
            consecutive_failures,
            opened_at,
            last_transition_at,
            probes_in_flight: 0,
            half_open_period: 0,
        }
    }

    /// The same breaker under `mode` (restore from the store).
    pub fn in_mode(self, mode: CircuitMode) -> Self {
        Self { mode, ..self }
    }
}

#[cfg(test)]
mod tests;

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
    pub failure_threshold: Option<u32>,
    /// Seconds an open circuit waits: more than 0, at most 86400 (one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_timeout: Option<f64>,
    /// Probes allowed at once while half open: 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cfg(threshold: u32, max_probes: u32) -> BreakerConfig {
        BreakerConfig {
            enabled: true,
            failure_threshold: threshold,
            recovery_timeout: 10.0,
            half_open_max_calls: max_probes,
        }
    }

    fn fail(b: &mut CircuitBreaker, c: &BreakerConfig, now: i64) -> Option<Transition> {
        let permit = b.try_acquire(c, now).0.expect("admitted");
        b.on_failure(c, permit, now)
    }

    #[test]
    fn opens_after_threshold_consecutive_failures_only() {
        let c = cfg(3, 1);
        let mut b = CircuitBreaker::default();
        assert!(fail(&mut b, &c, 0).is_none());
        assert!(fail(&mut b, &c, 1).is_none());
        let p = b.try_acquire(&c, 2).0.unwrap();
        b.on_success(&c, p, 2);
        assert_eq!(b.consecutive_failures, 0, "a success resets the count");
        fail(&mut b, &c, 3);
        fail(&mut b, &c, 4);
        let t = fail(&mut b, &c, 5).expect("third consecutive failure opens");
        assert_eq!(
            (t.from, t.to, t.at),
            (CircuitState::Closed, CircuitState::Open, 5)
        );
        assert!(b.try_acquire(&c, 6).0.is_err(), "open rejects");
    }

    #[test]
    fn half_opens_after_timeout_and_closes_on_probe_success() {
        let c = cfg(1, 1);
        let mut b = CircuitBreaker::default();
        fail(&mut b, &c, 0);
        assert!(b.tick(&c, 9_999).is_none());
        assert!(b.try_acquire(&c, 9_999).0.is_err());
        let t = b.tick(&c, 10_000).expect("half open on time");
        assert_eq!(t.to, CircuitState::HalfOpen);
        let probe = b.try_acquire(&c, 10_001).0.unwrap();
        assert!(probe.probe);
        assert!(b.try_acquire(&c, 10_001).0.is_err(), "one probe at a time");
        let t = b.on_success(&c, probe, 10_002).unwrap();
        assert_eq!(t.to, CircuitState::Closed);
        assert_eq!(b.opened_at, None);
    }

    #[test]
    fn late_call_sees_half_open_and_failed_probe_restarts_timer() {
        let c = cfg(1, 2);
        let mut b = CircuitBreaker::default();
        fail(&mut b, &c, 0);
        let (res, t) = b.try_acquire(&c, 15_000);
        assert_eq!(t.unwrap().to, CircuitState::HalfOpen);
        let probe = res.unwrap();
        let t = b.on_failure(&c, probe, 15_001).unwrap();
        assert_eq!(t.to, CircuitState::Open);
        assert_eq!(b.retry_at(&c), Some(25_001));
    }

    #[test]
    fn released_probe_frees_its_slot() {
        let c = cfg(1, 1);
        let mut b = CircuitBreaker::default();
        fail(&mut b, &c, 0);
        b.tick(&c, 10_000);
        let p = b.try_acquire(&c, 10_000).0.unwrap();
        b.release(p);
        assert_eq!(b.state, CircuitState::HalfOpen);
        assert!(b.try_acquire(&c, 10_000).0.is_ok());
    }

    #[test]
    fn disabled_breaker_never_rejects() {
        let c = BreakerConfig {
            enabled: false,
            ..cfg(1, 1)
        };
        let mut b = CircuitBreaker::default();
        for t in 0..10 {
            let p = b.try_acquire(&c, t).0.unwrap();
            assert!(b.on_failure(&c, p, t).is_none());
        }
        assert_eq!(b.state, CircuitState::Closed);
    }

    #[test]
    fn an_operator_forces_the_circuit_and_hands_it_back() {
        let c = cfg(2, 1);
        let mut b = CircuitBreaker::default();
        let t = b.set_mode(CircuitMode::ForcedOpen, 0, "maintenance".into());
        assert_eq!(
            t.map(|t| (t.to, t.reason)),
            Some((CircuitState::Open, "maintenance".into()))
        );
        assert!(b.tick(&c, 50_000).is_none(), "no recovery while forced");
        assert!(b.try_acquire(&c, 50_000).0.is_err());
        // Back to auto: the recovery timer ran from the forced opening, so a probe goes out.
        assert!(
            b.set_mode(CircuitMode::Auto, 50_000, "done".into())
                .is_none()
        );
        let (probe, t) = b.try_acquire(&c, 50_000);
        assert_eq!(t.map(|t| t.to), Some(CircuitState::HalfOpen));
        assert!(probe.unwrap().probe);
        // Forced closed: failures go through uncounted, and auto starts counting from zero.
        let t = b.set_mode(CircuitMode::ForcedClosed, 50_001, "reset".into());
        assert_eq!(t.map(|t| t.to), Some(CircuitState::Closed));
        for now in 0..5 {
            assert!(fail(&mut b, &c, 50_002 + now).is_none());
        }
        assert_eq!((b.state, b.consecutive_failures), (CircuitState::Closed, 0));
        b.set_mode(CircuitMode::Auto, 60_000, "auto".into());
        assert!(fail(&mut b, &c, 60_001).is_none());
        assert_eq!(
            fail(&mut b, &c, 60_002).map(|t| t.to),
            Some(CircuitState::Open)
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call { ok: bool },
        Acquire,
        FinishOldest { ok: bool },
        Wait(i64),
        Tick,
        Force(CircuitMode),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            any::<bool>().prop_map(|ok| Step::Call { ok }),
            Just(Step::Acquire),
            any::<bool>().prop_map(|ok| Step::FinishOldest { ok }),
            (0i64..15_000).prop_map(Step::Wait),
            Just(Step::Tick),
            prop_oneof![
                Just(CircuitMode::Auto),
                Just(CircuitMode::ForcedOpen),
                Just(CircuitMode::ForcedClosed)
            ]
            .prop_map(Step::Force),
        ]
    }

    proptest! {
        /// Invariants over any interleaving of calls, concurrent probes, waits and ticks.
        #[test]
        fn breaker_invariants(threshold in 1u32..5, max_probes in 1u32..4,
                              steps in prop::collection::vec(step(), 1..200)) {
            let c = cfg(threshold, max_probes);
            let mut b = CircuitBreaker::default();
            let mut now = 0i64;
            let mut held: Vec<Permit> = Vec::new();
            for s in steps {
                let before = b.state;
                match s {
                    Step::Call { ok } => {
                        let (res, _) = b.try_acquire(&c, now);
                        match res {
                            Ok(p) => {
                                let t = if ok { b.on_success(&c, p, now) } else { b.on_failure(&c, p, now) };
                                if let Some(t) = t {
                                    // Only these edges come out of an outcome.
                                    prop_assert!(matches!((t.from, t.to),
                                        (CircuitState::Closed, CircuitState::Open)
                                        | (CircuitState::HalfOpen, CircuitState::Closed)
                                        | (CircuitState::HalfOpen, CircuitState::Open)));
                                    if t.to == CircuitState::Closed { prop_assert!(ok); }
                                    if t.to == CircuitState::Open { prop_assert!(!ok); }
                                }
                            }
                            Err(_) => prop_assert!(b.state != CircuitState::Closed),
                        }
                    }
                    Step::Acquire => {
                        if let Ok(p) = b.try_acquire(&c, now).0 { held.push(p); }
                    }
                    Step::FinishOldest { ok } => {
                        if !held.is_empty() {
                            let p = held.remove(0);
                            if ok { b.on_success(&c, p, now); } else { b.on_failure(&c, p, now); }
                        }
                    }
                    Step::Wait(ms) => now += ms,
                    Step::Tick => {
                        if let Some(t) = b.tick(&c, now) {
                            prop_assert_eq!((before, t.to), (CircuitState::Open, CircuitState::HalfOpen));
                        }
                    }
                    Step::Force(mode) => {
                        let failures = b.consecutive_failures;
                        let t = b.set_mode(mode, now, "operator".into());
                        match mode {
                            CircuitMode::Auto => {
                                prop_assert!(t.is_none());
                                prop_assert_eq!(b.state, before, "auto resumes from the state it is in");
                                prop_assert_eq!(b.consecutive_failures, failures);
                            }
                            CircuitMode::ForcedOpen => prop_assert_eq!(t.is_some(), before != CircuitState::Open),
                            CircuitMode::ForcedClosed => prop_assert_eq!(t.is_some(), before != CircuitState::Closed),
                        }
                    }
                }
                // Forced, the state is the operator's: nothing else moves it.
                match b.mode {
                    CircuitMode::ForcedOpen => {
                        prop_assert_eq!(b.state, CircuitState::Open);
                        prop_assert!(b.clone().try_acquire(&c, now + 1_000_000).0.is_err());
                        prop_assert!(b.retry_at(&c).is_none());
                    }
                    CircuitMode::ForcedClosed => {
                        prop_assert_eq!(b.state, CircuitState::Closed);
                        prop_assert_eq!(b.consecutive_failures, 0);
                        prop_assert!(b.clone().try_acquire(&c, now).0.is_ok());
                    }
                    CircuitMode::Auto => {}
                }
                prop_assert!(b.probes_in_flight <= c.half_open_max_calls);
                if b.state == CircuitState::HalfOpen {
                    let probes = held.iter().filter(|p| p.probe && p.period == b.half_open_period).count() as u32;
                    prop_assert!(b.probes_in_flight <= probes);
                }
                if b.state == CircuitState::Closed {
                    prop_assert!(b.consecutive_failures < c.failure_threshold);
                    prop_assert!(b.opened_at.is_none());
                }
                if b.state == CircuitState::Open && b.mode == CircuitMode::Auto {
                    prop_assert!(b.opened_at.is_some());
                    // An open circuit past its timeout always lets the next caller probe.
                    let mut copy = b.clone();
                    let later = b.retry_at(&c).unwrap();
                    prop_assert!(copy.try_acquire(&c, later).0.is_ok());
                }
            }
        }
    }
}

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

//! Circuit breakers from the background task: open circuits move to half open on time, and a
//! health check counts as a call (a failure counts against a closed circuit; in half open the
//! check is a probe whose outcome closes or re-opens it; an open circuit is left to its
//! recovery timer).

use crate::app::{Engine, StrategyEntry};
use crate::domain::{EpochMillis, now_millis};
use crate::strategy::CircuitState;

/// Moves open circuits whose recovery timeout has passed to half open.
pub async fn tick_all(engine: &Engine) {
    let global = engine.settings().breaker();
    for entry in engine.entries() {
        let cfg = entry.spec.breaker(&global);
        let t = entry
            .runtime
            .breaker
            .lock()
            .expect("breaker lock")
            .breaker
            .tick(&cfg, now_millis());
        if let Some(t) = t {
            engine.executor().record_transition(&entry, t).await;
        }
    }
}

/// A health check's outcome to the strategy's breaker.
pub async fn account_check(engine: &Engine, entry: &StrategyEntry, ok: bool, now: EpochMillis) {
    let cfg = entry.spec.breaker(&engine.settings().breaker());
    let transition = {
        let mut slot = entry.runtime.breaker.lock().expect("breaker lock");
        let b = &mut slot.breaker;
        let mut t = b.tick(&cfg, now);
        match (b.state, ok) {
            (CircuitState::Closed, false) => {
                if let Ok(p) = b.try_acquire(&cfg, now).0 {
                    t = b.on_failure(&cfg, p, now).or(t);
                }
            }
            (CircuitState::HalfOpen, ok) => {
                if let Ok(p) = b.try_acquire(&cfg, now).0 {
                    t = if ok {
                        b.on_success(&cfg, p, now)
                    } else {
                        b.on_failure(&cfg, p, now)
                    }
                    .or(t);
                }
            }
            _ => {}
        }
        t
    };
    if let Some(t) = transition {
        engine.executor().record_transition(entry, t).await;
    }
}

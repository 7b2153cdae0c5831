//! The strategy core as pure logic: selection policies and criteria, the circuit breaker,
//! and the recent-outcome window they read. No I/O and no clocks: callers pass `now`.

pub mod balancing;
pub mod breaker;
pub mod composition;
pub mod fallback;
pub mod selection;
pub mod window;

pub use breaker::{
    BreakerConfig, BreakerPatch, CircuitBreaker, CircuitMode, CircuitState, ModeSetting, Permit,
    Transition,
};
pub use selection::{
    Candidate, MIN_SAMPLES_FOR_CRITERIA, NoCandidate, Selection, SelectionCriteria,
    SelectionPolicy, SelectorState, Verdict,
};
pub use window::{OutcomeWindow, RecentStats};

//! The live set of strategies. Each entry pairs a definition and its provider with the
//! run-time state (in-flight count, recent outcomes, health, breaker) that outlives updates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::StrategySpec;
use crate::domain::{Capabilities, EpochMillis, HealthStatus};
use crate::providers::Provider;
use crate::store::StrategySource;
use crate::strategy::{Candidate, CircuitBreaker, OutcomeWindow};

/// Run-time state of one strategy; kept across `updateProviderStrategy`.
pub struct StrategyRuntime {
    pub in_flight: AtomicU64,
    pub window: Mutex<OutcomeWindow>,
    pub health: Mutex<HealthStatus>,
    pub breaker: Mutex<BreakerSlot>,
}

pub struct BreakerSlot {
    pub breaker: CircuitBreaker,
    pub last_reason: Option<String>,
}

impl StrategyRuntime {
    pub fn new(health: HealthStatus, breaker: CircuitBreaker, last_reason: Option<String>) -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            window: Mutex::new(OutcomeWindow::default()),
            health: Mutex::new(health),
            breaker: Mutex::new(BreakerSlot {
                breaker,
                last_reason,
            }),
        }
    }

    pub fn health(&self) -> HealthStatus {
        self.health.lock().expect("health lock").clone()
    }
}

/// Counts an operation in flight for as long as it lives.
pub struct InFlightGuard(Arc<StrategyRuntime>);

impl InFlightGuard {
    pub fn new(runtime: Arc<StrategyRuntime>) -> Self {
        runtime.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(runtime)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct StrategyEntry {
    pub spec: StrategySpec,
    pub source: StrategySource,
    pub order: u64,
    pub registered_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub provider: Arc<dyn Provider>,
    pub runtime: Arc<StrategyRuntime>,
}

impl StrategyEntry {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The provider's own capabilities with the declared flags laid over them.
    pub fn capabilities(&self) -> Capabilities {
        self.provider
            .capabilities()
            .with_declared(&self.spec.capabilities)
    }

    pub fn candidate(&self) -> Candidate {
        let health = self.runtime.health();
        Candidate {
            name: self.spec.name.clone(),
            enabled: self.spec.enabled,
            priority: self.spec.priority,
            weight: self.spec.weight,
            order: self.order,
            capabilities: self.capabilities(),
            health: health.state,
            health_message: health.status_message,
            circuit: self
                .runtime
                .breaker
                .lock()
                .expect("breaker lock")
                .breaker
                .state,
            in_flight: self.runtime.in_flight.load(Ordering::SeqCst),
            recent: self.runtime.window.lock().expect("window lock").stats(),
        }
    }
}

#[derive(Default)]
pub struct Registry {
    entries: RwLock<Vec<Arc<StrategyEntry>>>,
}

impl Registry {
    /// All entries in registration order.
    pub fn all(&self) -> Vec<Arc<StrategyEntry>> {
        self.entries.read().expect("registry lock").clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<StrategyEntry>> {
        self.entries
            .read()
            .expect("registry lock")
            .iter()
            .find(|e| e.spec.name == name)
            .cloned()
    }

    /// Adds or replaces (same name) an entry, keeping registration order.
    pub fn put(&self, entry: StrategyEntry) {
        let mut entries = self.entries.write().expect("registry lock");
        let entry = Arc::new(entry);
        match entries.iter().position(|e| e.spec.name == entry.spec.name) {
            Some(i) => entries[i] = entry,
            None => {
                entries.push(entry);
                entries.sort_by_key(|e| e.order);
            }
        }
    }

    pub fn remove(&self, name: &str) -> Option<Arc<StrategyEntry>> {
        let mut entries = self.entries.write().expect("registry lock");
        let i = entries.iter().position(|e| e.spec.name == name)?;
        Some(entries.remove(i))
    }
}

//! The registry: the live set of strategies. Each entry pairs a definition and its provider
//! with the run-time state (in-flight count, recent outcomes, health, breaker) that outlives
//! updates. The registry builds providers from definitions, installs, replaces and removes
//! entries (in memory and in the store), and looks them up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{AppError, AppResult};
use crate::config::StrategySpec;
use crate::domain::{Capabilities, EpochMillis, HealthStatus, OperationType, now_millis};
use crate::providers::{self, Provider, ProviderDeps, composite};
use crate::store::{CircuitRow, Store, StrategyRepo, StrategySource};
use crate::strategy::composition::find_cycle;
use crate::strategy::{Candidate, CircuitBreaker, ModeSetting, OutcomeWindow};

/// How `install` stores a definition: a registration never replaces one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Insert,
    Replace,
}

pub fn already_registered(name: &str) -> AppError {
    AppError::Conflict(format!(
        "strategy '{name}' is already registered; use PUT /api/v1/providers/{name} to change it"
    ))
}

/// Registration order of API strategies starts here; config-file strategies come first, in
/// file order.
const API_ORDER_BASE: u64 = 1_000_000;

/// The registration order of an API strategy stored with sequence number `seq`.
pub fn api_order(seq: i64) -> u64 {
    API_ORDER_BASE + u64::try_from(seq).unwrap_or(0)
}

/// The registration order of a stored file strategy that the file no longer lists: after
/// every file strategy, before every API strategy.
pub const UNLISTED_FILE_ORDER: u64 = API_ORDER_BASE - 1;

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
    /// Who set the breaker's mode, when an operator did.
    pub mode_set: Option<ModeSetting>,
}

impl BreakerSlot {
    /// What the store keeps of this slot.
    pub fn row(&self) -> CircuitRow {
        CircuitRow {
            breaker: self.breaker.clone(),
            last_reason: self.last_reason.clone(),
            mode_set: self.mode_set.clone(),
        }
    }
}

impl StrategyRuntime {
    pub fn new(health: HealthStatus, circuit: CircuitRow) -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            window: Mutex::new(OutcomeWindow::default()),
            health: Mutex::new(health),
            breaker: Mutex::new(BreakerSlot {
                breaker: circuit.breaker,
                last_reason: circuit.last_reason,
                mode_set: circuit.mode_set,
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

    /// Whether this strategy runs `op` when it is named (a `strategy_override`, a composite's
    /// member): an enabled strategy runs anything; a disabled one takes no new work, only
    /// status polls and terminations of the machines it holds.
    pub fn runs_when_named(&self, op: OperationType) -> bool {
        self.spec.enabled || op.tends_existing_machines()
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

pub struct Registry {
    entries: RwLock<Vec<Arc<StrategyEntry>>>,
    /// What providers are built with (the store, the member invoker, the state shelf).
    deps: ProviderDeps,
}

impl Registry {
    pub fn new(deps: ProviderDeps) -> Self {
        Self {
            entries: RwLock::default(),
            deps,
        }
    }

    fn store(&self) -> &Store {
        &self.deps.store
    }

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

    /// The entry named `name`, or the not-found error the routes answer with.
    pub fn entry(&self, name: &str) -> AppResult<Arc<StrategyEntry>> {
        self.get(name)
            .ok_or_else(|| AppError::strategy_not_found(name))
    }

    /// Builds the provider for a (validated) definition.
    pub async fn build(&self, spec: &StrategySpec) -> Result<Arc<dyn Provider>, String> {
        providers::build(spec, &self.deps).await
    }

    /// Adds or replaces (same name) an entry in memory, keeping registration order.
    pub fn put(&self, entry: StrategyEntry) -> Arc<StrategyEntry> {
        let mut entries = self.entries.write().expect("registry lock");
        let entry = Arc::new(entry);
        match entries.iter().position(|e| e.spec.name == entry.spec.name) {
            Some(i) => entries[i] = Arc::clone(&entry),
            None => {
                entries.push(Arc::clone(&entry));
                entries.sort_by_key(|e| e.order);
            }
        }
        entry
    }

    /// Takes an entry out of memory: lookups and selection no longer see it; `restore` puts
    /// it back in its place.
    pub fn withdraw(&self, name: &str) -> Option<Arc<StrategyEntry>> {
        let mut entries = self.entries.write().expect("registry lock");
        let i = entries.iter().position(|e| e.spec.name == name)?;
        Some(entries.remove(i))
    }

    pub fn restore(&self, entry: Arc<StrategyEntry>) {
        let mut entries = self.entries.write().expect("registry lock");
        entries.push(entry);
        entries.sort_by_key(|e| e.order);
    }

    /// Builds the provider, stores the definition and installs the entry. `order` keeps a
    /// replaced entry's place; a new API strategy goes last.
    pub async fn install(
        &self,
        spec: StrategySpec,
        source: StrategySource,
        runtime: Arc<StrategyRuntime>,
        order: Option<u64>,
        write: Write,
    ) -> AppResult<Arc<StrategyEntry>> {
        let provider = self
            .build(&spec)
            .await
            .map_err(|m| AppError::field("strategy_config", m))?;
        let stored = match write {
            Write::Replace => {
                self.store()
                    .upsert_strategy(&spec, source, now_millis())
                    .await?
            }
            // The store decides between concurrent registrations of one name.
            Write::Insert => self
                .store()
                .insert_strategy(&spec, source, now_millis())
                .await?
                .ok_or_else(|| already_registered(&spec.name))?,
        };
        Ok(self.put(StrategyEntry {
            order: order.unwrap_or_else(|| api_order(stored.seq)),
            source,
            registered_at: stored.created_at,
            updated_at: stored.updated_at,
            spec,
            provider,
            runtime,
        }))
    }

    /// Removes a strategy from the store and from memory, with the state its composite
    /// provider kept.
    pub async fn remove(&self, name: &str) -> AppResult<()> {
        self.store().delete_strategy(name).await?;
        self.forget(name);
        Ok(())
    }

    /// Takes a strategy out of memory with the state its composite provider kept (another
    /// replica removed it from the store).
    pub fn forget(&self, name: &str) {
        self.entries
            .write()
            .expect("registry lock")
            .retain(|e| e.spec.name != name);
        self.deps.shelf.forget(name);
    }

    /// Deletes a stored strategy that is not in memory (start-up could not build it); `false`
    /// when the store has none of that name.
    pub async fn remove_unbuilt(&self, name: &str) -> AppResult<bool> {
        Ok(self.store().delete_strategy(name).await?)
    }

    /// Problems with the members of a composite definition (as path, message): members must
    /// be registered, and no strategy may contain itself, directly or through others.
    pub fn check_members(&self, spec: &StrategySpec) -> Vec<(String, String)> {
        let members = composite::members_of(spec);
        let mut errors: Vec<(String, String)> = members
            .iter()
            .filter(|(_, m)| m != &spec.name && self.get(m).is_none())
            .map(|(path, m)| (path.clone(), format!("no strategy named '{m}'")))
            .collect();
        let members_of = |name: &str| -> Vec<String> {
            if name == spec.name {
                return members.iter().map(|(_, m)| m.clone()).collect();
            }
            self.get(name)
                .map(|e| {
                    composite::members_of(&e.spec)
                        .into_iter()
                        .map(|(_, m)| m)
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(cycle) = find_cycle(&spec.name, &members_of)
            && let Some((path, _)) = members.iter().find(|(_, m)| m == &cycle[1])
        {
            errors.push((
                path.clone(),
                format!("would make a cycle: {}", cycle.join(" -> ")),
            ));
        }
        errors
    }

    /// The first strategy that has `name` as a member, if any.
    pub fn user_of(&self, name: &str) -> Option<Arc<StrategyEntry>> {
        self.all().into_iter().find(|e| {
            composite::members_of(&e.spec)
                .iter()
                .any(|(_, m)| m == name)
        })
    }
}

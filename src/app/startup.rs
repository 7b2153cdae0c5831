//! Start-up: the configuration file's strategies reconciled with the stored ones, then every
//! strategy built into the registry with its stored health and circuit.
//!
//! The rule (README, "Strategies from the file and from the API"): the file is authoritative
//! for the names it defines (its definition replaces a stored one, and a file strategy removed
//! from the file is dropped); strategies registered through the API are kept from the store.
//! Registration order: file strategies in file order, then API strategies in registration
//! order.

use std::sync::Arc;

use super::registry::{Registry, StrategyEntry, StrategyRuntime, UNLISTED_FILE_ORDER, api_order};
use crate::config::{Config, StrategySpec};
use crate::domain::{HealthStatus, now_millis};
use crate::providers::Provider;
use crate::store::{
    CircuitRepo, CircuitRow, HealthRepo, Store, StoredStrategy, StrategyRepo, StrategySource,
};

/// Reconciles, builds and installs every strategy. A file strategy that cannot be built, or a
/// file composite with bad members, stops start-up; a stored API strategy with the same
/// problems is logged (and kept in the store, so that nothing registered is lost).
pub async fn load(config: &Config, store: &Store, registry: &Registry) -> anyhow::Result<()> {
    reconcile(&config.providers, store).await?;
    install_stored(&config.providers, store, registry).await?;
    check_composites(registry)
}

/// Brings the store in line with the file: file strategies stored (replacing), file
/// strategies no longer in the file removed.
async fn reconcile(file: &[StrategySpec], store: &Store) -> anyhow::Result<()> {
    let now = now_millis();
    for old in store.list_strategies().await? {
        let in_file = file.iter().any(|p| p.name == old.spec.name);
        if old.source == StrategySource::Config && !in_file {
            tracing::info!(strategy = %old.spec.name, "strategy no longer in the configuration file; removed");
            store.delete_strategy(&old.spec.name).await?;
        } else if old.source == StrategySource::Api && in_file {
            tracing::warn!(strategy = %old.spec.name, "the configuration file defines a strategy registered through the API; the file's definition wins");
        }
    }
    for spec in file {
        store
            .upsert_strategy(spec, StrategySource::Config, now)
            .await?;
    }
    Ok(())
}

fn order_of(stored: &StoredStrategy, file: &[StrategySpec]) -> u64 {
    match stored.source {
        StrategySource::Config => file
            .iter()
            .position(|s| s.name == stored.spec.name)
            .map_or(UNLISTED_FILE_ORDER, |i| i as u64),
        StrategySource::Api => api_order(stored.seq),
    }
}

/// Builds every stored strategy, with the health and circuit state stored for it.
async fn install_stored(
    file: &[StrategySpec],
    store: &Store,
    registry: &Registry,
) -> anyhow::Result<()> {
    let health = store.load_health().await?;
    let circuits = store.load_circuits().await?;
    for st in store.list_strategies().await? {
        let name = st.spec.name.clone();
        let provider = match registry.build(&st.spec).await {
            Ok(p) => p,
            Err(e) if st.source == StrategySource::Api => {
                tracing::error!(strategy = %name, error = %e, "cannot build a stored strategy; skipped");
                continue;
            }
            Err(e) => anyhow::bail!("strategy '{name}': {e}"),
        };
        let runtime = Arc::new(stored_runtime(&name, &health, &circuits));
        registry.put(entry_of(&st, file, provider, runtime));
    }
    Ok(())
}

/// Brings the registry in line with the store after another replica changed it: strategies
/// new or changed there are built and installed (a changed one keeps its run-time state),
/// those gone are dropped. A strategy that cannot be built is logged and left as it was.
pub async fn refresh(
    file: &[StrategySpec],
    store: &Store,
    registry: &Registry,
) -> anyhow::Result<()> {
    let stored = store.list_strategies().await?;
    let (health, circuits) = (store.load_health().await?, store.load_circuits().await?);
    for st in &stored {
        let name = &st.spec.name;
        let existing = registry.get(name);
        if existing
            .as_ref()
            .is_some_and(|e| e.updated_at == st.updated_at && e.spec == st.spec)
        {
            continue;
        }
        let provider = match registry.build(&st.spec).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(strategy = %name, error = %e, "cannot build a strategy another replica stored; kept as it was");
                continue;
            }
        };
        let runtime = existing.map_or_else(
            || Arc::new(stored_runtime(name, &health, &circuits)),
            |e| Arc::clone(&e.runtime),
        );
        registry.put(entry_of(st, file, provider, runtime));
        tracing::info!(strategy = %name, "strategy registered or changed by another replica installed");
    }
    for entry in registry.all() {
        if !stored.iter().any(|s| s.spec.name == entry.name()) {
            registry.forget(entry.name());
            tracing::info!(
                strategy = entry.name(),
                "strategy removed by another replica dropped"
            );
        }
    }
    Ok(())
}

/// The registry entry of stored strategy `st`, built into `provider`.
fn entry_of(
    st: &StoredStrategy,
    file: &[StrategySpec],
    provider: Arc<dyn Provider>,
    runtime: Arc<StrategyRuntime>,
) -> StrategyEntry {
    StrategyEntry {
        order: order_of(st, file),
        source: st.source,
        registered_at: st.created_at,
        updated_at: st.updated_at,
        spec: st.spec.clone(),
        provider,
        runtime,
    }
}

/// The run-time state of strategy `name` as stored.
fn stored_runtime(
    name: &str,
    health: &[(String, HealthStatus)],
    circuits: &[(String, CircuitRow)],
) -> StrategyRuntime {
    let h = health
        .iter()
        .find(|(n, _)| n == name)
        .map_or_else(HealthStatus::unknown, |(_, h)| h.clone());
    let circuit = circuits
        .iter()
        .find(|(n, _)| n == name)
        .map_or_else(CircuitRow::default, |(_, c)| c.clone());
    StrategyRuntime::new(h, circuit)
}

/// Composite members must be registered and must not form a cycle.
fn check_composites(registry: &Registry) -> anyhow::Result<()> {
    for entry in registry.all() {
        let problems: Vec<String> = registry
            .check_members(&entry.spec)
            .into_iter()
            .map(|(path, m)| format!("{path}: {m}"))
            .collect();
        if problems.is_empty() {
            continue;
        }
        if entry.source == StrategySource::Config {
            anyhow::bail!("strategy '{}': {}", entry.name(), problems.join("; "));
        }
        tracing::error!(strategy = entry.name(), problems = %problems.join("; "), "stored composite strategy has bad members; its calls to them will fail");
    }
    Ok(())
}

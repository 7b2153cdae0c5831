//! Shared state kept in step between replicas: each listens on the store's change channel
//! (`store::Change`) and reads back what another replica changed: registrations, run-time
//! settings, a breaker, a health, the alert rules. A new HostFactory request wakes the
//! leader's reconciler.
//! Notices sent while the listening session was down are lost, so after every (re)connect,
//! and every [`RESYNC_EVERY`] as well, everything is read back.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::alerts::Alerts;
use crate::app::Engine;
use crate::hostfactory::HostFactory;
use crate::store::{CHANGES_CHANNEL, Change, Location, Notice};

/// How often everything is read back whatever the notices said.
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// The pause before connecting again after the listening session failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Listens until shutdown; does nothing on SQLite.
pub async fn run(hf: Arc<HostFactory>, alerts: Arc<Alerts>, shutdown: CancellationToken) {
    let Location::Postgres(url) = hf.engine().store().location().clone() else {
        return shutdown.cancelled().await;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            e = listen(&url, &hf, &alerts) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' changes; connecting again");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_AFTER) => {}
        }
    }
}

/// Listens on one session, applying other replicas' notices, until the session fails.
async fn listen(url: &str, hf: &HostFactory, alerts: &Alerts) -> sqlx::Error {
    let engine = hf.engine();
    let own = engine.store().replica_id();
    let mut listener = match PgListener::connect(url).await {
        Ok(listener) => listener,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(CHANGES_CHANNEL).await {
        return e;
    }
    resync(engine, alerts).await;
    let mut resync_at = tokio::time::Instant::now() + RESYNC_EVERY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(resync_at) => {
                resync(engine, alerts).await;
                resync_at = tokio::time::Instant::now() + RESYNC_EVERY;
            }
            received = listener.try_recv() => match received {
                Err(e) => return e,
                Ok(Some(n)) => match Notice::parse(n.payload()) {
                    Some(notice) if notice.origin != own => {
                        apply(engine, hf, alerts, notice.change).await
                    }
                    Some(_) => {}
                    None => tracing::warn!(payload = n.payload(), "unknown change notice ignored"),
                },
                // The session dropped and was made again: what it missed is read back.
                Ok(None) => resync(engine, alerts).await,
            }
        }
    }
}

async fn apply(engine: &Engine, hf: &HostFactory, alerts: &Alerts, change: Change) {
    let done = match &change {
        Change::Strategies => engine.refresh_strategies().await,
        Change::Settings => engine.settings().reload().await.map_err(Into::into),
        Change::Circuit(name) | Change::Health(name) => {
            engine.refresh_runtime(Some(name)).await.map_err(Into::into)
        }
        Change::Requests => {
            hf.wake_reconciler();
            Ok(())
        }
        Change::AlertRules => {
            alerts.reload_rules().await;
            Ok(())
        }
    };
    if let Err(e) = done {
        tracing::warn!(change = ?change, error = %e, "cannot read back another replica's change; the next full read retries");
    }
}

/// Reads every shared state back.
async fn resync(engine: &Engine, alerts: &Alerts) {
    alerts.reload_rules().await;
    let done = async {
        engine.refresh_strategies().await?;
        engine.settings().reload().await?;
        engine.refresh_runtime(None).await?;
        anyhow::Ok(())
    };
    if let Err(e) = done.await {
        tracing::warn!(error = %e, "cannot read back the shared state; retried in {RESYNC_EVERY:?}");
    }
}

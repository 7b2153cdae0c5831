//! Several replicas on one PostgreSQL database. Every replica answers every route; background
//! work that changes the cloud or the shared state (reconciliation and provisioning, health
//! checks, breaker timers, alert evaluation, pruning, the interruption-notice queues) runs on
//! one replica at a time, the leader ([`election`]). What one replica changes in the shared
//! state (registrations, run-time settings, breakers, health) the others read back when told
//! of it ([`sync`]). On SQLite the one process is always the leader and neither task runs.

pub mod election;
pub mod sync;

use std::sync::Arc;

use sqlx::{AnyConnection, Connection};
use tokio::sync::{Mutex, watch};

/// Whether this process is the leader now, and a way to wait until it is.
#[derive(Clone)]
pub struct Leadership {
    leading: Arc<watch::Sender<bool>>,
    /// The connection that holds (or tries for) the leader lock. It outlives the election
    /// task: at shutdown the lock is held until [`Leadership::release`], after the service's
    /// last provisioning tasks ended, so that no new leader takes up a request this one is
    /// still provisioning.
    session: Arc<Mutex<Option<AnyConnection>>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("leading", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    fn new(leading: bool) -> Self {
        Self {
            leading: Arc::new(watch::Sender::new(leading)),
            session: Arc::default(),
        }
    }

    /// The one process on a database no other process writes: always the leader.
    pub fn sole() -> Self {
        Self::new(true)
    }

    /// A replica among others: not the leader until [`election::run`] wins the lock.
    pub fn contested() -> Self {
        Self::new(false)
    }

    /// Gives the leader lock up (closing its session), at the end of shutdown.
    pub async fn release(&self) {
        self.set(false);
        if let Some(conn) = self.session.lock().await.take()
            && let Err(e) = conn.close().await
        {
            tracing::warn!(error = %e, "cannot close the leader lock's session; the server ends it");
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Completes once this process leads (at once when it does).
    pub async fn until_leader(&self) {
        let mut seen = self.leading.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = seen.wait_for(|leading| *leading).await;
    }

    fn set(&self, leading: bool) {
        self.leading.send_replace(leading);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn waiting_for_leadership_ends_when_it_is_won_and_lost() {
        assert!(Leadership::sole().is_leader());
        let replica = Leadership::contested();
        assert!(!replica.is_leader());
        let waiting = tokio::spawn({
            let replica = replica.clone();
            async move { replica.until_leader().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        replica.set(true);
        waiting.await.unwrap();
        assert!(replica.is_leader());
        replica.until_leader().await;
        replica.set(false);
        assert!(!replica.is_leader());
    }
}

//! The admission lock: requestMachines checks maxNumber and then records the request, and
//! requestReturnMachines looks machines up and then marks them; both under this lock, so that
//! two calls never both pass their checks on the same counts. In one process a mutex does it;
//! replicas on PostgreSQL also take a session-level advisory lock, held on a pooled
//! connection until the guard is released.

use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::OwnedMutexGuard;

use super::{Backend, Store, StoreResult};

/// The advisory lock's key, apart from the write and leader locks.
const ADMISSION_LOCK_KEY: i64 = 0x6f68_6670_0003;

/// Held while a call checks and records; see [`AdmissionGuard::release`].
pub struct AdmissionGuard {
    _local: OwnedMutexGuard<()>,
    /// PostgreSQL: the session holding the advisory lock.
    session: Option<PoolConnection<Any>>,
}

impl Store {
    /// Takes the admission lock (waiting for it).
    pub async fn admission(&self) -> StoreResult<AdmissionGuard> {
        let local = std::sync::Arc::clone(&self.admission).lock_owned().await;
        let session = match self.backend() {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(ADMISSION_LOCK_KEY)
                    .execute(&mut *conn)
                    .await?;
                Some(conn)
            }
        };
        Ok(AdmissionGuard {
            _local: local,
            session,
        })
    }
}

impl AdmissionGuard {
    /// Gives the lock up and the session back to the pool.
    pub async fn release(mut self) {
        if let Some(mut conn) = self.session.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(ADMISSION_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                tracing::warn!(error = %e, "cannot release the admission lock; closing its session");
                drop(conn.detach());
            }
        }
    }
}

impl Drop for AdmissionGuard {
    /// A guard dropped without [`AdmissionGuard::release`] (an error, a cancelled call)
    /// closes its session rather than return it to the pool still locked: the server frees
    /// the lock when the session ends.
    fn drop(&mut self) {
        if let Some(conn) = self.session.take() {
            drop(conn.detach());
        }
    }
}

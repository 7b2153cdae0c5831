//! SQLite through sqlx: connection set-up, embedded migrations, and one repository module per
//! table group. Rows are converted to domain values here and nowhere else, only through
//! `FromRow`/`query_as` or `try_get` (see `rows`). What each aggregate offers is a trait of
//! `repo` ([`StrategyRepo`], [`HostFactoryRepo`], …); [`Store`] implements them on SQLite.

mod alerts;
mod audit;
mod backup;
mod breaker;
mod events;
mod health;
mod hostfactory;
mod metrics;
mod repo;
mod request_cache;
mod rows;
mod secrets;
mod settings;
mod sim_instances;
mod strategies;
#[cfg(test)]
pub(crate) mod tests;
mod tracked;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;

use crate::domain::EpochMillis;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use audit::AuditQuery;
pub use backup::{BackupSummary, backup};
pub use breaker::CircuitRow;
pub use events::{EventFilter, EventQuery};
pub use health::HealthHistoryEntry;
pub use metrics::{LATENCY_BOUNDS_MS, MetricBucket};
pub use repo::{
    AlertRepo, AuditRepo, CircuitRepo, EventRepo, HealthRepo, HfCounts, HfPruned, HostFactoryRepo,
    MetricsRepo, SettingsRepo, SimInstanceRepo, StrategyHoldings, StrategyRepo, TemplateUsage,
};
pub use request_cache::RequestSnapshot;
pub use secrets::SecretKey;
pub use sim_instances::SimInstanceRow;
pub use strategies::{StoredStrategy, StrategySource};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub type StoreResult<T> = Result<T, sqlx::Error>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    secrets: SecretKey,
    requests: Arc<request_cache::RequestCache>,
    tracked: Arc<tracked::TrackedMachines>,
}

/// The database file and its WAL companions hold secrets and HostFactory's machines: mode
/// 0600, also for files an earlier version created 0644. SQLite gives new companions the
/// database file's mode.
fn owner_only(path: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for file in [
        path.to_string(),
        format!("{path}-wal"),
        format!("{path}-shm"),
    ] {
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                anyhow::bail!("cannot make {file} readable by its owner only: {e}")
            }
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database file, in WAL mode, applies migrations, makes
    /// the files readable by their owner only, and seals secrets stored in clear before.
    pub async fn open(
        path: &str,
        busy_timeout_ms: u64,
        max_connections: u32,
        secrets: SecretKey,
    ) -> anyhow::Result<Self> {
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                anyhow::anyhow!("cannot create database directory {}: {e}", parent.display())
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a process crash (kill -9); only power loss can drop
            // the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(busy_timeout_ms))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {path}: {e}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot apply migrations to {path}: {e}"))?;
        owner_only(path)?;
        let store = Self {
            pool,
            secrets,
            requests: Arc::default(),
            tracked: Arc::default(),
        };
        let sealed = store
            .seal_clear_secrets()
            .await
            .map_err(|e| anyhow::anyhow!("cannot seal stored secrets in {path}: {e}"))?;
        if sealed > 0 {
            tracing::info!(
                strategies = sealed,
                "sealed secrets stored in clear by an earlier version"
            );
        }
        Ok(store)
    }

    /// A write transaction, `BEGIN IMMEDIATE`: it takes SQLite's write lock at its start,
    /// waiting up to the busy timeout for it. A deferred one (`BEGIN`) that reads before it
    /// writes cannot wait: when another connection committed in between, its upgrade to a
    /// writer fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT), whatever the busy
    /// timeout. Every transaction of this store writes, so every one starts here.
    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Readiness: the database answers and every embedded migration is applied.
    pub async fn ready(&self) -> Result<(), String> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| format!("database not reachable: {e}"))?;
        let expected = MIGRATOR.iter().count() as i64;
        if applied < expected {
            return Err(format!("{applied} of {expected} migrations applied"));
        }
        Ok(())
    }

    /// One prune batch: `sql` deletes at most `?2` (`batch`) rows older than `?1` (`before`).
    /// Returns how many went.
    async fn prune_by_age(&self, sql: &str, before: EpochMillis, batch: u32) -> StoreResult<u64> {
        Ok(sqlx::query(sql)
            .bind(before)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// A history's prune round: `by_age` deletes rows older than `?1` (`before`), then
    /// `by_count` rows beyond the newest `?1` (`keep`); each at most `?2` (`batch`) rows.
    /// Returns how many rows went.
    async fn prune_history(
        &self,
        by_age: &str,
        before: EpochMillis,
        by_count: &str,
        keep: u32,
        batch: u32,
    ) -> StoreResult<u64> {
        let old = self.prune_by_age(by_age, before, batch).await?;
        let surplus = sqlx::query(by_count)
            .bind(keep)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(old + surplus)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

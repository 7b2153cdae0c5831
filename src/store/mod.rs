//! The database through sqlx: SQLite (the default, one process) or PostgreSQL (replicas),
//! both through sqlx's `Any` driver with one set of statements, chosen by `database.url`.
//! Connection set-up, embedded migrations (one set per backend, kept in step: a test compares
//! the schemas), and one repository module per table group. Rows are converted to domain values
//! here and nowhere else, only through `FromRow`/`query_as` or `try_get` (see `rows`). What
//! each aggregate offers is a trait of `repo` ([`StrategyRepo`], [`HostFactoryRepo`], …);
//! [`Store`] implements them.
//!
//! Statements use numbered placeholders (`$1`), which both drivers read, and SQL both engines
//! run; where the two differ (JSON functions, how a write transaction starts, event ids) the
//! store asks its [`Backend`]. Statements with long lists of values take their placeholders
//! from [`Backend::list`]: SQLite finds a named parameter (`$N`, `?N`) by walking a list, so a
//! statement of thousands of them spends most of its time binding.

mod admission;
mod alerts;
mod audit;
mod backup;
mod breaker;
mod changes;
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

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor};

use crate::domain::EpochMillis;
use crate::replica::Leadership;

pub use admission::AdmissionGuard;
pub use audit::AuditQuery;
pub use backup::{BackupSummary, backup};
pub use breaker::CircuitRow;
pub use changes::{CHANNEL as CHANGES_CHANNEL, Change, Notice};
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

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub type StoreResult<T> = Result<T, sqlx::Error>;

/// The engine behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One process on a file: the default.
    Sqlite,
    /// A server shared by replicas.
    Postgres,
}

impl Backend {
    /// Placeholders for `n` values, the first being the statement's value number `first`:
    /// `$first, …` on PostgreSQL, bare `?`s (numbered by position) on SQLite. A statement that
    /// takes any placeholder from here takes all of them from here, in binding order, and binds
    /// a value once per placeholder.
    fn list(self, first: usize, n: usize) -> String {
        let one = |i: usize| match self {
            Self::Sqlite => "?".to_string(),
            Self::Postgres => format!("${i}"),
        };
        (first..first + n).map(one).collect::<Vec<_>>().join(", ")
    }

    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// `column`'s JSON text, its top-level `key` as text.
    fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Self::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Self::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    /// A table of the strings of `column`'s JSON array, one row each, in a column `value`.
    fn json_strings(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("json_each({column})"),
            Self::Postgres => format!("jsonb_array_elements_text({column}::jsonb) AS value"),
        }
    }
}

/// Where the database is: a SQLite file or a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    SqliteFile(String),
    Postgres(String),
}

impl Location {
    /// `database.url` when set (`sqlite://FILE` or `postgres://…`/`postgresql://…`), else the
    /// file `path`.
    pub fn parse(url: Option<&str>, path: &str) -> Result<Self, String> {
        let Some(url) = url else {
            return Ok(Self::SqliteFile(path.to_string()));
        };
        if let Some(file) = url.strip_prefix("sqlite://") {
            let file = file.split('?').next().unwrap_or_default();
            if file.is_empty() {
                return Err("a sqlite:// URL names a file: sqlite://data/ohfp.db".into());
            }
            return Ok(Self::SqliteFile(file.to_string()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        Err(format!(
            "'{}' is neither sqlite://FILE nor postgres://…",
            redact_url(url)
        ))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::SqliteFile(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// For logs and messages: a PostgreSQL URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Self::SqliteFile(path) => path.clone(),
            Self::Postgres(url) => redact_url(url),
        }
    }
}

/// `url` with the password of its user part replaced.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_string(),
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    location: Location,
    /// This process among the replicas (random at each start).
    replica_id: Arc<str>,
    /// Whether this process runs the background work (always on SQLite).
    leadership: Leadership,
    secrets: SecretKey,
    requests: Arc<request_cache::RequestCache>,
    tracked: Arc<tracked::TrackedMachines>,
    /// This process's half of the admission lock (`admission`).
    admission: Arc<tokio::sync::Mutex<()>>,
}

/// How long a PostgreSQL statement may wait for a lock or run, so that a stuck server is an
/// error the caller sees rather than a request that hangs.
const POSTGRES_STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// The key of the transaction-level advisory lock every PostgreSQL write transaction takes
/// (see [`Store::write`]); the leader lock (`crate::replica`) uses another.
const WRITE_LOCK_KEY: i64 = 0x6f68_6670_0001;

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
    /// Opens (creating if needed) the SQLite file at `path`: see [`Store::connect`].
    pub async fn open(
        path: &str,
        busy_timeout_ms: u64,
        max_connections: u32,
        secrets: SecretKey,
    ) -> anyhow::Result<Self> {
        Self::connect(
            &Location::SqliteFile(path.to_string()),
            busy_timeout_ms,
            max_connections,
            secrets,
        )
        .await
    }

    /// Connects, applies migrations and seals secrets stored in clear before. A SQLite file is
    /// created if needed, in WAL mode, readable by its owner only; PostgreSQL's database must
    /// exist. Each process that writes a PostgreSQL database shares it with others (replicas),
    /// so the in-memory copies of requests and tracked machines, which only this process's
    /// writes keep true, are off there.
    pub async fn connect(
        location: &Location,
        busy_timeout_ms: u64,
        max_connections: u32,
        secrets: SecretKey,
    ) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let shown = location.shown();
        let backend = location.backend();
        let url = match location {
            Location::SqliteFile(path) => {
                if let Some(parent) = Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        anyhow::anyhow!(
                            "cannot create database directory {}: {e}",
                            parent.display()
                        )
                    })?;
                }
                format!("sqlite://{path}?mode=rwc")
            }
            Location::Postgres(url) => url.clone(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| anyhow::anyhow!("database {shown}: {e}"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match backend {
                        // In WAL mode NORMAL survives a process crash (kill -9); only power
                        // loss can drop the last commits. Foreign keys are on by sqlx's default.
                        Backend::Sqlite => {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute(&*format!("PRAGMA busy_timeout = {busy_timeout_ms}"))
                                .await?;
                        }
                        Backend::Postgres => {
                            conn.execute(&*format!(
                                "SET statement_timeout = {POSTGRES_STATEMENT_TIMEOUT_MS}"
                            ))
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {shown}: {e}"))?;
        backend
            .migrator()
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot apply migrations to {shown}: {e}"))?;
        if let Location::SqliteFile(path) = location {
            owner_only(path)?;
        }
        let single_writer = backend == Backend::Sqlite;
        let store = Self {
            pool,
            location: location.clone(),
            replica_id: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
            leadership: match backend {
                Backend::Sqlite => Leadership::sole(),
                Backend::Postgres => Leadership::contested(),
            },
            secrets,
            requests: Arc::new(request_cache::RequestCache::new(single_writer)),
            tracked: Arc::new(tracked::TrackedMachines::new(single_writer)),
            admission: Arc::default(),
        };
        let sealed = store
            .seal_clear_secrets()
            .await
            .map_err(|e| anyhow::anyhow!("cannot seal stored secrets in {shown}: {e}"))?;
        if sealed > 0 {
            tracing::info!(
                strategies = sealed,
                "sealed secrets stored in clear by an earlier version"
            );
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.location.backend()
    }

    /// Where the database is: the replica machinery opens its own connections to it.
    pub fn location(&self) -> &Location {
        &self.location
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    /// A write transaction. SQLite: `BEGIN IMMEDIATE`, which takes the write lock at its
    /// start, waiting up to the busy timeout for it. A deferred one (`BEGIN`) that reads
    /// before it writes cannot wait: when another connection committed in between, its upgrade
    /// to a writer fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT), whatever
    /// the busy timeout. PostgreSQL: a transaction that first takes one advisory lock shared by
    /// every replica, so that write transactions run one at a time there too; the checks the
    /// repository makes before it writes (a name free, a machine not yet returned, maxNumber)
    /// rely on that, as they do on SQLite's single writer. Every transaction of this store
    /// writes, so every one starts here.
    async fn write(&self) -> StoreResult<sqlx::Transaction<'static, Any>> {
        match self.backend() {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Readiness: the database answers and every embedded migration is applied.
    pub async fn ready(&self) -> Result<(), String> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| format!("database not reachable: {e}"))?;
        let expected = self.backend().migrator().iter().count() as i64;
        if applied < expected {
            return Err(format!("{applied} of {expected} migrations applied"));
        }
        Ok(())
    }

    /// One prune batch: `sql` deletes at most `$2` (`batch`) rows older than `$1` (`before`).
    /// Returns how many went.
    async fn prune_by_age(&self, sql: &str, before: EpochMillis, batch: u32) -> StoreResult<u64> {
        Ok(sqlx::query(sql)
            .bind(before)
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// A history's prune round: `by_age` deletes rows older than `$1` (`before`), then
    /// `by_count` rows beyond the newest `$1` (`keep`); each at most `$2` (`batch`) rows.
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
            .bind(i64::from(keep))
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(old + surplus)
    }

    /// Gives up the leader lock, then closes the pool.
    pub async fn close(&self) {
        self.leadership.release().await;
        self.pool.close().await;
    }
}

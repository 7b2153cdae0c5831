//! `ohfp backup FILE`: a consistent copy of the database while the service writes to it.
//!
//! `VACUUM INTO` reads the database in one read transaction (in WAL mode writers go on
//! meanwhile) and writes a compacted snapshot as of that transaction's start. sqlx has no
//! binding of SQLite's online-backup API; through libsqlite3-sys it would take unsafe code, and
//! its copy starts again whenever another connection writes between two steps. `VACUUM INTO`
//! is plain SQL, copies in one read transaction, and leaves out free pages. The copy is one
//! self-contained file (no `-wal` to carry along).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub bytes: u64,
    pub strategies: i64,
    pub hostfactory_requests: i64,
}

/// Copies the database at `db` into `dest`, a file that must not exist; `dest` is created 0600
/// before SQLite writes into it, and removed again when the copy fails.
pub async fn backup(db: &str, dest: &Path, busy_timeout_ms: u64) -> anyhow::Result<BackupSummary> {
    let shown = dest.display();
    anyhow::ensure!(
        Path::new(db).is_file(),
        "no database at {db}: is database.path the one the service uses (same --config, OHFP_CONFIG, OHFP_ENV)?"
    );
    // create_new: an existing file is never touched. SQLite's VACUUM INTO accepts an empty file.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{shown} exists: ohfp backup never overwrites a file")
            }
            _ => anyhow::anyhow!("cannot create {shown}: {e}"),
        })?;
    match copy(db, dest, busy_timeout_ms).await {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            Err(e)
        }
    }
}

async fn connect(
    path: &str,
    busy_timeout_ms: u64,
    read_only: bool,
) -> anyhow::Result<SqliteConnection> {
    SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
        .read_only(read_only)
        .busy_timeout(Duration::from_millis(busy_timeout_ms))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open database {path}: {e}"))
}

async fn copy(db: &str, dest: &Path, busy_timeout_ms: u64) -> anyhow::Result<BackupSummary> {
    let target = dest
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", dest.display()))?;
    // Not read-only: a reader of a WAL database may have to recover the WAL index, and the
    // service's own connections are read-write too. Nothing is written to the database.
    let mut source = connect(db, busy_timeout_ms, false).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut source)
        .await
        .map_err(|e| anyhow::anyhow!("cannot copy {db} into {target}: {e}"))?;
    source.close().await?;
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot sync {target}: {e}"))?;
    let mut copy = connect(target, busy_timeout_ms, true).await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await?;
    anyhow::ensure!(check == "ok", "the copy in {target} is damaged: {check}");
    let strategies = sqlx::query_scalar("SELECT COUNT(*) FROM strategies")
        .fetch_one(&mut copy)
        .await?;
    let hostfactory_requests = sqlx::query_scalar("SELECT COUNT(*) FROM hf_requests")
        .fetch_one(&mut copy)
        .await?;
    copy.close().await?;
    Ok(BackupSummary {
        bytes: std::fs::metadata(dest)?.len(),
        strategies,
        hostfactory_requests,
    })
}

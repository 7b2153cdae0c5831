//! The leader: whichever replica holds a PostgreSQL session-level advisory lock, on a
//! connection of its own. A replica that is not the leader tries for the lock every
//! [`TRY_EVERY`]; the leader checks its session as often. When the leader dies its session
//! ends (at once for a killed process: the kernel closes the socket; within
//! [`IDLE_SESSION_TIMEOUT`] for a host cut off from the server, which then ends the silent
//! session) and the next try of another replica wins. A leader whose session fails stops
//! leading before it tries again, so that two replicas never both believe they lead for
//! longer than one check.

use std::time::Duration;

use serde_json::json;
use sqlx::{AnyConnection, Connection};
use tokio_util::sync::CancellationToken;

use super::Leadership;
use crate::app::events::EventBus;
use crate::domain::EventKind;
use crate::store::{Location, Store};

/// The advisory lock's key, apart from the one write transactions take.
const LEADER_LOCK_KEY: i64 = 0x6f68_6670_0002;
/// How often a follower tries for the lock, and the leader checks its session.
const TRY_EVERY: Duration = Duration::from_millis(500);
/// How long one try or check may take before the session counts as failed: long enough that
/// a loaded server or host does not make a live leader step down (a dead leader's session ends
/// on its own, without this).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// A leader cut off from the server loses its session (and the lock) this long after its
/// last check.
const IDLE_SESSION_TIMEOUT: &str = "10s";

/// Runs the election for `store`'s process until shutdown; the lock itself is released by
/// [`Leadership::release`]. Does nothing on SQLite.
pub async fn run(store: Store, events: std::sync::Arc<EventBus>, shutdown: CancellationToken) {
    let Location::Postgres(url) = store.location() else {
        return shutdown.cancelled().await;
    };
    let leadership = store.leadership();
    loop {
        let failed = match connect(url).await {
            Ok(conn) => {
                *leadership.session.lock().await = Some(conn);
                match hold(leadership, &events, &shutdown).await {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if leadership.is_leader() {
            leadership.set(false);
            events.emit(
                EventKind::LeadershipChanged,
                None,
                json!({"leader": false, "reason": failed.to_string()}),
            );
        }
        // Dropping a failed session closes it; the server frees its lock.
        leadership.session.lock().await.take();
        tracing::warn!(error = %failed, "the leader lock's session failed; connecting again");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRY_EVERY) => {}
        }
    }
}

async fn connect(url: &str) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = tokio::time::timeout(CHECK_TIMEOUT * 2, AnyConnection::connect(url))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)??;
    sqlx::query(&format!(
        "SET idle_session_timeout = '{IDLE_SESSION_TIMEOUT}'"
    ))
    .execute(&mut conn)
    .await?;
    sqlx::query("SET application_name = 'ohfp leader lock'")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Tries for the lock, or checks the session while it is held, every [`TRY_EVERY`], until
/// shutdown (`Ok`) or a failed session (`Err`).
async fn hold(
    leadership: &Leadership,
    events: &EventBus,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut tick = tokio::time::interval(TRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let mut session = leadership.session.lock().await;
        let conn = session.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let leading = leadership.is_leader();
        let check = async {
            if leading {
                sqlx::query("SELECT 1").execute(&mut *conn).await?;
                Ok(true)
            } else {
                sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                    .bind(LEADER_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await
            }
        };
        let holds = tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        if holds && !leading {
            leadership.set(true);
            tracing::info!("this replica is the leader now: it runs the background work");
            events.emit(EventKind::LeadershipChanged, None, json!({"leader": true}));
        }
    }
}

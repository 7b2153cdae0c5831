//! The machines the reconciler tracks every round (neither terminated nor failed), kept in
//! memory so that a round over thousands of machines does not read them all from SQLite.
//!
//! Loaded from the database once, then kept by the store's own writes: each write of machine
//! rows asks SQLite for the rows as stored (`RETURNING *`), takes this set's lock while it
//! still holds SQLite's write lock, commits, and applies the rows. Writes are thus applied in
//! commit order, and the first load cannot interleave with one. A loader takes its
//! database connection before the lock, so that a writer waiting for the lock never holds the
//! last free connection it needs.

use std::collections::HashMap;

use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, MutexGuard};

use super::StoreResult;
use super::hostfactory::TRACKED;
use crate::domain::MachineState;
use crate::hostfactory::model::HfMachine;

#[derive(Debug)]
pub(super) struct TrackedMachines {
    /// `None` until the first read loads it, and always when not `enabled`.
    by_id: Mutex<Option<HashMap<String, HfMachine>>>,
    /// Off when other processes write the database too (replicas on PostgreSQL): then every
    /// read goes to the database.
    enabled: bool,
}

impl Default for TrackedMachines {
    fn default() -> Self {
        Self::new(true)
    }
}

pub(super) fn is_tracked(m: &HfMachine) -> bool {
    m.state != MachineState::Terminated && !m.failed
}

/// By strategy, then id: the order the reconciler batches them in.
fn sort(machines: &mut [HfMachine]) {
    machines.sort_by(|a, b| (&a.strategy, &a.machine_id).cmp(&(&b.strategy, &b.machine_id)));
}

impl TrackedMachines {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            by_id: Mutex::default(),
            enabled,
        }
    }

    /// The tracked machines by strategy (then id), read from the database on `conn` the
    /// first time.
    pub(super) async fn read(&self, mut conn: PoolConnection<Any>) -> StoreResult<Vec<HfMachine>> {
        if !self.enabled {
            let mut machines: Vec<HfMachine> =
                sqlx::query_as(TRACKED).fetch_all(&mut *conn).await?;
            sort(&mut machines);
            return Ok(machines);
        }
        let mut held = self.by_id.lock().await;
        if held.is_none() {
            let loaded: Vec<HfMachine> = sqlx::query_as(TRACKED).fetch_all(&mut *conn).await?;
            *held = Some(
                loaded
                    .into_iter()
                    .map(|m| (m.machine_id.clone(), m))
                    .collect(),
            );
        }
        drop(conn);
        let mut machines: Vec<HfMachine> = held.iter().flat_map(|m| m.values().cloned()).collect();
        sort(&mut machines);
        Ok(machines)
    }

    /// Of machines `ids`, those tracked (cloned), and the ids that are not (or all of them
    /// before the first read).
    pub(super) async fn split(&self, ids: &[String]) -> (Vec<HfMachine>, Vec<String>) {
        let held = self.by_id.lock().await;
        let Some(by_id) = held.as_ref() else {
            return (Vec::new(), ids.to_vec());
        };
        let mut found = Vec::new();
        let mut rest = Vec::new();
        for id in ids {
            match by_id.get(id) {
                Some(m) => found.push(m.clone()),
                None => rest.push(id.clone()),
            }
        }
        (found, rest)
    }

    /// Taken before a write transaction commits (see the module's note).
    pub(super) async fn hold(&self) -> TrackedGuard<'_> {
        TrackedGuard(self.by_id.lock().await)
    }
}

pub(super) struct TrackedGuard<'a>(MutexGuard<'a, Option<HashMap<String, HfMachine>>>);

impl TrackedGuard<'_> {
    /// Applies machine rows as a committed write stored them.
    pub(super) fn apply(&mut self, stored: Vec<HfMachine>) {
        let Some(by_id) = self.0.as_mut() else {
            // Not loaded yet: the first read will see these rows in the database.
            return;
        };
        for m in stored {
            if is_tracked(&m) {
                by_id.insert(m.machine_id.clone(), m);
            } else {
                by_id.remove(&m.machine_id);
            }
        }
    }
}

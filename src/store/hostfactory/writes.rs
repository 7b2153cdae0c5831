//! The write steps the repository's methods share, and the eviction of what they touched from
//! the in-memory copy of requests.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{Any, FromRow};

use super::PRUNABLE_ACQUIRES;
use crate::domain::{EpochMillis, ProvisioningApi};
use crate::hostfactory::model::{HfMachine, HfRequest};
use crate::store::rows::bind_all;
use crate::store::{Backend, HfPruned, Store, StoreResult};

impl Store {
    pub(super) async fn claim(&self, ids: &[String], now: EpochMillis) -> StoreResult<()> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE hf_requests SET claimed_at = {}
                 WHERE claimed_at IS NULL AND request_id IN ({})",
                self.backend().list(1, 1),
                self.backend().list(2, chunk.len())
            );
            bind_all(sqlx::query(&sql).bind(now), chunk)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub(super) async fn prune_hf(&self, before: EpochMillis, batch: u32) -> StoreResult<HfPruned> {
        // The machines first (they refer to their requests), then the requests; both
        // statements pick the same requests: those left with no machine stay prunable.
        let mut tx = self.write().await?;
        let mut deleted = [0; 2];
        for (table, n) in ["hf_machines", "hf_requests"].into_iter().zip(&mut deleted) {
            *n = sqlx::query(&format!(
                "DELETE FROM {table} WHERE request_id IN ({PRUNABLE_ACQUIRES})"
            ))
            .bind(before)
            .bind(i64::from(batch))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        let [machines, acquires] = deleted;
        let returns = sqlx::query(
            "DELETE FROM hf_requests WHERE request_id IN
               (SELECT r.request_id FROM hf_requests r
                WHERE r.kind = 'return' AND r.updated_at < $1
                  AND NOT EXISTS (SELECT 1 FROM hf_machines m WHERE m.return_request_id = r.request_id)
                ORDER BY r.updated_at, r.request_id LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(HfPruned {
            machines,
            requests: acquires + returns,
        })
    }

    /// `head IN (…)` over `machine_ids`, with `set` bound first, in one transaction; then
    /// forgets the requests holding them. `head` takes its placeholders from
    /// [`Backend::list`], `set.len()` of them.
    pub(super) async fn update_machines(
        &self,
        head: &str,
        set: &[Set<'_>],
        machine_ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let mut stored = Vec::new();
        for (sql, chunk) in in_chunks(self.backend(), head, set.len() + 1, machine_ids, RETURNING) {
            let mut q = sqlx::query(&sql);
            for value in set {
                q = match *value {
                    Set::Text(text) => q.bind(text),
                    Set::Time(at) => q.bind(at),
                };
            }
            stored.extend(returned(bind_all(q, chunk).fetch_all(&mut *tx).await?)?);
        }
        self.commit_machines(tx, stored).await?;
        self.requests
            .evict_machines(machine_ids.iter().map(String::as_str), []);
        Ok(())
    }

    /// Commits `tx`, whose statements stored `stored` (as `RETURNING *` gave them), and applies
    /// them to the tracked machines, in commit order (see `store::tracked`).
    pub(super) async fn commit_machines(
        &self,
        tx: sqlx::Transaction<'static, Any>,
        stored: Vec<HfMachine>,
    ) -> StoreResult<()> {
        let mut tracked = self.tracked.hold().await;
        tx.commit().await?;
        tracked.apply(stored);
        Ok(())
    }

    /// After machines `machines` were written: forgets the requests they name (a machine new
    /// to the copy), those holding them in the copy (whose return request may differ from the
    /// one given), and `ids`.
    pub(super) fn evict_observed<'a>(
        &self,
        machines: &'a [HfMachine],
        ids: impl IntoIterator<Item = &'a str>,
    ) {
        let named = machines.iter().flat_map(|m| {
            std::iter::once(m.request_id.as_str()).chain(m.return_request_id.as_deref())
        });
        self.requests.evict_machines(
            machines.iter().map(|m| m.machine_id.as_str()),
            named.chain(ids),
        );
    }
}

/// Rows per upsert statement: [`UPSERT_COLUMNS`] values each, well under SQLite's 32,766
/// variables and PostgreSQL's 65,535.
const UPSERT_ROWS: usize = 200;
const UPSERT_COLUMNS: usize = 23;

/// Inserts `machines`, or updates those stored: many rows per statement (one statement per
/// machine made a round over thousands of machines spend most of its time in statements). A
/// statement may name a machine once only, so a machine given twice starts a new statement,
/// which keeps the outcome of upserting them one by one, in order.
pub(super) async fn upsert_machines(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    machines: &[HfMachine],
) -> StoreResult<Vec<HfMachine>> {
    let mut stored = Vec::with_capacity(machines.len());
    let mut start = 0;
    while start < machines.len() {
        let mut ids = HashSet::new();
        let end = machines[start..]
            .iter()
            .take(UPSERT_ROWS)
            .position(|m| !ids.insert(m.machine_id.as_str()))
            .map_or_else(
                || (start + UPSERT_ROWS).min(machines.len()),
                |dup| start + dup,
            );
        let rows = &machines[start..end];
        let values: Vec<String> = (0..rows.len())
            .map(|r| format!("({})", backend.list(r * UPSERT_COLUMNS + 1, UPSERT_COLUMNS)))
            .collect();
        // Columns of the stored row are qualified: PostgreSQL reads a bare name in DO UPDATE
        // as ambiguous with `excluded`, SQLite accepts either.
        let sql = format!(
            "INSERT INTO hf_machines (machine_id, request_id, template_id, strategy, state, failed, message,
             private_ip, public_ip, private_dns, instance_type, price_type, launch_time, resource_id,
             provider_api, reclaim_notice, reclaimed_at, return_request_id, return_sent_at, created_at, updated_at,
             delivered, reclaim_deadline) VALUES {}
             ON CONFLICT(machine_id) DO UPDATE SET state = excluded.state, failed = excluded.failed,
              delivered = CASE WHEN excluded.delivered > hf_machines.delivered
                               THEN excluded.delivered ELSE hf_machines.delivered END,
              message = excluded.message,
              private_ip = COALESCE(excluded.private_ip, hf_machines.private_ip),
              public_ip = COALESCE(excluded.public_ip, hf_machines.public_ip),
              private_dns = COALESCE(excluded.private_dns, hf_machines.private_dns),
              instance_type = COALESCE(excluded.instance_type, hf_machines.instance_type),
              price_type = COALESCE(excluded.price_type, hf_machines.price_type),
              launch_time = COALESCE(excluded.launch_time, hf_machines.launch_time),
              resource_id = COALESCE(excluded.resource_id, hf_machines.resource_id),
              provider_api = COALESCE(excluded.provider_api, hf_machines.provider_api),
              reclaim_notice = COALESCE(excluded.reclaim_notice, hf_machines.reclaim_notice),
              reclaimed_at = COALESCE(hf_machines.reclaimed_at, excluded.reclaimed_at),
              reclaim_deadline = COALESCE(hf_machines.reclaim_deadline, excluded.reclaim_deadline),
              updated_at = excluded.updated_at
             RETURNING *",
            values.join(", ")
        );
        let mut q = sqlx::query_as::<_, HfMachine>(&sql);
        for m in rows {
            q = q
                .bind(&m.machine_id)
                .bind(&m.request_id)
                .bind(&m.template_id)
                .bind(&m.strategy)
                .bind(m.state.as_str())
                .bind(i64::from(m.failed))
                .bind(&m.message)
                .bind(&m.private_ip)
                .bind(&m.public_ip)
                .bind(&m.private_dns)
                .bind(&m.instance_type)
                .bind(&m.price_type)
                .bind(m.launch_time)
                .bind(&m.resource_id)
                .bind(m.provider_api.map(ProvisioningApi::as_str))
                .bind(&m.reclaim_notice)
                .bind(m.reclaimed_at)
                .bind(&m.return_request_id)
                .bind(m.return_sent_at)
                .bind(m.created_at)
                .bind(m.updated_at)
                .bind(i64::from(m.delivered))
                .bind(m.reclaim_deadline);
        }
        stored.extend(q.fetch_all(&mut *tx).await?);
        start = end;
    }
    Ok(stored)
}

/// A value bound before the machine ids of [`Store::update_machines`].
pub(super) enum Set<'a> {
    Text(&'a str),
    Time(EpochMillis),
}

/// `head IN (…)` for each chunk of `ids` small enough for one statement, with the chunk;
/// `head` has `first - 1` placeholders of its own, from [`Backend::list`].
pub(super) fn in_chunks<'a>(
    backend: Backend,
    head: &'a str,
    first: usize,
    ids: &'a [String],
    tail: &'a str,
) -> impl Iterator<Item = (String, &'a [String])> {
    ids.chunks(500).map(move |chunk| {
        let sql = format!("{head} IN ({}){tail}", backend.list(first, chunk.len()));
        (sql, chunk)
    })
}

/// Inserts return request `r` and marks `machine_ids` (those not already being returned) as
/// returned by it.
pub(super) async fn insert_return(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    r: &HfRequest,
    machine_ids: &[String],
) -> StoreResult<Vec<HfMachine>> {
    sqlx::query(
        "INSERT INTO hf_requests (request_id, kind, requested_count, state, message, attempts, created_at, updated_at)
         VALUES ($1, 'return', $2, $3, $4, 0, $5, $5)",
    )
    .bind(&r.request_id)
    .bind(r.requested_count)
    .bind(r.state.as_str())
    .bind(&r.message)
    .bind(r.created_at)
    .execute(&mut *tx)
    .await?;
    let head = format!(
        "UPDATE hf_machines SET return_request_id = {}, updated_at = {}
         WHERE return_request_id IS NULL AND machine_id",
        backend.list(1, 1),
        backend.list(2, 1)
    );
    let mut stored = Vec::new();
    for (sql, chunk) in in_chunks(backend, &head, 3, machine_ids, RETURNING) {
        let q = sqlx::query(&sql).bind(&r.request_id).bind(r.created_at);
        stored.extend(returned(bind_all(q, chunk).fetch_all(&mut *tx).await?)?);
    }
    Ok(stored)
}

/// Machine statements give back the rows as stored, for the tracked machines.
const RETURNING: &str = " RETURNING *";

/// The machine rows a `RETURNING *` statement gave back.
fn returned(rows: Vec<AnyRow>) -> StoreResult<Vec<HfMachine>> {
    rows.iter().map(HfMachine::from_row).collect()
}

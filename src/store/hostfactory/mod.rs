//! HostFactory requests and machines.

mod rows;
mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::FromRow;

use self::rows::{MachineCount, OpenPlacement, RequestCount};
use self::writes::{Set, in_chunks, insert_return, upsert_machines};
use super::rows::bind_all;
use super::{
    Change, HfCounts, HfPruned, HostFactoryRepo, RequestSnapshot, Store, StoreResult,
    StrategyHoldings, TemplateUsage,
};
use crate::domain::{EpochMillis, ProvisioningApi};
use crate::hostfactory::model::{HfMachine, HfRequest, RequestState};

/// The machines the reconciler tracks, every round. Served by the partial index
/// `hf_machines_tracked` (migration 0003), whose WHERE is this one word for word: SQLite uses a
/// partial index only then.
pub(super) const TRACKED: &str =
    "SELECT * FROM hf_machines WHERE state != 'terminated' AND failed = 0 ORDER BY strategy";

/// Failed machines whose termination is not accepted yet, every round; served by the partial
/// index `hf_machines_to_terminate` (migration 0003).
pub(super) const TO_TERMINATE: &str = "SELECT * FROM hf_machines
     WHERE failed = 1 AND return_sent_at IS NULL AND state != 'terminated' ORDER BY strategy";

/// Machines that still need their strategy (the reconciler polls them, or terminates them
/// after they failed), with how many there are; the oldest `$2`.
const HELD_MACHINES: &str = "SELECT machine_id, COUNT(*) OVER () FROM hf_machines
     WHERE strategy = $1 AND state != 'terminated' AND (failed = 0 OR return_sent_at IS NULL)
     ORDER BY created_at, machine_id LIMIT $2";

/// Of unclaimed acquire requests `r`, those that still hold something: provisioned (in progress
/// or done), or ended (cancelled, or short at the pending timeout) with live machines not being
/// returned, such as one a fleet placed after its request was cancelled.
const UNCLAIMED_WITH_WORK: &str = "(r.state IN ('in_progress', 'done')
     OR (r.state = 'failed' AND EXISTS (SELECT 1 FROM hf_machines m WHERE m.request_id = r.request_id
         AND m.return_request_id IS NULL AND m.failed = 0 AND m.state != 'terminated')))";

/// Acquire requests whose machines are not made yet and may land on strategy `$1`.
const HELD_REQUESTS: &str = "SELECT request_id, COUNT(*) OVER () FROM hf_requests
     WHERE kind = 'acquire' AND state IN ('pending', 'provisioning')
       AND (provider_name = $1 OR provider_name IS NULL)
     ORDER BY created_at, request_id LIMIT $2";

/// Acquire requests that are over, with every machine of theirs gone, all unchanged since
/// `$1`; the oldest `$2`. A machine is gone when terminated, or failed with its termination
/// accepted (failed machines are not polled after that); a machine returned by a return
/// request newer than `$1` keeps its acquire request.
pub(super) const PRUNABLE_ACQUIRES: &str = "SELECT r.request_id FROM hf_requests r
     WHERE r.kind = 'acquire' AND r.state IN ('done', 'failed') AND r.updated_at < $1
       AND NOT EXISTS (SELECT 1 FROM hf_machines m WHERE m.request_id = r.request_id
           AND NOT ((m.state = 'terminated' OR (m.failed = 1 AND m.return_sent_at IS NOT NULL))
                    AND m.updated_at < $1
                    AND (m.return_request_id IS NULL
                         OR EXISTS (SELECT 1 FROM hf_requests rr
                                    WHERE rr.request_id = m.return_request_id AND rr.updated_at < $1))))
     ORDER BY r.updated_at, r.request_id LIMIT $2";

#[async_trait]
impl HostFactoryRepo for Store {
    async fn insert_hf_request(&self, r: &HfRequest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hf_requests (request_id, kind, template_id, template, requested_count, provider_name,
                 strategy, state, message, resource_id, provider_api, attempts, created_at, updated_at,
                 claimed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.request_id)
        .bind(r.kind.as_str())
        .bind(&r.template_id)
        .bind(r.template.as_ref().map(Value::to_string))
        .bind(r.requested_count)
        .bind(&r.provider_name)
        .bind(&r.strategy)
        .bind(r.state.as_str())
        .bind(&r.message)
        .bind(&r.resource_id)
        .bind(r.provider_api.map(ProvisioningApi::as_str))
        .bind(r.attempts)
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.claimed_at)
        .execute(&self.pool)
        .await?;
        self.requests.evict_requests([r.request_id.as_str()]);
        self.announce(Change::Requests).await;
        Ok(())
    }

    async fn insert_return_request(
        &self,
        r: &HfRequest,
        machine_ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let stored = insert_return(&mut tx, self.backend(), r, machine_ids).await?;
        self.commit_machines(tx, stored).await?;
        self.requests.evict_machines(
            machine_ids.iter().map(String::as_str),
            [r.request_id.as_str()],
        );
        self.announce(Change::Requests).await;
        Ok(())
    }

    async fn claim_requests(&self, ids: &[String], now: EpochMillis) -> StoreResult<()> {
        let claimed = self.claim(ids, now).await;
        // Also after a failure: the chunks before it are written.
        self.requests.evict_requests(ids.iter().map(String::as_str));
        claimed
    }

    async fn unclaimed_requests(&self, before: EpochMillis) -> StoreResult<Vec<HfRequest>> {
        let sql = format!(
            "SELECT * FROM hf_requests r WHERE claimed_at IS NULL AND kind = 'acquire'
                 AND created_at < $1 AND {UNCLAIMED_WITH_WORK} ORDER BY created_at"
        );
        sqlx::query_as(&sql)
            .bind(before)
            .fetch_all(&self.pool)
            .await
    }

    async fn cancel_unclaimed(
        &self,
        request_id: &str,
        message: &str,
        ret: &HfRequest,
    ) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.write().await?;
        // The write first: it takes the write lock, and finds nothing once the request is claimed.
        let sql = format!(
            "UPDATE hf_requests AS r SET state = 'failed', message = $2, updated_at = $3
             WHERE request_id = $1 AND claimed_at IS NULL AND kind = 'acquire'
                 AND {UNCLAIMED_WITH_WORK}"
        );
        let cancelled = sqlx::query(&sql)
            .bind(request_id)
            .bind(message)
            .bind(ret.created_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if cancelled == 0 {
            return Ok(None);
        }
        let machine_ids: Vec<String> = sqlx::query_scalar(
            "SELECT machine_id FROM hf_machines WHERE request_id = $1 AND return_request_id IS NULL
                 AND failed = 0 AND state != 'terminated' ORDER BY created_at, machine_id",
        )
        .bind(request_id)
        .fetch_all(&mut *tx)
        .await?;
        let ret = HfRequest {
            requested_count: machine_ids.len() as i64,
            state: if machine_ids.is_empty() {
                RequestState::Done
            } else {
                RequestState::InProgress
            },
            ..ret.clone()
        };
        let stored = insert_return(&mut tx, self.backend(), &ret, &machine_ids).await?;
        self.commit_machines(tx, stored).await?;
        self.requests.evict_machines(
            machine_ids.iter().map(String::as_str),
            [request_id, ret.request_id.as_str()],
        );
        Ok(Some(machine_ids))
    }

    async fn hf_requests(&self, ids: &[String]) -> StoreResult<Vec<HfRequest>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT * FROM hf_requests WHERE request_id IN ({})",
                self.backend().list(1, chunk.len())
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn hf_request_snapshots(
        &self,
        ids: &[String],
    ) -> StoreResult<Vec<Option<Arc<RequestSnapshot>>>> {
        let (mut found, generation) = self.requests.get(ids);
        let mut missing: Vec<String> = ids
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort_unstable();
        missing.dedup();
        let requests = self.hf_requests(&missing).await?;
        let machines = self.hf_machines_of(&missing).await?;
        let read: Vec<Arc<RequestSnapshot>> = RequestSnapshot::group(requests, machines)
            .into_iter()
            .map(Arc::new)
            .collect();
        self.requests.fill(generation, &read);
        // By id, not by a scan of what was read per id: a round settles a thousand requests.
        let read: HashMap<&str, &Arc<RequestSnapshot>> = read
            .iter()
            .map(|s| (s.request.request_id.as_str(), s))
            .collect();
        for (id, slot) in ids.iter().zip(&mut found) {
            if slot.is_none() {
                *slot = read.get(id.as_str()).map(|s| Arc::clone(s));
            }
        }
        Ok(found)
    }

    async fn hf_requests_in(&self, states: &[RequestState]) -> StoreResult<Vec<HfRequest>> {
        let sql = format!(
            "SELECT * FROM hf_requests WHERE state IN ({}) ORDER BY created_at",
            self.backend().list(1, states.len())
        );
        let mut q = sqlx::query_as(&sql);
        for s in states {
            q = q.bind(s.as_str());
        }
        q.fetch_all(&self.pool).await
    }

    async fn start_provisioning(&self, request_id: &str, now: EpochMillis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE hf_requests SET state = 'provisioning', attempts = attempts + 1, updated_at = $2
             WHERE request_id = $1",
        )
        .bind(request_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.requests.evict_requests([request_id]);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_provisioning(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        strategy: Option<&str>,
        resource_id: Option<&str>,
        provider_api: Option<ProvisioningApi>,
        machines: &[HfMachine],
        now: EpochMillis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE hf_requests SET state = $2, message = $3, strategy = COALESCE($4, strategy),
                 resource_id = COALESCE($5, resource_id), provider_api = COALESCE($6, provider_api), updated_at = $7
             WHERE request_id = $1",
        )
        .bind(request_id)
        .bind(state.as_str())
        .bind(message)
        .bind(strategy)
        .bind(resource_id)
        .bind(provider_api.map(ProvisioningApi::as_str))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let stored = upsert_machines(&mut tx, self.backend(), machines).await?;
        self.commit_machines(tx, stored).await?;
        self.evict_observed(machines, [request_id]);
        Ok(())
    }

    async fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        now: EpochMillis,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE hf_requests SET state = $2, message = $3, updated_at = $4 WHERE request_id = $1")
            .bind(request_id)
            .bind(state.as_str())
            .bind(message)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.requests.evict_requests([request_id]);
        Ok(())
    }

    async fn save_observations(&self, machines: &[HfMachine]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let stored = upsert_machines(&mut tx, self.backend(), machines).await?;
        self.commit_machines(tx, stored).await?;
        self.evict_observed(machines, []);
        Ok(())
    }

    async fn hf_machines_of(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(400) {
            let n = chunk.len();
            let sql = format!(
                "SELECT * FROM hf_machines WHERE request_id IN ({}) OR return_request_id IN ({})
                 ORDER BY created_at, machine_id",
                self.backend().list(1, n),
                self.backend().list(n + 1, n)
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk.iter().chain(chunk) {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn hf_machines_by_ids(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>> {
        // Machines HostFactory gives back are live, so mostly tracked: no read for those.
        let (mut out, rest) = self.tracked.split(ids).await;
        for (sql, chunk) in in_chunks(
            self.backend(),
            "SELECT * FROM hf_machines WHERE machine_id",
            1,
            &rest,
            "",
        ) {
            let rows = bind_all(sqlx::query(&sql), chunk)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                out.push(HfMachine::from_row(row)?);
            }
        }
        Ok(out)
    }

    async fn hf_machines_by_keys(&self, keys: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out: Vec<HfMachine> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for chunk in keys.chunks(300) {
            let n = chunk.len();
            let sql = format!(
                "SELECT * FROM hf_machines WHERE machine_id IN ({}) OR private_dns IN ({}) OR private_ip IN ({})",
                self.backend().list(1, n),
                self.backend().list(n + 1, n),
                self.backend().list(2 * n + 1, n)
            );
            let mut q = sqlx::query_as::<_, HfMachine>(&sql);
            for k in chunk.iter().chain(chunk).chain(chunk) {
                q = q.bind(k);
            }
            for m in q.fetch_all(&self.pool).await? {
                if seen.insert(m.machine_id.clone()) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    async fn hf_machines_to_track(&self) -> StoreResult<Vec<HfMachine>> {
        self.tracked.read(self.pool.acquire().await?).await
    }

    async fn hf_failed_unterminated(&self) -> StoreResult<Vec<HfMachine>> {
        sqlx::query_as(TO_TERMINATE).fetch_all(&self.pool).await
    }

    async fn hf_machines_not_returned(&self) -> StoreResult<Vec<HfMachine>> {
        sqlx::query_as(
            "SELECT * FROM hf_machines WHERE return_request_id IS NULL AND failed = 0 ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
    }

    async fn note_termination_problem(
        &self,
        machine_ids: &[String],
        message: &str,
    ) -> StoreResult<()> {
        let head = format!(
            "UPDATE hf_machines SET message = {} WHERE failed = 0 AND machine_id",
            self.backend().list(1, 1)
        );
        self.update_machines(&head, &[Set::Text(message)], machine_ids)
            .await
    }

    async fn mark_return_sent(&self, machine_ids: &[String], now: EpochMillis) -> StoreResult<()> {
        let head = format!(
            "UPDATE hf_machines SET return_sent_at = {}, updated_at = {},
                message = CASE WHEN failed = 1 THEN message ELSE '' END
             WHERE machine_id",
            self.backend().list(1, 1),
            self.backend().list(2, 1)
        );
        self.update_machines(&head, &[Set::Time(now), Set::Time(now)], machine_ids)
            .await
    }

    async fn hf_holdings(&self, strategy: &str, first: u32) -> StoreResult<StrategyHoldings> {
        let mut tx = self.write().await?;
        let mut read = async |query: &'static str| -> StoreResult<(Vec<String>, u64)> {
            let rows: Vec<(String, i64)> = sqlx::query_as(query)
                .bind(strategy)
                .bind(i64::from(first))
                .fetch_all(&mut *tx)
                .await?;
            let count = rows
                .first()
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            Ok((rows.into_iter().map(|(id, _)| id).collect(), count))
        };
        let (machines, machine_count) = read(HELD_MACHINES).await?;
        let (requests, request_count) = read(HELD_REQUESTS).await?;
        tx.commit().await?;
        Ok(StrategyHoldings {
            machines,
            machine_count,
            requests,
            request_count,
        })
    }

    async fn hf_template_usage(&self, template_id: &str) -> StoreResult<TemplateUsage> {
        // One read transaction, so both reads see the same moment: read apart, a request that
        // placed its machines and finished in between would be counted in neither.
        let mut tx = self.write().await?;
        let live: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT instance_type FROM hf_machines WHERE template_id = $1 AND failed = 0 AND state != 'terminated'",
        )
        .bind(template_id)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<OpenPlacement> = sqlx::query_as(
            "SELECT r.request_id, r.requested_count, m.machine_id, m.instance_type
             FROM hf_requests r LEFT JOIN hf_machines m ON m.request_id = r.request_id AND m.failed = 0
             WHERE r.kind = 'acquire' AND r.template_id = $1
               AND r.state IN ('pending', 'provisioning', 'in_progress')
             ORDER BY r.request_id",
        )
        .bind(template_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut open: Vec<(String, i64, Vec<Option<String>>)> = Vec::new();
        for r in rows {
            if open.last().is_none_or(|(last, _, _)| last != &r.request_id) {
                open.push((r.request_id, r.requested_count, Vec::new()));
            }
            if let (Some(_), Some((_, _, types))) = (&r.machine_id, open.last_mut()) {
                types.push(r.instance_type);
            }
        }
        Ok((live, open.into_iter().map(|(_, n, t)| (n, t)).collect()))
    }

    async fn prune_finished(&self, before: EpochMillis, batch: u32) -> StoreResult<HfPruned> {
        let pruned = self.prune_hf(before, batch).await;
        // Deletions name no request up front, and a failure may follow a committed part:
        // forget the whole copy (pruning is rare).
        self.requests.clear();
        pruned
    }

    async fn hf_counts(&self) -> StoreResult<HfCounts> {
        let requests: Vec<RequestCount> = sqlx::query_as(
            "SELECT kind, state, COUNT(*) AS n FROM hf_requests GROUP BY kind, state ORDER BY kind, state",
        )
        .fetch_all(&self.pool)
        .await?;
        let machines: Vec<MachineCount> = sqlx::query_as(
            "SELECT state, COUNT(*) AS n FROM hf_machines GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(HfCounts {
            requests: requests.into_iter().map(|r| (r.0, r.1, r.2)).collect(),
            machines: machines.into_iter().map(|m| (m.0, m.1)).collect(),
        })
    }
}

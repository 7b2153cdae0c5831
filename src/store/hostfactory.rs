//! HostFactory requests and machines.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::rows::{count, flag, json_opt, named_opt, parsed, placeholders};
use super::{
    HfCounts, HfPruned, HostFactoryRepo, Store, StoreResult, StrategyHoldings, TemplateUsage,
};
use crate::domain::{EpochMillis, MachineState, ProvisioningApi};
use crate::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};

impl FromRow<'_, SqliteRow> for HfRequest {
    fn from_row(r: &SqliteRow) -> sqlx::Result<Self> {
        Ok(HfRequest {
            request_id: r.try_get("request_id")?,
            kind: parsed(r, "kind")?,
            template_id: r.try_get("template_id")?,
            template: json_opt(r, "template")?,
            requested_count: r.try_get("requested_count")?,
            provider_name: r.try_get("provider_name")?,
            strategy: r.try_get("strategy")?,
            state: parsed(r, "state")?,
            message: r.try_get("message")?,
            resource_id: r.try_get("resource_id")?,
            provider_api: named_opt(r, "provider_api")?,
            attempts: r.try_get("attempts")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            claimed_at: r.try_get("claimed_at")?,
        })
    }
}

impl FromRow<'_, SqliteRow> for HfMachine {
    fn from_row(r: &SqliteRow) -> sqlx::Result<Self> {
        Ok(HfMachine {
            machine_id: r.try_get("machine_id")?,
            request_id: r.try_get("request_id")?,
            template_id: r.try_get("template_id")?,
            strategy: r.try_get("strategy")?,
            state: parsed(r, "state")?,
            failed: flag(r, "failed")?,
            delivered: flag(r, "delivered")?,
            message: r.try_get("message")?,
            private_ip: r.try_get("private_ip")?,
            public_ip: r.try_get("public_ip")?,
            private_dns: r.try_get("private_dns")?,
            instance_type: r.try_get("instance_type")?,
            price_type: r.try_get("price_type")?,
            launch_time: r.try_get("launch_time")?,
            resource_id: r.try_get("resource_id")?,
            provider_api: named_opt(r, "provider_api")?,
            reclaim_notice: r.try_get("reclaim_notice")?,
            reclaimed_at: r.try_get("reclaimed_at")?,
            reclaim_deadline: r.try_get("reclaim_deadline")?,
            return_request_id: r.try_get("return_request_id")?,
            return_sent_at: r.try_get("return_sent_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// A row of the open-request half of [`HostFactoryRepo::hf_template_usage`].
#[derive(sqlx::FromRow)]
struct OpenPlacement {
    request_id: String,
    requested_count: i64,
    machine_id: Option<String>,
    instance_type: Option<String>,
}

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
/// after they failed), with how many there are; the oldest `?2`.
const HELD_MACHINES: &str = "SELECT machine_id, COUNT(*) OVER () FROM hf_machines
     WHERE strategy = ?1 AND state != 'terminated' AND (failed = 0 OR return_sent_at IS NULL)
     ORDER BY created_at, machine_id LIMIT ?2";

/// Of unclaimed acquire requests `r`, those that still hold something: provisioned (in progress
/// or done), or ended (cancelled, or short at the pending timeout) with live machines not being
/// returned, such as one a fleet placed after its request was cancelled.
const UNCLAIMED_WITH_WORK: &str = "(r.state IN ('in_progress', 'done')
     OR (r.state = 'failed' AND EXISTS (SELECT 1 FROM hf_machines m WHERE m.request_id = r.request_id
         AND m.return_request_id IS NULL AND m.failed = 0 AND m.state != 'terminated')))";

/// Acquire requests whose machines are not made yet and may land on strategy `?1`.
const HELD_REQUESTS: &str = "SELECT request_id, COUNT(*) OVER () FROM hf_requests
     WHERE kind = 'acquire' AND state IN ('pending', 'provisioning')
       AND (provider_name = ?1 OR provider_name IS NULL)
     ORDER BY created_at, request_id LIMIT ?2";

/// Acquire requests that are over, with every machine of theirs gone, all unchanged since
/// `?1`; the oldest `?2`. A machine is gone when terminated, or failed with its termination
/// accepted (failed machines are not polled after that); a machine returned by a return
/// request newer than `?1` keeps its acquire request.
const PRUNABLE_ACQUIRES: &str = "SELECT r.request_id FROM hf_requests r
     WHERE r.kind = 'acquire' AND r.state IN ('done', 'failed') AND r.updated_at < ?1
       AND NOT EXISTS (SELECT 1 FROM hf_machines m WHERE m.request_id = r.request_id
           AND NOT ((m.state = 'terminated' OR (m.failed = 1 AND m.return_sent_at IS NOT NULL))
                    AND m.updated_at < ?1
                    AND (m.return_request_id IS NULL
                         OR EXISTS (SELECT 1 FROM hf_requests rr
                                    WHERE rr.request_id = m.return_request_id AND rr.updated_at < ?1))))
     ORDER BY r.updated_at, r.request_id LIMIT ?2";

#[async_trait]
impl HostFactoryRepo for Store {
    async fn insert_hf_request(&self, r: &HfRequest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hf_requests (request_id, kind, template_id, template, requested_count, provider_name,
                 strategy, state, message, resource_id, provider_api, attempts, created_at, updated_at,
                 claimed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
        Ok(())
    }

    async fn insert_return_request(
        &self,
        r: &HfRequest,
        machine_ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        insert_return(&mut tx, r, machine_ids).await?;
        tx.commit().await
    }

    async fn claim_requests(&self, ids: &[String], now: EpochMillis) -> StoreResult<()> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                // Bare `?`s only: sqlx numbers them on its own, apart from any `?N`.
                "UPDATE hf_requests SET claimed_at = ?
                 WHERE claimed_at IS NULL AND request_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(now);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn unclaimed_requests(&self, before: EpochMillis) -> StoreResult<Vec<HfRequest>> {
        let sql = format!(
            "SELECT * FROM hf_requests r WHERE claimed_at IS NULL AND kind = 'acquire'
                 AND created_at < ?1 AND {UNCLAIMED_WITH_WORK} ORDER BY created_at"
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
            "UPDATE hf_requests AS r SET state = 'failed', message = ?2, updated_at = ?3
             WHERE request_id = ?1 AND claimed_at IS NULL AND kind = 'acquire'
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
            "SELECT machine_id FROM hf_machines WHERE request_id = ?1 AND return_request_id IS NULL
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
        insert_return(&mut tx, &ret, &machine_ids).await?;
        tx.commit().await?;
        Ok(Some(machine_ids))
    }

    async fn hf_requests(&self, ids: &[String]) -> StoreResult<Vec<HfRequest>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT * FROM hf_requests WHERE request_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn hf_requests_in(&self, states: &[RequestState]) -> StoreResult<Vec<HfRequest>> {
        let sql = format!(
            "SELECT * FROM hf_requests WHERE state IN ({}) ORDER BY created_at",
            placeholders(states.len())
        );
        let mut q = sqlx::query_as(&sql);
        for s in states {
            q = q.bind(s.as_str());
        }
        q.fetch_all(&self.pool).await
    }

    async fn start_provisioning(&self, request_id: &str, now: EpochMillis) -> StoreResult<()> {
        sqlx::query(
            "UPDATE hf_requests SET state = 'provisioning', attempts = attempts + 1, updated_at = ?2
             WHERE request_id = ?1",
        )
        .bind(request_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
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
            "UPDATE hf_requests SET state = ?2, message = ?3, strategy = COALESCE(?4, strategy),
                 resource_id = COALESCE(?5, resource_id), provider_api = COALESCE(?6, provider_api), updated_at = ?7
             WHERE request_id = ?1",
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
        for m in machines {
            upsert_machine(&mut tx, m).await?;
        }
        tx.commit().await
    }

    async fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        now: EpochMillis,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE hf_requests SET state = ?2, message = ?3, updated_at = ?4 WHERE request_id = ?1")
            .bind(request_id)
            .bind(state.as_str())
            .bind(message)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn save_observations(&self, machines: &[HfMachine]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for m in machines {
            upsert_machine(&mut tx, m).await?;
        }
        tx.commit().await
    }

    async fn hf_machines_of(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(400) {
            let p = placeholders(chunk.len());
            let sql = format!(
                "SELECT * FROM hf_machines WHERE request_id IN ({p}) OR return_request_id IN ({p})
                 ORDER BY created_at, machine_id"
            );
            let mut q = sqlx::query_as(&sql);
            for _ in 0..2 {
                for id in chunk {
                    q = q.bind(id);
                }
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    async fn hf_machines_by_keys(&self, keys: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out: Vec<HfMachine> = Vec::new();
        for chunk in keys.chunks(300) {
            let p = placeholders(chunk.len());
            let sql = format!(
                "SELECT * FROM hf_machines WHERE machine_id IN ({p}) OR private_dns IN ({p}) OR private_ip IN ({p})"
            );
            let mut q = sqlx::query_as::<_, HfMachine>(&sql);
            for _ in 0..3 {
                for k in chunk {
                    q = q.bind(k);
                }
            }
            for m in q.fetch_all(&self.pool).await? {
                if !out.iter().any(|o| o.machine_id == m.machine_id) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    async fn hf_machines_to_track(&self) -> StoreResult<Vec<HfMachine>> {
        sqlx::query_as(TRACKED).fetch_all(&self.pool).await
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
        let mut tx = self.write().await?;
        for id in machine_ids {
            sqlx::query("UPDATE hf_machines SET message = ?2 WHERE machine_id = ?1 AND failed = 0")
                .bind(id)
                .bind(message)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    async fn mark_return_sent(&self, machine_ids: &[String], now: EpochMillis) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for id in machine_ids {
            sqlx::query(
                "UPDATE hf_machines SET return_sent_at = ?2, updated_at = ?2,
                     message = CASE WHEN failed = 1 THEN message ELSE '' END
                 WHERE machine_id = ?1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn hf_holdings(&self, strategy: &str, first: u32) -> StoreResult<StrategyHoldings> {
        let mut tx = self.write().await?;
        let mut read = async |query: &'static str| -> StoreResult<(Vec<String>, u64)> {
            let rows: Vec<(String, i64)> = sqlx::query_as(query)
                .bind(strategy)
                .bind(first)
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
            "SELECT instance_type FROM hf_machines WHERE template_id = ?1 AND failed = 0 AND state != 'terminated'",
        )
        .bind(template_id)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<OpenPlacement> = sqlx::query_as(
            "SELECT r.request_id, r.requested_count, m.machine_id, m.instance_type
             FROM hf_requests r LEFT JOIN hf_machines m ON m.request_id = r.request_id AND m.failed = 0
             WHERE r.kind = 'acquire' AND r.template_id = ?1
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
        // The machines first (they refer to their requests), then the requests; both
        // statements pick the same requests: those left with no machine stay prunable.
        let mut tx = self.write().await?;
        let mut deleted = [0; 2];
        for (table, n) in ["hf_machines", "hf_requests"].into_iter().zip(&mut deleted) {
            *n = sqlx::query(&format!(
                "DELETE FROM {table} WHERE request_id IN ({PRUNABLE_ACQUIRES})"
            ))
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        let [machines, acquires] = deleted;
        let returns = sqlx::query(
            "DELETE FROM hf_requests WHERE request_id IN
               (SELECT r.request_id FROM hf_requests r
                WHERE r.kind = 'return' AND r.updated_at < ?1
                  AND NOT EXISTS (SELECT 1 FROM hf_machines m WHERE m.return_request_id = r.request_id)
                ORDER BY r.updated_at, r.request_id LIMIT ?2)",
        )
        .bind(before)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(HfPruned {
            machines,
            requests: acquires + returns,
        })
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

async fn upsert_machine(tx: &mut sqlx::SqliteConnection, m: &HfMachine) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO hf_machines (machine_id, request_id, template_id, strategy, state, failed, message,
             private_ip, public_ip, private_dns, instance_type, price_type, launch_time, resource_id,
             provider_api, reclaim_notice, reclaimed_at, return_request_id, return_sent_at, created_at, updated_at,
             delivered, reclaim_deadline)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)
         ON CONFLICT(machine_id) DO UPDATE SET state = excluded.state, failed = excluded.failed,
             delivered = MAX(delivered, excluded.delivered),
             message = excluded.message,
             private_ip = COALESCE(excluded.private_ip, private_ip),
             public_ip = COALESCE(excluded.public_ip, public_ip),
             private_dns = COALESCE(excluded.private_dns, private_dns),
             instance_type = COALESCE(excluded.instance_type, instance_type),
             price_type = COALESCE(excluded.price_type, price_type),
             launch_time = COALESCE(excluded.launch_time, launch_time),
             resource_id = COALESCE(excluded.resource_id, resource_id),
             provider_api = COALESCE(excluded.provider_api, provider_api),
             reclaim_notice = COALESCE(excluded.reclaim_notice, reclaim_notice),
             reclaimed_at = COALESCE(reclaimed_at, excluded.reclaimed_at),
             reclaim_deadline = COALESCE(reclaim_deadline, excluded.reclaim_deadline),
             updated_at = excluded.updated_at",
    )
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
    .bind(m.reclaim_deadline)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Inserts return request `r` and marks `machine_ids` (those not already being returned) as
/// returned by it.
async fn insert_return(
    tx: &mut sqlx::SqliteConnection,
    r: &HfRequest,
    machine_ids: &[String],
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO hf_requests (request_id, kind, requested_count, state, message, attempts, created_at, updated_at)
         VALUES (?1, 'return', ?2, ?3, ?4, 0, ?5, ?5)",
    )
    .bind(&r.request_id)
    .bind(r.requested_count)
    .bind(r.state.as_str())
    .bind(&r.message)
    .bind(r.created_at)
    .execute(&mut *tx)
    .await?;
    for id in machine_ids {
        sqlx::query(
            "UPDATE hf_machines SET return_request_id = ?2, updated_at = ?3
             WHERE machine_id = ?1 AND return_request_id IS NULL",
        )
        .bind(id)
        .bind(&r.request_id)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// One row of [`HostFactoryRepo::hf_counts`]' request counts.
struct RequestCount(RequestKind, RequestState, u64);

impl FromRow<'_, SqliteRow> for RequestCount {
    fn from_row(r: &SqliteRow) -> sqlx::Result<Self> {
        Ok(Self(
            parsed(r, "kind")?,
            parsed(r, "state")?,
            count(r, "n")?,
        ))
    }
}

/// One row of [`HostFactoryRepo::hf_counts`]' machine counts.
struct MachineCount(MachineState, u64);

impl FromRow<'_, SqliteRow> for MachineCount {
    fn from_row(r: &SqliteRow) -> sqlx::Result<Self> {
        Ok(Self(parsed(r, "state")?, count(r, "n")?))
    }
}

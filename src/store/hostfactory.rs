//! HostFactory requests and machines.

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreResult};
use crate::domain::EpochMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Acquire,
    Return,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Acquire => "acquire",
            RequestKind::Return => "return",
        }
    }
}

/// Where a request is in its life. `Pending` and `Provisioning` belong to acquire requests
/// before their machines are known; `Done`/`Failed` are final for the provisioning step only:
/// the HostFactory status is always derived from the machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Provisioning,
    InProgress,
    Done,
    Failed,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Provisioning => "provisioning",
            RequestState::InProgress => "in_progress",
            RequestState::Done => "done",
            RequestState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "pending" => RequestState::Pending,
            "provisioning" => RequestState::Provisioning,
            "in_progress" => RequestState::InProgress,
            "done" => RequestState::Done,
            _ => RequestState::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HfRequest {
    pub request_id: String,
    pub kind: RequestKind,
    pub template_id: Option<String>,
    pub template: Option<Value>,
    pub requested_count: i64,
    pub provider_name: Option<String>,
    pub strategy: Option<String>,
    pub state: RequestState,
    pub message: String,
    pub resource_id: Option<String>,
    pub provider_api: Option<String>,
    pub attempts: i64,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HfMachine {
    pub machine_id: String,
    pub request_id: String,
    pub template_id: Option<String>,
    pub strategy: String,
    pub state: String,
    pub failed: bool,
    /// Seen running at least once: HostFactory got it, whatever happens to it later.
    pub delivered: bool,
    pub message: String,
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub private_dns: Option<String>,
    pub instance_type: Option<String>,
    pub price_type: Option<String>,
    pub launch_time: Option<i64>,
    pub resource_id: Option<String>,
    pub provider_api: Option<String>,
    pub reclaim_notice: Option<String>,
    pub reclaimed_at: Option<EpochMillis>,
    pub return_request_id: Option<String>,
    pub return_sent_at: Option<EpochMillis>,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

fn request_from(r: SqliteRow) -> StoreResult<HfRequest> {
    let template: Option<String> = r.get("template");
    let kind: String = r.get("kind");
    Ok(HfRequest {
        request_id: r.get("request_id"),
        kind: if kind == "return" {
            RequestKind::Return
        } else {
            RequestKind::Acquire
        },
        template_id: r.get("template_id"),
        template: template
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        requested_count: r.get("requested_count"),
        provider_name: r.get("provider_name"),
        strategy: r.get("strategy"),
        state: RequestState::parse(r.get("state")),
        message: r.get("message"),
        resource_id: r.get("resource_id"),
        provider_api: r.get("provider_api"),
        attempts: r.get("attempts"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    })
}

fn machine_from(r: SqliteRow) -> HfMachine {
    HfMachine {
        machine_id: r.get("machine_id"),
        request_id: r.get("request_id"),
        template_id: r.get("template_id"),
        strategy: r.get("strategy"),
        state: r.get("state"),
        failed: r.get::<i64, _>("failed") != 0,
        delivered: r.get::<i64, _>("delivered") != 0,
        message: r.get("message"),
        private_ip: r.get("private_ip"),
        public_ip: r.get("public_ip"),
        private_dns: r.get("private_dns"),
        instance_type: r.get("instance_type"),
        price_type: r.get("price_type"),
        launch_time: r.get("launch_time"),
        resource_id: r.get("resource_id"),
        provider_api: r.get("provider_api"),
        reclaim_notice: r.get("reclaim_notice"),
        reclaimed_at: r.get("reclaimed_at"),
        return_request_id: r.get("return_request_id"),
        return_sent_at: r.get("return_sent_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// `?, ?, …` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Store {
    pub async fn insert_hf_request(&self, r: &HfRequest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO hf_requests (request_id, kind, template_id, template, requested_count, provider_name,
                 strategy, state, message, resource_id, provider_api, attempts, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
        .bind(&r.provider_api)
        .bind(r.attempts)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A return request with its machines, in one transaction.
    pub async fn insert_return_request(
        &self,
        r: &HfRequest,
        machine_ids: &[String],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await
    }

    pub async fn hf_requests(&self, ids: &[String]) -> StoreResult<Vec<HfRequest>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT * FROM hf_requests WHERE request_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(request_from(r)?);
            }
        }
        Ok(out)
    }

    pub async fn hf_requests_in(&self, states: &[RequestState]) -> StoreResult<Vec<HfRequest>> {
        let sql = format!(
            "SELECT * FROM hf_requests WHERE state IN ({}) ORDER BY created_at",
            placeholders(states.len())
        );
        let mut q = sqlx::query(&sql);
        for s in states {
            q = q.bind(s.as_str());
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(request_from)
            .collect()
    }

    /// Marks a provisioning attempt before the cloud is called, so that a restart knows to
    /// look for machines already made.
    pub async fn start_provisioning(&self, request_id: &str, now: EpochMillis) -> StoreResult<()> {
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

    /// Records the provisioning outcome and the machines made, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_provisioning(
        &self,
        request_id: &str,
        state: RequestState,
        message: &str,
        strategy: Option<&str>,
        resource_id: Option<&str>,
        provider_api: Option<&str>,
        machines: &[HfMachine],
        now: EpochMillis,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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
        .bind(provider_api)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for m in machines {
            upsert_machine(&mut tx, m).await?;
        }
        tx.commit().await
    }

    pub async fn set_request_state(
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

    /// Saves what the provider said about machines (state, addresses, reclaim), in one transaction.
    pub async fn save_observations(&self, machines: &[HfMachine]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for m in machines {
            upsert_machine(&mut tx, m).await?;
        }
        tx.commit().await
    }

    /// Machines of acquire requests `ids` and machines being returned by return requests `ids`.
    pub async fn hf_machines_of(&self, ids: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(400) {
            let p = placeholders(chunk.len());
            let sql = format!(
                "SELECT * FROM hf_machines WHERE request_id IN ({p}) OR return_request_id IN ({p})
                 ORDER BY created_at, machine_id"
            );
            let mut q = sqlx::query(&sql);
            for _ in 0..2 {
                for id in chunk {
                    q = q.bind(id);
                }
            }
            out.extend(q.fetch_all(&self.pool).await?.into_iter().map(machine_from));
        }
        Ok(out)
    }

    /// Machines whose id or host name is among `keys`.
    pub async fn hf_machines_by_keys(&self, keys: &[String]) -> StoreResult<Vec<HfMachine>> {
        let mut out: Vec<HfMachine> = Vec::new();
        for chunk in keys.chunks(300) {
            let p = placeholders(chunk.len());
            let sql = format!(
                "SELECT * FROM hf_machines WHERE machine_id IN ({p}) OR private_dns IN ({p}) OR private_ip IN ({p})"
            );
            let mut q = sqlx::query(&sql);
            for _ in 0..3 {
                for k in chunk {
                    q = q.bind(k);
                }
            }
            for m in q.fetch_all(&self.pool).await?.into_iter().map(machine_from) {
                if !out.iter().any(|o| o.machine_id == m.machine_id) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Machines the reconciler should ask about: everything not yet terminated (or failed).
    pub async fn hf_machines_to_track(&self) -> StoreResult<Vec<HfMachine>> {
        Ok(sqlx::query("SELECT * FROM hf_machines WHERE state != 'terminated' AND failed = 0 ORDER BY strategy")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(machine_from)
            .collect())
    }

    /// Machines failed by the service (never started) whose termination was not yet accepted.
    pub async fn hf_failed_unterminated(&self) -> StoreResult<Vec<HfMachine>> {
        Ok(sqlx::query(
            "SELECT * FROM hf_machines WHERE failed = 1 AND return_sent_at IS NULL AND state != 'terminated'",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(machine_from)
        .collect())
    }

    /// Every machine that HostFactory has not returned, for the operator view of reclaims.
    pub async fn hf_machines_not_returned(&self) -> StoreResult<Vec<HfMachine>> {
        Ok(sqlx::query("SELECT * FROM hf_machines WHERE return_request_id IS NULL AND failed = 0 ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(machine_from)
            .collect())
    }

    /// Records why machines could not be terminated yet (shown with them until it works).
    pub async fn note_termination_problem(
        &self,
        machine_ids: &[String],
        message: &str,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for id in machine_ids {
            sqlx::query("UPDATE hf_machines SET message = ?2 WHERE machine_id = ?1 AND failed = 0")
                .bind(id)
                .bind(message)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    pub async fn mark_return_sent(
        &self,
        machine_ids: &[String],
        now: EpochMillis,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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

    /// What counts against a template's maxNumber: the instance types of its machines that are
    /// neither terminated nor failed, and for each of its open acquire requests the count asked
    /// with the instance types placed so far.
    pub async fn hf_template_usage(
        &self,
        template_id: &str,
    ) -> StoreResult<(Vec<Option<String>>, Vec<(i64, Vec<Option<String>>)>)> {
        let live: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT instance_type FROM hf_machines WHERE template_id = ?1 AND failed = 0 AND state != 'terminated'",
        )
        .bind(template_id)
        .fetch_all(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT r.request_id, r.requested_count, m.machine_id, m.instance_type
             FROM hf_requests r LEFT JOIN hf_machines m ON m.request_id = r.request_id AND m.failed = 0
             WHERE r.kind = 'acquire' AND r.template_id = ?1
               AND r.state IN ('pending', 'provisioning', 'in_progress')
             ORDER BY r.request_id",
        )
        .bind(template_id)
        .fetch_all(&self.pool)
        .await?;
        let mut open: Vec<(String, i64, Vec<Option<String>>)> = Vec::new();
        for r in rows {
            let id: String = r.get("request_id");
            if open.last().is_none_or(|(last, _, _)| last != &id) {
                open.push((id, r.get("requested_count"), Vec::new()));
            }
            let machine: Option<String> = r.get("machine_id");
            if machine.is_some() {
                let types = &mut open.last_mut().expect("pushed above").2;
                types.push(r.get("instance_type"));
            }
        }
        Ok((live, open.into_iter().map(|(_, n, t)| (n, t)).collect()))
    }
}

async fn upsert_machine(tx: &mut sqlx::SqliteConnection, m: &HfMachine) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO hf_machines (machine_id, request_id, template_id, strategy, state, failed, message,
             private_ip, public_ip, private_dns, instance_type, price_type, launch_time, resource_id,
             provider_api, reclaim_notice, reclaimed_at, return_request_id, return_sent_at, created_at, updated_at,
             delivered)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)
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
             updated_at = excluded.updated_at",
    )
    .bind(&m.machine_id)
    .bind(&m.request_id)
    .bind(&m.template_id)
    .bind(&m.strategy)
    .bind(&m.state)
    .bind(i64::from(m.failed))
    .bind(&m.message)
    .bind(&m.private_ip)
    .bind(&m.public_ip)
    .bind(&m.private_dns)
    .bind(&m.instance_type)
    .bind(&m.price_type)
    .bind(m.launch_time)
    .bind(&m.resource_id)
    .bind(&m.provider_api)
    .bind(&m.reclaim_notice)
    .bind(m.reclaimed_at)
    .bind(&m.return_request_id)
    .bind(m.return_sent_at)
    .bind(m.created_at)
    .bind(m.updated_at)
    .bind(i64::from(m.delivered))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{flag, json};
use super::{SimInstanceRepo, Store, StoreResult};
use crate::domain::EpochMillis;

/// A simulated instance as stored; its state follows from the timestamps.
#[derive(Debug, Clone, PartialEq)]
pub struct SimInstanceRow {
    pub instance_id: String,
    pub strategy: String,
    pub template_id: String,
    pub instance_type: String,
    pub request_id: Option<String>,
    pub tags: serde_json::Map<String, serde_json::Value>,
    pub private_ip: String,
    pub launched_at: EpochMillis,
    pub boot_ms: i64,
    pub terminating_at: Option<EpochMillis>,
    pub shutdown_ms: i64,
    pub reclaimed: bool,
}

impl FromRow<'_, AnyRow> for SimInstanceRow {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(SimInstanceRow {
            instance_id: r.try_get("instance_id")?,
            strategy: r.try_get("strategy")?,
            template_id: r.try_get("template_id")?,
            instance_type: r.try_get("instance_type")?,
            request_id: r.try_get("request_id")?,
            tags: json(r, "tags")?,
            private_ip: r.try_get("private_ip")?,
            launched_at: r.try_get("launched_at")?,
            boot_ms: r.try_get("boot_ms")?,
            terminating_at: r.try_get("terminating_at")?,
            shutdown_ms: r.try_get("shutdown_ms")?,
            reclaimed: flag(r, "reclaimed")?,
        })
    }
}

const COLUMNS: &str =
    "instance_id, strategy, template_id, instance_type, request_id, tags, private_ip,
    launched_at, boot_ms, terminating_at, shutdown_ms, reclaimed";

#[async_trait]
impl SimInstanceRepo for Store {
    async fn insert_sim_instances(&self, rows: &[SimInstanceRow]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for row in rows {
            sqlx::query(&format!(
                "INSERT INTO sim_instances ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(&row.instance_id)
            .bind(&row.strategy)
            .bind(&row.template_id)
            .bind(&row.instance_type)
            .bind(&row.request_id)
            .bind(serde_json::Value::Object(row.tags.clone()).to_string())
            .bind(&row.private_ip)
            .bind(row.launched_at)
            .bind(row.boot_ms)
            .bind(row.terminating_at)
            .bind(row.shutdown_ms)
            .bind(i64::from(row.reclaimed))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn sim_instances_by_ids(
        &self,
        strategy: &str,
        ids: &[String],
    ) -> StoreResult<Vec<SimInstanceRow>> {
        self.sim_instances_where(strategy, "instance_id", ids).await
    }

    async fn sim_instances_by_request(
        &self,
        strategy: &str,
        request_ids: &[String],
    ) -> StoreResult<Vec<SimInstanceRow>> {
        self.sim_instances_where(strategy, "request_id", request_ids)
            .await
    }

    async fn count_live_sim_instances(&self, strategy: &str, now: EpochMillis) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sim_instances WHERE strategy = $1
             AND (terminating_at IS NULL OR terminating_at + shutdown_ms > $2)",
        )
        .bind(strategy)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn terminate_sim_instances(
        &self,
        strategy: &str,
        ids: &[String],
        now: EpochMillis,
        reclaimed: bool,
    ) -> StoreResult<Vec<String>> {
        let mut touched = Vec::new();
        let mut tx = self.write().await?;
        for id in ids {
            let updated = sqlx::query(
                "UPDATE sim_instances SET terminating_at = $3, reclaimed = $4
                 WHERE strategy = $1 AND instance_id = $2 AND terminating_at IS NULL",
            )
            .bind(strategy)
            .bind(id)
            .bind(now)
            .bind(i64::from(reclaimed))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 {
                touched.push(id.clone());
            }
        }
        tx.commit().await?;
        Ok(touched)
    }

    async fn prune_sim_instances(&self, before: EpochMillis, batch: u32) -> StoreResult<u64> {
        // `terminating_at < before` lets the partial index narrow the scan (shutdown_ms >= 0).
        Ok(sqlx::query(
            "DELETE FROM sim_instances WHERE instance_id IN
               (SELECT instance_id FROM sim_instances
                WHERE terminating_at IS NOT NULL AND terminating_at < $1
                  AND terminating_at + shutdown_ms < $1
                ORDER BY terminating_at LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(batch))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl Store {
    /// Instances of `strategy` whose `column` is one of `values`, oldest first.
    async fn sim_instances_where(
        &self,
        strategy: &str,
        column: &str,
        values: &[String],
    ) -> StoreResult<Vec<SimInstanceRow>> {
        let mut out = Vec::with_capacity(values.len());
        // SQLite limits bound parameters; 500 values a statement stays well inside it.
        for chunk in values.chunks(500) {
            let sql = format!(
                "SELECT {COLUMNS} FROM sim_instances WHERE strategy = {} AND {column} IN ({})
                 ORDER BY launched_at, instance_id",
                self.backend().list(1, 1),
                self.backend().list(2, chunk.len())
            );
            let mut q = sqlx::query_as(&sql).bind(strategy);
            for v in chunk {
                q = q.bind(v);
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }
}

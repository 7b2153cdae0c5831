use async_trait::async_trait;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use utoipa::ToSchema;

use super::rows::{json_opt, parsed};
use super::{Change, HealthRepo, Store, StoreResult};
use crate::domain::{EpochMillis, HealthState, HealthStatus};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthHistoryEntry {
    pub state: HealthState,
    pub status_message: Option<String>,
    pub source: String,
    pub at: String,
}

impl FromRow<'_, AnyRow> for HealthHistoryEntry {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            state: parsed(r, "state")?,
            status_message: r.try_get("status_message")?,
            source: r.try_get("source")?,
            at: crate::domain::rfc3339(r.try_get("at")?),
        })
    }
}

/// One row of `strategy_health`.
struct LatestHealth(String, HealthStatus);

impl FromRow<'_, AnyRow> for LatestHealth {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(
            r.try_get("strategy")?,
            HealthStatus {
                state: parsed(r, "state")?,
                status_message: r.try_get("status_message")?,
                error_details: json_opt(r, "error_details")?,
                source: r.try_get("source")?,
                checked_at: r.try_get("checked_at")?,
                response_time_ms: r.try_get("response_time_ms")?,
            },
        ))
    }
}

#[async_trait]
impl HealthRepo for Store {
    async fn load_health(&self) -> StoreResult<Vec<(String, HealthStatus)>> {
        let rows: Vec<LatestHealth> = sqlx::query_as(
            "SELECT strategy, state, status_message, error_details, source, checked_at, response_time_ms
             FROM strategy_health",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|LatestHealth(n, h)| (n, h)).collect())
    }

    async fn save_health(
        &self,
        strategy: &str,
        health: &HealthStatus,
        changed: bool,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO strategy_health
                 (strategy, state, status_message, error_details, source, checked_at, response_time_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT(strategy) DO UPDATE SET state = excluded.state,
                 status_message = excluded.status_message, error_details = excluded.error_details,
                 source = excluded.source, checked_at = excluded.checked_at,
                 response_time_ms = excluded.response_time_ms",
        )
        .bind(strategy)
        .bind(health.state.as_str())
        .bind(&health.status_message)
        .bind(health.error_details.as_ref().map(|d| d.to_string()))
        .bind(&health.source)
        .bind(health.checked_at)
        .bind(health.response_time_ms)
        .execute(&mut *tx)
        .await?;
        if changed {
            sqlx::query(
                "INSERT INTO health_history (strategy, state, status_message, source, at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(strategy)
            .bind(health.state.as_str())
            .bind(&health.status_message)
            .bind(&health.source)
            .bind(health.checked_at.unwrap_or_else(crate::domain::now_millis))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.announce(Change::Health(strategy.to_string())).await;
        Ok(())
    }

    async fn health_history(
        &self,
        strategy: &str,
        limit: i64,
    ) -> StoreResult<Vec<HealthHistoryEntry>> {
        sqlx::query_as(
            "SELECT state, status_message, source, at FROM
               (SELECT id, state, status_message, source, at FROM health_history
                WHERE strategy = $1 ORDER BY id DESC LIMIT $2) AS recent
             ORDER BY id",
        )
        .bind(strategy)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn prune_health_history(
        &self,
        before: EpochMillis,
        keep: u32,
        batch: u32,
    ) -> StoreResult<u64> {
        self.prune_history(
            "DELETE FROM health_history WHERE id IN
                   (SELECT id FROM health_history WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
            // Beyond the newest `keep` of a strategy, oldest first.
            "DELETE FROM health_history WHERE id IN
                   (SELECT id FROM
                      (SELECT id, ROW_NUMBER() OVER (PARTITION BY strategy ORDER BY id DESC) AS newer
                       FROM health_history) AS ranked
                    WHERE newer > $1 ORDER BY id LIMIT $2)",
            keep,
            batch,
        )
        .await
    }
}

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Store, StoreResult};
use crate::domain::{HealthState, HealthStatus};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthHistoryEntry {
    pub state: HealthState,
    pub status_message: Option<String>,
    pub source: String,
    pub at: String,
}

impl Store {
    pub async fn load_health(&self) -> StoreResult<Vec<(String, HealthStatus)>> {
        let rows = sqlx::query(
            "SELECT strategy, state, status_message, error_details, source, checked_at, response_time_ms
             FROM strategy_health",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let details: Option<String> = r.get("error_details");
                (
                    r.get("strategy"),
                    HealthStatus {
                        state: HealthState::parse(r.get("state")),
                        status_message: r.get("status_message"),
                        error_details: details.and_then(|d| serde_json::from_str(&d).ok()),
                        source: r.get("source"),
                        checked_at: r.get("checked_at"),
                        response_time_ms: r.get("response_time_ms"),
                    },
                )
            })
            .collect())
    }

    /// Saves the latest health; a change of state is also appended to the history.
    pub async fn save_health(
        &self,
        strategy: &str,
        health: &HealthStatus,
        changed: bool,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO strategy_health
                 (strategy, state, status_message, error_details, source, checked_at, response_time_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
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
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(strategy)
            .bind(health.state.as_str())
            .bind(&health.status_message)
            .bind(&health.source)
            .bind(health.checked_at.unwrap_or_else(crate::domain::now_millis))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// The most recent `limit` health changes of a strategy, oldest first.
    pub async fn health_history(
        &self,
        strategy: &str,
        limit: i64,
    ) -> StoreResult<Vec<HealthHistoryEntry>> {
        let rows = sqlx::query(
            "SELECT state, status_message, source, at FROM
               (SELECT id, state, status_message, source, at FROM health_history
                WHERE strategy = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY id",
        )
        .bind(strategy)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| HealthHistoryEntry {
                state: HealthState::parse(r.get("state")),
                status_message: r.get("status_message"),
                source: r.get("source"),
                at: crate::domain::rfc3339(r.get("at")),
            })
            .collect())
    }
}

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};

use super::rows::{bad_column, count};
use super::{CircuitRepo, Store, StoreResult};
use crate::domain::UnknownValue;
use crate::strategy::{CircuitBreaker, CircuitState};

#[derive(Debug, Clone)]
pub struct CircuitRow {
    pub breaker: CircuitBreaker,
    pub last_reason: Option<String>,
}

/// One row of `circuit_state`.
struct SavedCircuit(String, CircuitRow);

impl FromRow<'_, SqliteRow> for SavedCircuit {
    fn from_row(r: &SqliteRow) -> sqlx::Result<Self> {
        let state: String = r.try_get("state")?;
        let state = CircuitState::parse(&state)
            .ok_or_else(|| bad_column("state", UnknownValue::new("circuit state", &state)))?;
        Ok(Self(
            r.try_get("strategy")?,
            CircuitRow {
                breaker: CircuitBreaker::restored(
                    state,
                    count(r, "consecutive_failures")?,
                    r.try_get("opened_at")?,
                    r.try_get("last_transition_at")?,
                ),
                last_reason: r.try_get("last_reason")?,
            },
        ))
    }
}

#[async_trait]
impl CircuitRepo for Store {
    async fn load_circuits(&self) -> StoreResult<Vec<(String, CircuitRow)>> {
        let rows: Vec<SavedCircuit> = sqlx::query_as(
            "SELECT strategy, state, consecutive_failures, opened_at, last_transition_at, last_reason
             FROM circuit_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|SavedCircuit(n, c)| (n, c)).collect())
    }

    async fn save_circuit(&self, strategy: &str, row: &CircuitRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO circuit_state
                 (strategy, state, consecutive_failures, opened_at, last_transition_at, last_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(strategy) DO UPDATE SET state = excluded.state,
                 consecutive_failures = excluded.consecutive_failures, opened_at = excluded.opened_at,
                 last_transition_at = excluded.last_transition_at, last_reason = excluded.last_reason",
        )
        .bind(strategy)
        .bind(row.breaker.state.as_str())
        .bind(i64::from(row.breaker.consecutive_failures))
        .bind(row.breaker.opened_at)
        .bind(row.breaker.last_transition_at)
        .bind(&row.last_reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

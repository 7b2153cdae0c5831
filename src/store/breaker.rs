use sqlx::Row;

use super::{Store, StoreResult};
use crate::strategy::{CircuitBreaker, CircuitState};

#[derive(Debug, Clone)]
pub struct CircuitRow {
    pub breaker: CircuitBreaker,
    pub last_reason: Option<String>,
}

impl Store {
    pub async fn load_circuits(&self) -> StoreResult<Vec<(String, CircuitRow)>> {
        let rows = sqlx::query(
            "SELECT strategy, state, consecutive_failures, opened_at, last_transition_at, last_reason
             FROM circuit_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let state = CircuitState::parse(r.get("state")).unwrap_or(CircuitState::Closed);
                let failures: i64 = r.get("consecutive_failures");
                (
                    r.get("strategy"),
                    CircuitRow {
                        breaker: CircuitBreaker::restored(
                            state,
                            u32::try_from(failures).unwrap_or(0),
                            r.get("opened_at"),
                            r.get("last_transition_at"),
                        ),
                        last_reason: r.get("last_reason"),
                    },
                )
            })
            .collect())
    }

    pub async fn save_circuit(&self, strategy: &str, row: &CircuitRow) -> StoreResult<()> {
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

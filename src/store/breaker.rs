use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{bad_column, count};
use super::{Change, CircuitRepo, Store, StoreResult};
use crate::domain::UnknownValue;
use crate::strategy::{CircuitBreaker, CircuitMode, CircuitState, ModeSetting};

#[derive(Debug, Clone, Default)]
pub struct CircuitRow {
    pub breaker: CircuitBreaker,
    pub last_reason: Option<String>,
    /// Who set the breaker's mode, when an operator did.
    pub mode_set: Option<ModeSetting>,
}

/// One row of `circuit_state`.
struct SavedCircuit(String, CircuitRow);

impl FromRow<'_, AnyRow> for SavedCircuit {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        let state: String = r.try_get("state")?;
        let state = CircuitState::parse(&state)
            .ok_or_else(|| bad_column("state", UnknownValue::new("circuit state", &state)))?;
        let mode: String = r.try_get("mode")?;
        let mode = CircuitMode::parse(&mode)
            .ok_or_else(|| bad_column("mode", UnknownValue::new("circuit mode", &mode)))?;
        let mode_set = match (r.try_get("mode_source")?, r.try_get("mode_set_at")?) {
            (Some(source), Some(at)) => Some(ModeSetting {
                source,
                reason: r.try_get("mode_reason")?,
                at,
            }),
            _ => None,
        };
        Ok(Self(
            r.try_get("strategy")?,
            CircuitRow {
                breaker: CircuitBreaker::restored(
                    state,
                    count(r, "consecutive_failures")?,
                    r.try_get("opened_at")?,
                    r.try_get("last_transition_at")?,
                )
                .in_mode(mode),
                last_reason: r.try_get("last_reason")?,
                mode_set,
            },
        ))
    }
}

#[async_trait]
impl CircuitRepo for Store {
    async fn load_circuits(&self) -> StoreResult<Vec<(String, CircuitRow)>> {
        let rows: Vec<SavedCircuit> = sqlx::query_as(
            "SELECT strategy, state, consecutive_failures, opened_at, last_transition_at, last_reason,
                    mode, mode_source, mode_reason, mode_set_at
             FROM circuit_state",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|SavedCircuit(n, c)| (n, c)).collect())
    }

    async fn save_circuit(&self, strategy: &str, row: &CircuitRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO circuit_state
                 (strategy, state, consecutive_failures, opened_at, last_transition_at, last_reason,
                  mode, mode_source, mode_reason, mode_set_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT(strategy) DO UPDATE SET state = excluded.state,
                 consecutive_failures = excluded.consecutive_failures, opened_at = excluded.opened_at,
                 last_transition_at = excluded.last_transition_at, last_reason = excluded.last_reason,
                 mode = excluded.mode, mode_source = excluded.mode_source,
                 mode_reason = excluded.mode_reason, mode_set_at = excluded.mode_set_at",
        )
        .bind(strategy)
        .bind(row.breaker.state.as_str())
        .bind(i64::from(row.breaker.consecutive_failures))
        .bind(row.breaker.opened_at)
        .bind(row.breaker.last_transition_at)
        .bind(&row.last_reason)
        .bind(row.breaker.mode.as_str())
        .bind(row.mode_set.as_ref().map(|m| m.source.as_str()))
        .bind(row.mode_set.as_ref().and_then(|m| m.reason.as_deref()))
        .bind(row.mode_set.as_ref().map(|m| m.at))
        .execute(&self.pool)
        .await?;
        self.announce(Change::Circuit(strategy.to_string())).await;
        Ok(())
    }
}

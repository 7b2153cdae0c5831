use sqlx::Row;

use super::{Store, StoreResult};
use crate::config::StrategySpec;
use crate::domain::EpochMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategySource {
    Config,
    Api,
}

impl StrategySource {
    pub fn as_str(self) -> &'static str {
        match self {
            StrategySource::Config => "config",
            StrategySource::Api => "api",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredStrategy {
    pub spec: StrategySpec,
    pub source: StrategySource,
    pub seq: i64,
    pub created_at: EpochMillis,
    pub updated_at: EpochMillis,
}

impl Store {
    pub async fn list_strategies(&self) -> StoreResult<Vec<StoredStrategy>> {
        let rows = sqlx::query(
            "SELECT spec, source, seq, created_at, updated_at FROM strategies ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let spec: String = r.get("spec");
                let source: String = r.get("source");
                Ok(StoredStrategy {
                    spec: serde_json::from_str(&spec)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                    source: if source == "config" {
                        StrategySource::Config
                    } else {
                        StrategySource::Api
                    },
                    seq: r.get("seq"),
                    created_at: r.get("created_at"),
                    updated_at: r.get("updated_at"),
                })
            })
            .collect()
    }

    /// Inserts or replaces a strategy; an existing row keeps its `seq` and `created_at`.
    pub async fn upsert_strategy(
        &self,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<StoredStrategy> {
        let json = serde_json::to_string(spec).expect("spec serializes");
        let row = sqlx::query(
            "INSERT INTO strategies (name, spec, source, seq, created_at, updated_at)
             VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM strategies), ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, source = excluded.source,
                 updated_at = excluded.updated_at
             RETURNING seq, created_at, updated_at",
        )
        .bind(&spec.name)
        .bind(json)
        .bind(source.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(StoredStrategy {
            spec: spec.clone(),
            source,
            seq: row.get("seq"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        })
    }

    /// Removes a strategy with its health and circuit state (its metrics stay as history).
    pub async fn delete_strategy(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM strategies WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM strategy_health WHERE strategy = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM circuit_state WHERE strategy = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }
}

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{json, parsed};
use super::secrets::has_clear_secret;
use super::{Change, Store, StoreResult, StrategyRepo};
use crate::config::StrategySpec;
use crate::domain::{EpochMillis, UnknownValue};

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

impl FromStr for StrategySource {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "config" => Ok(StrategySource::Config),
            "api" => Ok(StrategySource::Api),
            _ => Err(UnknownValue::new("strategy source", s)),
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

impl FromRow<'_, AnyRow> for StoredStrategy {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            spec: json(r, "spec")?,
            source: parsed(r, "source")?,
            seq: r.try_get("seq")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// What an insert or an upsert gives back besides the definition it was given.
#[derive(sqlx::FromRow)]
struct Registered {
    seq: i64,
    created_at: EpochMillis,
    updated_at: EpochMillis,
}

impl Registered {
    fn of(self, spec: &StrategySpec, source: StrategySource) -> StoredStrategy {
        StoredStrategy {
            spec: spec.clone(),
            source,
            seq: self.seq,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const INSERT: &str = "INSERT INTO strategies (name, spec, source, seq, created_at, updated_at)
     VALUES ($1, $2, $3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM strategies), $4, $4)";

impl Store {
    /// `spec` as stored: JSON with its secrets sealed.
    fn sealed_json(&self, spec: &StrategySpec) -> StoreResult<String> {
        let sealed = StrategySpec {
            config: self
                .secrets
                .seal(&spec.config)
                .map_err(|e| sqlx::Error::Encode(e.into()))?,
            ..spec.clone()
        };
        serde_json::to_string(&sealed).map_err(|e| sqlx::Error::Encode(Box::new(e)))
    }

    /// Seals the secrets of strategies stored in clear by a version before sealing existed.
    pub(super) async fn seal_clear_secrets(&self) -> StoreResult<u64> {
        let stored: Vec<StoredStrategy> =
            sqlx::query_as("SELECT spec, source, seq, created_at, updated_at FROM strategies")
                .fetch_all(&self.pool)
                .await?;
        let mut sealed = 0;
        for s in stored.iter().filter(|s| has_clear_secret(&s.spec.config)) {
            sqlx::query("UPDATE strategies SET spec = $1 WHERE name = $2")
                .bind(self.sealed_json(&s.spec)?)
                .bind(&s.spec.name)
                .execute(&self.pool)
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// `INSERT` followed by `conflict`, returning what [`Registered`] reads.
    async fn write_strategy(
        &self,
        conflict: &str,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<Option<Registered>> {
        let json = self.sealed_json(spec)?;
        sqlx::query_as(&format!(
            "{INSERT} {conflict} RETURNING seq, created_at, updated_at"
        ))
        .bind(&spec.name)
        .bind(json)
        .bind(source.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
    }
}

#[async_trait]
impl StrategyRepo for Store {
    async fn list_strategies(&self) -> StoreResult<Vec<StoredStrategy>> {
        let mut stored: Vec<StoredStrategy> = sqlx::query_as(
            "SELECT spec, source, seq, created_at, updated_at FROM strategies ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        for s in &mut stored {
            s.spec.config = self.secrets.open(&s.spec.config).map_err(|e| {
                sqlx::Error::Decode(format!("strategy '{}': {e}", s.spec.name).into())
            })?;
        }
        Ok(stored)
    }

    async fn insert_strategy(
        &self,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<Option<StoredStrategy>> {
        // A taken name inserts nothing and returns no row.
        let row = self
            .write_strategy("ON CONFLICT(name) DO NOTHING", spec, source, now)
            .await?;
        if row.is_some() {
            self.announce(Change::Strategies).await;
        }
        Ok(row.map(|r| r.of(spec, source)))
    }

    async fn upsert_strategy(
        &self,
        spec: &StrategySpec,
        source: StrategySource,
        now: EpochMillis,
    ) -> StoreResult<StoredStrategy> {
        let row = self
            .write_strategy(
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, source = excluded.source,
                     updated_at = excluded.updated_at",
                spec,
                source,
                now,
            )
            .await?;
        self.announce(Change::Strategies).await;
        row.map(|r| r.of(spec, source))
            .ok_or(sqlx::Error::RowNotFound)
    }

    async fn delete_strategy(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let deleted = sqlx::query("DELETE FROM strategies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM strategy_health WHERE strategy = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM circuit_state WHERE strategy = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if deleted > 0 {
            self.announce(Change::Strategies).await;
        }
        Ok(deleted > 0)
    }
}

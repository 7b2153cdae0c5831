use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::json;
use super::{Change, SettingsRepo, Store, StoreResult};
use crate::domain::EpochMillis;

/// The one row of `strategy_settings`.
struct Overrides(Map<String, Value>, EpochMillis);

impl FromRow<'_, AnyRow> for Overrides {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(json(r, "overrides")?, r.try_get("updated_at")?))
    }
}

#[async_trait]
impl SettingsRepo for Store {
    async fn load_settings_overrides(
        &self,
    ) -> StoreResult<Option<(Map<String, Value>, EpochMillis)>> {
        let row: Option<Overrides> =
            sqlx::query_as("SELECT overrides, updated_at FROM strategy_settings WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|Overrides(map, at)| (map, at)))
    }

    async fn save_settings_overrides(
        &self,
        overrides: &Map<String, Value>,
        now: EpochMillis,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO strategy_settings (id, overrides, updated_at) VALUES (1, $1, $2)
             ON CONFLICT(id) DO UPDATE SET overrides = excluded.overrides, updated_at = excluded.updated_at",
        )
        .bind(Value::Object(overrides.clone()).to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.announce(Change::Settings).await;
        Ok(())
    }
}

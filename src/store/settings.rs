use serde_json::{Map, Value};

use super::{Store, StoreResult};
use crate::domain::EpochMillis;

impl Store {
    pub async fn load_settings_overrides(
        &self,
    ) -> StoreResult<Option<(Map<String, Value>, EpochMillis)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT overrides, updated_at FROM strategy_settings WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(json, at)| {
            serde_json::from_str(&json)
                .map(|m| (m, at))
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .transpose()
    }

    pub async fn save_settings_overrides(
        &self,
        overrides: &Map<String, Value>,
        now: EpochMillis,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO strategy_settings (id, overrides, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET overrides = excluded.overrides, updated_at = excluded.updated_at",
        )
        .bind(Value::Object(overrides.clone()).to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{bad_column, count, id_param, json};
use super::{AlertRepo, Change, Store, StoreResult};
use crate::config::AlertRule;
use crate::domain::{Alert, EpochMillis, NewAlert};

const COLUMNS: &str =
    "id, rule, condition, strategy, message, raised_at, cleared_at, clear_message";

impl FromRow<'_, AnyRow> for Alert {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        let condition: String = r.try_get("condition")?;
        Ok(Self {
            id: count(r, "id")?,
            rule: r.try_get("rule")?,
            condition: condition
                .parse()
                .map_err(|e: String| bad_column("condition", e))?,
            strategy: r.try_get("strategy")?,
            message: r.try_get("message")?,
            raised_at: r.try_get("raised_at")?,
            cleared_at: r.try_get("cleared_at")?,
            clear_message: r.try_get("clear_message")?,
        })
    }
}

/// The one row of `alert_rules`.
struct StoredRules(Vec<AlertRule>);

impl FromRow<'_, AnyRow> for StoredRules {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(json(r, "rules")?))
    }
}

#[async_trait]
impl AlertRepo for Store {
    async fn insert_alert(&self, alert: &NewAlert) -> StoreResult<Alert> {
        sqlx::query_as(&format!(
            "INSERT INTO alerts (rule, condition, strategy, message, raised_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        ))
        .bind(&alert.rule)
        .bind(alert.condition.as_str())
        .bind(&alert.strategy)
        .bind(&alert.message)
        .bind(alert.raised_at)
        .fetch_one(&self.pool)
        .await
    }

    async fn clear_alert(&self, id: u64, at: EpochMillis, message: &str) -> StoreResult<Alert> {
        sqlx::query_as(&format!(
            "UPDATE alerts SET cleared_at = $2, clear_message = $3 WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id_param(id)?)
        .bind(at)
        .bind(message)
        .fetch_one(&self.pool)
        .await
    }

    async fn active_alerts(&self) -> StoreResult<Vec<Alert>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE cleared_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
    }

    async fn recent_alerts(&self, limit: u32) -> StoreResult<Vec<Alert>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE cleared_at IS NOT NULL ORDER BY cleared_at DESC, id DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
    }

    async fn prune_alerts(&self, before: EpochMillis, batch: u32) -> StoreResult<u64> {
        self.prune_by_age(
            "DELETE FROM alerts WHERE id IN
               (SELECT id FROM alerts WHERE cleared_at < $1 ORDER BY cleared_at LIMIT $2)",
            before,
            batch,
        )
        .await
    }

    async fn load_alert_rules(&self) -> StoreResult<Option<Vec<AlertRule>>> {
        let row: Option<StoredRules> = sqlx::query_as("SELECT rules FROM alert_rules WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.0))
    }

    async fn save_alert_rules(&self, rules: &[AlertRule], now: EpochMillis) -> StoreResult<()> {
        let doc = serde_json::to_string(rules).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO alert_rules (id, rules, saved_at) VALUES (1, $1, $2)
             ON CONFLICT(id) DO UPDATE SET rules = excluded.rules, saved_at = excluded.saved_at",
        )
        .bind(doc)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.announce(Change::AlertRules).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConditionKind;
    use crate::store::tests::open;

    fn raised(rule: &str, at: EpochMillis) -> NewAlert {
        NewAlert {
            rule: rule.into(),
            condition: ConditionKind::CircuitOpen,
            strategy: Some("s".into()),
            message: "open".into(),
            raised_at: at,
        }
    }

    #[tokio::test]
    async fn alerts_are_active_until_cleared_and_only_cleared_ones_are_pruned() {
        let (_dir, store) = open().await;
        let a = store.insert_alert(&raised("a", 1)).await.unwrap();
        let b = store.insert_alert(&raised("b", 2)).await.unwrap();
        assert_eq!(store.active_alerts().await.unwrap(), [a.clone(), b.clone()]);
        let cleared = store.clear_alert(a.id, 10, "closed").await.unwrap();
        assert_eq!(cleared.cleared_at, Some(10));
        assert_eq!(
            store.active_alerts().await.unwrap(),
            std::slice::from_ref(&b)
        );
        assert_eq!(store.recent_alerts(10).await.unwrap(), [cleared]);
        assert_eq!(
            store.prune_alerts(i64::MAX, 10).await.unwrap(),
            1,
            "only the cleared one"
        );
        assert_eq!(store.active_alerts().await.unwrap(), [b]);
        sqlx::query("UPDATE alerts SET condition = 'disk_full'")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.active_alerts().await.unwrap_err().to_string();
        assert!(
            err.contains("condition") && err.contains("disk_full"),
            "{err}"
        );
    }
}

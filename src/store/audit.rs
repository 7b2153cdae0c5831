use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{count, id_param, json};
use super::{AuditRepo, Store, StoreResult};
use crate::domain::{AuditRecord, EpochMillis};

/// Which audit rows to read: oldest first, ids above `after`, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// From this time on (epoch milliseconds, inclusive).
    pub since: Option<EpochMillis>,
    /// Before this time (exclusive).
    pub until: Option<EpochMillis>,
    /// Only calls made for this HostFactory request.
    pub request_id: Option<String>,
    /// Ids above this one (the page cursor).
    pub after: Option<u64>,
    pub limit: u32,
}

impl FromRow<'_, AnyRow> for AuditRecord {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: count(r, "id")?,
            at: r.try_get("at")?,
            strategy: r.try_get("strategy")?,
            action: r.try_get("action")?,
            target: json(r, "target")?,
            error_code: r.try_get("error_code")?,
            request_ids: json(r, "request_ids")?,
            route: r.try_get("route")?,
            token: r.try_get("token")?,
        })
    }
}

#[async_trait]
impl AuditRepo for Store {
    async fn insert_audit(&self, record: &AuditRecord) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO audit (at, strategy, action, target, error_code, request_ids, route, token)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(record.at)
        .bind(&record.strategy)
        .bind(&record.action)
        .bind(record.target.to_string())
        .bind(&record.error_code)
        .bind(serde_json::Value::from(record.request_ids.clone()).to_string())
        .bind(&record.route)
        .bind(&record.token)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id.unsigned_abs())
    }

    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        sqlx::query_as(&format!(
            "SELECT id, at, strategy, action, target, error_code, request_ids, route, token
             FROM audit
             WHERE id > $1 AND at >= $2 AND at < $3
               AND ($4 IS NULL OR EXISTS (SELECT 1 FROM {} WHERE value = $4))
             ORDER BY id LIMIT $5",
            self.backend().json_strings("audit.request_ids")
        ))
        .bind(id_param(q.after.unwrap_or(0))?)
        .bind(q.since.unwrap_or(EpochMillis::MIN))
        .bind(q.until.unwrap_or(EpochMillis::MAX))
        .bind(&q.request_id)
        .bind(i64::from(q.limit))
        .fetch_all(&self.pool)
        .await
    }

    async fn prune_audit(&self, before: EpochMillis, batch: u32) -> StoreResult<u64> {
        self.prune_by_age(
            "DELETE FROM audit WHERE id IN
               (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
            batch,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::tests::open;

    fn record(at: EpochMillis, request_ids: &[&str]) -> AuditRecord {
        AuditRecord {
            id: 0,
            at,
            strategy: "aws".into(),
            action: "RunInstances".into(),
            target: json!({"count": 1}),
            error_code: None,
            request_ids: request_ids.iter().map(|s| s.to_string()).collect(),
            route: None,
            token: None,
        }
    }

    #[tokio::test]
    async fn audit_rows_are_read_by_time_request_and_page_and_pruned_by_age() {
        let (_dir, store) = open().await;
        for (at, ids) in [(1000, vec!["r1"]), (2000, vec!["r2", "r1"]), (3000, vec![])] {
            store.insert_audit(&record(at, &ids)).await.unwrap();
        }
        let all = AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        };
        let ids = |rows: Vec<AuditRecord>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.audit(&all).await.unwrap()), [1, 2, 3]);
        let r1 = AuditQuery {
            request_id: Some("r1".into()),
            ..all.clone()
        };
        assert_eq!(ids(store.audit(&r1).await.unwrap()), [1, 2]);
        let window = AuditQuery {
            since: Some(2000),
            until: Some(3000),
            ..all.clone()
        };
        assert_eq!(ids(store.audit(&window).await.unwrap()), [2]);
        let page = AuditQuery {
            after: Some(1),
            limit: 1,
            ..all.clone()
        };
        let read = store.audit(&page).await.unwrap();
        assert_eq!(read[0].request_ids, ["r2", "r1"]);
        assert_eq!(ids(read), [2]);
        assert_eq!(store.prune_audit(2500, 1).await.unwrap(), 1);
        assert_eq!(store.prune_audit(2500, 10).await.unwrap(), 1);
        assert_eq!(ids(store.audit(&all).await.unwrap()), [3]);
    }
}

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{bad_column, count, id_param, json};
use super::{Backend, EventRepo, Store, StoreResult};
use crate::domain::{EpochMillis, Event, EventKind};

/// Which events a reader wants, stored or live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub strategy: Option<String>,
    pub kind: Option<EventKind>,
    /// Only events of this HostFactory request: its own, and those of its machines (which
    /// name it as `request_id`, or as `return_request_id` once returned).
    pub request_id: Option<String>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        self.kind.is_none_or(|k| k == e.kind)
            && self
                .strategy
                .as_deref()
                .is_none_or(|s| e.strategy.as_deref() == Some(s))
            && self.request_id.as_deref().is_none_or(|id| {
                e.detail["request_id"] == id || e.detail["return_request_id"] == id
            })
    }
}

/// Which stored events to read. With `after` or `since` the first `limit` from there on;
/// without either the newest `limit`. Oldest first either way.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub filter: EventFilter,
    pub since: Option<EpochMillis>,
    /// Ids above this one.
    pub after: Option<u64>,
    /// Ids below this one.
    pub before: Option<u64>,
    pub limit: u32,
}

impl FromRow<'_, AnyRow> for Event {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        let kind: String = r.try_get("kind")?;
        Ok(Self {
            id: count(r, "id")?,
            at: r.try_get("at")?,
            kind: kind.parse().map_err(|e: String| bad_column("kind", e))?,
            strategy: r.try_get("strategy")?,
            detail: json(r, "detail")?,
        })
    }
}

/// Ids a PostgreSQL replica's start reserves: 2^32 events a start, 2^31 starts.
const EVENT_ID_BLOCK_BITS: u32 = 32;

#[async_trait]
impl EventRepo for Store {
    async fn last_event_id(&self) -> StoreResult<u64> {
        let seq: Option<i64> = match self.backend() {
            Backend::Sqlite => {
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                    .fetch_optional(&self.pool)
                    .await?
            }
            // Replicas each emit events with ids of their own: each start takes the next
            // block of 2^32 ids from the sequence, above every block taken before.
            Backend::Postgres => Some(
                sqlx::query_scalar::<_, i64>("SELECT nextval('event_ids')")
                    .fetch_one(&self.pool)
                    .await?
                    << EVENT_ID_BLOCK_BITS,
            ),
        };
        let seq = seq.unwrap_or(0);
        u64::try_from(seq).map_err(|_| bad_column("seq", format!("{seq} is not a valid event id")))
    }

    async fn insert_events(&self, events: &[Event]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO events (id, at, kind, strategy, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_param(e.id)?)
            .bind(e.at)
            .bind(e.kind.as_str())
            .bind(&e.strategy)
            .bind(e.detail.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    async fn events(&self, q: &EventQuery) -> StoreResult<Vec<Event>> {
        let newest = q.after.is_none() && q.since.is_none();
        let sql = format!(
            "SELECT id, at, kind, strategy, detail FROM events
             WHERE ($1 IS NULL OR strategy = $1) AND ($2 IS NULL OR kind = $2)
               AND id > $3 AND id < $4 AND at >= $5
               AND ($7 IS NULL OR {} = $7 OR {} = $7)
             ORDER BY id {} LIMIT $6",
            self.backend().json_text("detail", "request_id"),
            self.backend().json_text("detail", "return_request_id"),
            if newest { "DESC" } else { "ASC" }
        );
        let mut rows: Vec<Event> = sqlx::query_as(&sql)
            .bind(&q.filter.strategy)
            .bind(q.filter.kind.map(EventKind::as_str))
            .bind(id_param(q.after.unwrap_or(0))?)
            .bind(q.before.map(id_param).transpose()?.unwrap_or(i64::MAX))
            .bind(q.since.unwrap_or(EpochMillis::MIN))
            .bind(i64::from(q.limit))
            .bind(&q.filter.request_id)
            .fetch_all(&self.pool)
            .await?;
        if newest {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn prune_events(&self, before: EpochMillis, keep: u32, batch: u32) -> StoreResult<u64> {
        self.prune_history(
            "DELETE FROM events WHERE id IN
                   (SELECT id FROM events WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
            // Beyond the newest `keep`, oldest first.
            "DELETE FROM events WHERE id IN
                   (SELECT id FROM events WHERE id <
                      (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET $1 - 1)
                    ORDER BY id LIMIT $2)",
            keep,
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

    fn event(id: u64, at: EpochMillis, kind: EventKind, strategy: &str) -> Event {
        Event {
            id,
            at,
            kind,
            strategy: Some(strategy.into()),
            detail: json!({"n": id}),
        }
    }

    #[tokio::test]
    async fn events_are_pruned_by_age_and_count_and_ids_never_go_back() {
        let (_dir, store) = open().await;
        assert_eq!(store.last_event_id().await.unwrap(), 0);
        let events: Vec<Event> = (1..=10)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    EventKind::Operation
                } else {
                    EventKind::Selection
                };
                event(i, i as EpochMillis * 1000, kind, "s")
            })
            .collect();
        store.insert_events(&events).await.unwrap();
        let all = EventQuery {
            filter: EventFilter::default(),
            since: None,
            after: None,
            before: None,
            limit: 100,
        };
        let ops = EventQuery {
            filter: EventFilter {
                kind: Some(EventKind::Operation),
                strategy: Some("s".into()),
                request_id: None,
            },
            ..all.clone()
        };
        let read = store.events(&ops).await.unwrap();
        assert_eq!(
            read,
            events
                .iter()
                .filter(|e| e.id % 2 == 0)
                .cloned()
                .collect::<Vec<_>>()
        );
        // Older than 3 s: ids 1 and 2, in batches of 1 (one per kind of rule).
        assert_eq!(store.prune_events(3000, 100, 1).await.unwrap(), 1);
        assert_eq!(store.prune_events(3000, 100, 10).await.unwrap(), 1);
        // Beyond the newest 5: ids 3 to 5.
        assert_eq!(store.prune_events(0, 5, 10).await.unwrap(), 3);
        let left: Vec<u64> = store
            .events(&all)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, [6, 7, 8, 9, 10]);
        assert_eq!(store.prune_events(i64::MAX, 5, 10).await.unwrap(), 5);
        assert_eq!(
            store.last_event_id().await.unwrap(),
            10,
            "kept after the table is empty"
        );
    }

    #[tokio::test]
    async fn an_unknown_stored_kind_is_an_error_naming_the_column() {
        let (_dir, store) = open().await;
        sqlx::query("INSERT INTO events (id, at, kind, strategy, detail) VALUES (1, 0, 'alarm', NULL, '{}')")
            .execute(&store.pool)
            .await
            .unwrap();
        let query = EventQuery {
            filter: EventFilter::default(),
            since: None,
            after: None,
            before: None,
            limit: 10,
        };
        let err = store.events(&query).await.unwrap_err().to_string();
        assert!(err.contains("kind") && err.contains("alarm"), "{err}");
    }
}

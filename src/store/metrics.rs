use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreResult};

/// Latency bucket upper bounds in ms; the last bucket is everything above.
pub const LATENCY_BOUNDS_MS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];

/// Counts of one strategy and operation type in one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricBucket {
    pub strategy: String,
    pub operation: String,
    pub minute: i64,
    pub count: u64,
    pub successes: u64,
    pub failures: u64,
    pub total_ms: f64,
    pub max_ms: f64,
    /// One count per [`LATENCY_BOUNDS_MS`] entry plus one for slower calls.
    pub histogram: Vec<u64>,
    pub error_codes: BTreeMap<String, u64>,
    /// `{code, message, at}` of the latest failure.
    pub last_error: Option<serde_json::Value>,
}

impl MetricBucket {
    pub fn empty(strategy: &str, operation: &str, minute: i64) -> Self {
        Self {
            strategy: strategy.to_string(),
            operation: operation.to_string(),
            minute,
            count: 0,
            successes: 0,
            failures: 0,
            total_ms: 0.0,
            max_ms: 0.0,
            histogram: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            error_codes: BTreeMap::new(),
            last_error: None,
        }
    }

    /// Adds `other`'s counts (same strategy and operation) into `self`.
    pub fn absorb(&mut self, other: &MetricBucket) {
        self.count += other.count;
        self.successes += other.successes;
        self.failures += other.failures;
        self.total_ms += other.total_ms;
        self.max_ms = self.max_ms.max(other.max_ms);
        for (mine, theirs) in self.histogram.iter_mut().zip(&other.histogram) {
            *mine += theirs;
        }
        for (code, n) in &other.error_codes {
            *self.error_codes.entry(code.clone()).or_default() += n;
        }
        if other.last_error.is_some() && (self.last_error.is_none() || other.minute >= self.minute)
        {
            self.last_error = other.last_error.clone();
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl Store {
    /// Buckets from `since_minute` on, optionally for one strategy.
    pub async fn load_metric_buckets(
        &self,
        since_minute: i64,
        strategy: Option<&str>,
    ) -> StoreResult<Vec<MetricBucket>> {
        let rows = sqlx::query(
            "SELECT strategy, operation, minute, count, successes, failures, total_ms, max_ms,
                    histogram, error_codes, last_error
             FROM metric_buckets WHERE minute >= ?1 AND (?2 IS NULL OR strategy = ?2)
             ORDER BY minute",
        )
        .bind(since_minute)
        .bind(strategy)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let last_error: Option<String> = r.get("last_error");
                Ok(MetricBucket {
                    strategy: r.get("strategy"),
                    operation: r.get("operation"),
                    minute: r.get("minute"),
                    count: r.get::<i64, _>("count") as u64,
                    successes: r.get::<i64, _>("successes") as u64,
                    failures: r.get::<i64, _>("failures") as u64,
                    total_ms: r.get("total_ms"),
                    max_ms: r.get("max_ms"),
                    histogram: decode(r.get("histogram"))?,
                    error_codes: decode(r.get("error_codes"))?,
                    last_error: last_error.map(|e| decode(&e)).transpose()?,
                })
            })
            .collect()
    }

    /// Adds the given deltas to the stored buckets, in one transaction.
    pub async fn add_metric_buckets(&self, deltas: &[MetricBucket]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for delta in deltas {
            let existing = sqlx::query(
                "SELECT count, successes, failures, total_ms, max_ms, histogram, error_codes, last_error
                 FROM metric_buckets WHERE strategy = ?1 AND operation = ?2 AND minute = ?3",
            )
            .bind(&delta.strategy)
            .bind(&delta.operation)
            .bind(delta.minute)
            .fetch_optional(&mut *tx)
            .await?;
            let mut merged = match existing {
                Some(r) => {
                    let last_error: Option<String> = r.get("last_error");
                    MetricBucket {
                        count: r.get::<i64, _>("count") as u64,
                        successes: r.get::<i64, _>("successes") as u64,
                        failures: r.get::<i64, _>("failures") as u64,
                        total_ms: r.get("total_ms"),
                        max_ms: r.get("max_ms"),
                        histogram: decode(r.get("histogram"))?,
                        error_codes: decode(r.get("error_codes"))?,
                        last_error: last_error.map(|e| decode(&e)).transpose()?,
                        ..MetricBucket::empty(&delta.strategy, &delta.operation, delta.minute)
                    }
                }
                None => MetricBucket::empty(&delta.strategy, &delta.operation, delta.minute),
            };
            merged.absorb(delta);
            sqlx::query(
                "INSERT OR REPLACE INTO metric_buckets
                   (strategy, operation, minute, count, successes, failures, total_ms, max_ms,
                    histogram, error_codes, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .bind(&merged.strategy)
            .bind(&merged.operation)
            .bind(merged.minute)
            .bind(merged.count as i64)
            .bind(merged.successes as i64)
            .bind(merged.failures as i64)
            .bind(merged.total_ms)
            .bind(merged.max_ms)
            .bind(serde_json::to_string(&merged.histogram).expect("serializes"))
            .bind(serde_json::to_string(&merged.error_codes).expect("serializes"))
            .bind(merged.last_error.as_ref().map(|e| e.to_string()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Drops buckets older than `before_minute`.
    pub async fn prune_metric_buckets(&self, before_minute: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM metric_buckets WHERE minute < ?1")
            .bind(before_minute)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

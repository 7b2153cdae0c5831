use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::rows::{count, json, json_opt};
use super::{MetricsRepo, Store, StoreResult};

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
    /// Failures of the provider.
    pub failures: u64,
    /// The caller's mistakes: not in the success rate or the latencies.
    pub caller_errors: u64,
    /// Refused by the circuit breaker: not in the success rate or the latencies.
    pub rejected: u64,
    /// Latency totals, histogram and maximum cover successes and failures only.
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
            caller_errors: 0,
            rejected: 0,
            total_ms: 0.0,
            max_ms: 0.0,
            histogram: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            error_codes: BTreeMap::new(),
            last_error: None,
        }
    }

    /// Operations that say how the provider did: successes and failures.
    pub fn judged(&self) -> u64 {
        self.successes + self.failures
    }

    /// Adds `other`'s counts (same strategy and operation) into `self`.
    pub fn absorb(&mut self, other: &MetricBucket) {
        self.count += other.count;
        self.successes += other.successes;
        self.failures += other.failures;
        self.caller_errors += other.caller_errors;
        self.rejected += other.rejected;
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

/// The counts of a stored bucket, without its key.
struct Counts(MetricBucket);

impl FromRow<'_, AnyRow> for Counts {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(Self(MetricBucket {
            strategy: String::new(),
            operation: String::new(),
            minute: 0,
            count: count(r, "count")?,
            successes: count(r, "successes")?,
            failures: count(r, "failures")?,
            caller_errors: count(r, "caller_errors")?,
            rejected: count(r, "rejected")?,
            total_ms: r.try_get("total_ms")?,
            max_ms: r.try_get("max_ms")?,
            histogram: json(r, "histogram")?,
            error_codes: json(r, "error_codes")?,
            last_error: json_opt(r, "last_error")?,
        }))
    }
}

impl FromRow<'_, AnyRow> for MetricBucket {
    fn from_row(r: &AnyRow) -> sqlx::Result<Self> {
        Ok(MetricBucket {
            strategy: r.try_get("strategy")?,
            operation: r.try_get("operation")?,
            minute: r.try_get("minute")?,
            ..Counts::from_row(r)?.0
        })
    }
}

const COUNTS: &str = "count, successes, failures, caller_errors, rejected, total_ms, max_ms, \
     histogram, error_codes, last_error";

#[async_trait]
impl MetricsRepo for Store {
    async fn load_metric_buckets(
        &self,
        since_minute: i64,
        strategy: Option<&str>,
    ) -> StoreResult<Vec<MetricBucket>> {
        sqlx::query_as(&format!(
            "SELECT strategy, operation, minute, {COUNTS}
             FROM metric_buckets WHERE minute >= $1 AND ($2 IS NULL OR strategy = $2)
             ORDER BY minute"
        ))
        .bind(since_minute)
        .bind(strategy)
        .fetch_all(&self.pool)
        .await
    }

    async fn add_metric_buckets(&self, deltas: &[MetricBucket]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for delta in deltas {
            let existing: Option<Counts> = sqlx::query_as(&format!(
                "SELECT {COUNTS} FROM metric_buckets
                 WHERE strategy = $1 AND operation = $2 AND minute = $3"
            ))
            .bind(&delta.strategy)
            .bind(&delta.operation)
            .bind(delta.minute)
            .fetch_optional(&mut *tx)
            .await?;
            let mut merged = MetricBucket {
                strategy: delta.strategy.clone(),
                operation: delta.operation.clone(),
                minute: delta.minute,
                ..existing.map_or_else(
                    || MetricBucket::empty(&delta.strategy, &delta.operation, delta.minute),
                    |c| c.0,
                )
            };
            merged.absorb(delta);
            sqlx::query(&format!(
                "INSERT INTO metric_buckets (strategy, operation, minute, {COUNTS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (strategy, operation, minute) DO UPDATE SET
                     count = excluded.count, successes = excluded.successes,
                     failures = excluded.failures, caller_errors = excluded.caller_errors,
                     rejected = excluded.rejected, total_ms = excluded.total_ms,
                     max_ms = excluded.max_ms, histogram = excluded.histogram,
                     error_codes = excluded.error_codes, last_error = excluded.last_error"
            ))
            .bind(&merged.strategy)
            .bind(&merged.operation)
            .bind(merged.minute)
            .bind(merged.count as i64)
            .bind(merged.successes as i64)
            .bind(merged.failures as i64)
            .bind(merged.caller_errors as i64)
            .bind(merged.rejected as i64)
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

    async fn prune_metric_buckets(&self, before_minute: i64) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM metric_buckets WHERE minute < $1")
            .bind(before_minute)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

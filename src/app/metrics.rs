//! Operation metrics: recorded in memory per one-minute bucket, flushed to SQLite by the
//! background task (and at shutdown), read back over any time range.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::prometheus::OperationSeries;
use crate::domain::{EpochMillis, Outcome, ProviderError, rfc3339};
use crate::store::{LATENCY_BOUNDS_MS, MetricBucket, MetricsRepo, Store, StoreResult};

/// Buckets older than this are pruned; it is also the longest `time_range_hours`.
pub const RETENTION_HOURS: u32 = 31 * 24;

#[derive(Default)]
pub struct MetricsRecorder {
    pending: Mutex<HashMap<(String, String, i64), MetricBucket>>,
    /// Counters and histograms since start, for the Prometheus endpoint.
    series: OperationSeries,
}

fn minute_of(ms: EpochMillis) -> i64 {
    ms.div_euclid(60_000)
}

impl MetricsRecorder {
    /// Counts one operation's `result`. Caller errors and circuit rejections are counted
    /// apart, and only what judges the provider goes into its latencies.
    pub fn record<T>(
        &self,
        strategy: &str,
        operation: &str,
        at: EpochMillis,
        result: &Result<T, ProviderError>,
        response_ms: f64,
    ) {
        let outcome = Outcome::of(result);
        self.series
            .observe(strategy, operation, outcome, response_ms);
        let minute = minute_of(at);
        let mut pending = self.pending.lock().expect("metrics lock");
        let bucket = pending
            .entry((strategy.to_string(), operation.to_string(), minute))
            .or_insert_with(|| MetricBucket::empty(strategy, operation, minute));
        bucket.count += 1;
        match outcome {
            Outcome::Success => bucket.successes += 1,
            Outcome::Failure => bucket.failures += 1,
            Outcome::CallerError => bucket.caller_errors += 1,
            Outcome::Rejected => bucket.rejected += 1,
        }
        if outcome.judges_provider() {
            bucket.total_ms += response_ms;
            bucket.max_ms = bucket.max_ms.max(response_ms);
            let slot = LATENCY_BOUNDS_MS
                .iter()
                .position(|bound| response_ms <= *bound)
                .unwrap_or(LATENCY_BOUNDS_MS.len());
            bucket.histogram[slot] += 1;
        }
        if let Err(e) = result {
            *bucket.error_codes.entry(e.code.clone()).or_default() += 1;
            bucket.last_error =
                Some(json!({"code": e.code, "message": e.message, "at": rfc3339(at)}));
        }
    }

    /// Operation counters and latency histograms since start.
    pub fn series(&self) -> &OperationSeries {
        &self.series
    }

    /// Writes what is pending; on failure the counts are put back for the next flush.
    pub async fn flush(&self, store: &Store) -> StoreResult<()> {
        let drained: Vec<MetricBucket> = {
            let mut pending = self.pending.lock().expect("metrics lock");
            pending.drain().map(|(_, b)| b).collect()
        };
        if drained.is_empty() {
            return Ok(());
        }
        if let Err(e) = store.add_metric_buckets(&drained).await {
            let mut pending = self.pending.lock().expect("metrics lock");
            for b in drained {
                pending
                    .entry((b.strategy.clone(), b.operation.clone(), b.minute))
                    .or_insert_with(|| MetricBucket::empty(&b.strategy, &b.operation, b.minute))
                    .absorb(&b);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Stored plus pending buckets from `hours` ago until now.
    pub async fn buckets(
        &self,
        store: &Store,
        now: EpochMillis,
        hours: u32,
        strategy: Option<&str>,
    ) -> StoreResult<Vec<MetricBucket>> {
        let since = minute_of(now) - i64::from(hours) * 60 + 1;
        let mut rows = store.load_metric_buckets(since, strategy).await?;
        let pending = self.pending.lock().expect("metrics lock");
        rows.extend(
            pending
                .values()
                .filter(|b| b.minute >= since && strategy.is_none_or(|s| s == b.strategy))
                .cloned(),
        );
        Ok(rows)
    }
}

/// Totals over a set of buckets.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[schema(example = json!({"count": 124, "successes": 118, "failures": 2, "caller_errors": 3,
    "rejected": 1, "success_rate": 98.33,
    "mean_response_time_ms": 14.3, "p50_response_time_ms": 20.0, "p95_response_time_ms": 50.0,
    "p99_response_time_ms": 100.0, "max_response_time_ms": 87.5}))]
pub struct MetricTotals {
    /// Every operation: successes, failures, caller errors and rejections.
    pub count: u64,
    pub successes: u64,
    /// Failures of the provider.
    pub failures: u64,
    /// The caller's mistakes (INVALID_PARAMETERS, INVALID_TEMPLATE, an unsupported operation):
    /// not in the success rate or the latencies.
    pub caller_errors: u64,
    /// Refused by the circuit breaker (CIRCUIT_OPEN) without reaching the provider: not in the
    /// success rate or the latencies.
    pub rejected: u64,
    /// Percent of successes among successes and failures; null when there were none.
    pub success_rate: Option<f64>,
    /// Over successes and failures.
    pub mean_response_time_ms: Option<f64>,
    /// Percentiles are the upper bound of the latency bucket they fall in (bounds 1, 2, 5, 10,
    /// 20, 50, 100, 200, 500 ms, 1, 2, 5, 10, 30, 60 s), capped at the maximum seen.
    pub p50_response_time_ms: Option<f64>,
    pub p95_response_time_ms: Option<f64>,
    pub p99_response_time_ms: Option<f64>,
    pub max_response_time_ms: Option<f64>,
}

/// Error codes and the latest error over a set of buckets.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct ErrorDetails {
    pub error_codes: BTreeMap<String, u64>,
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<Value>,
}

pub fn merge(buckets: &[&MetricBucket]) -> MetricBucket {
    let mut total = MetricBucket::empty("", "", i64::MIN);
    for b in buckets {
        total.absorb(b);
        total.minute = total.minute.max(b.minute);
    }
    total
}

fn percentile(b: &MetricBucket, p: f64) -> Option<f64> {
    let judged = b.judged();
    if judged == 0 {
        return None;
    }
    let rank = (p * judged as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in b.histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(b.max_ms);
            return Some(bound.min(b.max_ms));
        }
    }
    Some(b.max_ms)
}

pub fn totals(b: &MetricBucket) -> MetricTotals {
    let judged = b.judged();
    let any = judged > 0;
    MetricTotals {
        count: b.count,
        successes: b.successes,
        failures: b.failures,
        caller_errors: b.caller_errors,
        rejected: b.rejected,
        success_rate: any.then(|| b.successes as f64 * 100.0 / judged as f64),
        mean_response_time_ms: any.then(|| b.total_ms / judged as f64),
        p50_response_time_ms: percentile(b, 0.50),
        p95_response_time_ms: percentile(b, 0.95),
        p99_response_time_ms: percentile(b, 0.99),
        max_response_time_ms: any.then_some(b.max_ms),
    }
}

pub fn error_details(b: &MetricBucket) -> ErrorDetails {
    ErrorDetails {
        error_codes: b.error_codes.clone(),
        last_error: b.last_error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderErrorKind;

    #[test]
    fn totals_and_percentiles_follow_the_histogram() {
        let rec = MetricsRecorder::default();
        let failed = |kind, code: &str| Err(ProviderError::new(kind, code, "boom"));
        for i in 0..100 {
            let ms = if i < 90 { 8.0 } else { 700.0 };
            let result = if i % 10 == 0 {
                failed(ProviderErrorKind::Transient, "E1")
            } else {
                Ok(())
            };
            rec.record("s", "HEALTH_CHECK", 0, &result, ms);
        }
        // The caller's mistakes and circuit rejections are counted apart, out of the rates.
        for (kind, code) in [
            (ProviderErrorKind::Validation, "INVALID_PARAMETERS"),
            (ProviderErrorKind::Validation, "INVALID_TEMPLATE"),
            (ProviderErrorKind::CircuitOpen, "CIRCUIT_OPEN"),
        ] {
            rec.record("s", "HEALTH_CHECK", 0, &failed(kind, code), 0.0);
        }
        let pending = rec.pending.lock().unwrap();
        let b = pending.values().next().unwrap();
        let t = totals(b);
        assert_eq!(
            (
                t.count,
                t.successes,
                t.failures,
                t.caller_errors,
                t.rejected
            ),
            (103, 90, 10, 2, 1)
        );
        assert_eq!(t.success_rate, Some(90.0));
        assert_eq!(t.p50_response_time_ms, Some(10.0));
        assert_eq!(
            t.p95_response_time_ms,
            Some(700.0),
            "capped at the max seen"
        );
        assert_eq!(error_details(b).error_codes["E1"], 10);
        assert_eq!(error_details(b).error_codes["CIRCUIT_OPEN"], 1);
    }

    #[test]
    fn without_provider_outcomes_the_rates_are_null() {
        let rec = MetricsRecorder::default();
        let rejected: Result<(), _> = Err(ProviderError::new(
            ProviderErrorKind::CircuitOpen,
            "CIRCUIT_OPEN",
            "open",
        ));
        rec.record("s", "CREATE_INSTANCES", 0, &rejected, 0.0);
        let pending = rec.pending.lock().unwrap();
        let t = totals(pending.values().next().unwrap());
        assert_eq!((t.count, t.rejected), (1, 1));
        assert_eq!((t.success_rate, t.mean_response_time_ms), (None, None));
        assert_eq!(t.p50_response_time_ms, None);
    }
}

//! Metrics from the background task: pending buckets flushed to the store, old ones pruned.

use crate::app::Engine;
use crate::app::metrics::RETENTION_HOURS;
use crate::domain::now_millis;
use crate::store::MetricsRepo;

/// Writes pending metric buckets; on failure they are kept for the next try.
pub async fn flush(engine: &Engine) {
    if let Err(e) = engine.metrics_recorder().flush(engine.store()).await {
        tracing::error!(error = %e, "cannot flush metrics; kept for the next try");
    }
}

/// Deletes buckets older than the retention.
pub async fn prune(engine: &Engine) {
    let cutoff = now_millis().div_euclid(60_000) - i64::from(RETENTION_HOURS) * 60;
    match engine.store().prune_metric_buckets(cutoff).await {
        Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old metric buckets"),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot prune metric buckets"),
    }
}

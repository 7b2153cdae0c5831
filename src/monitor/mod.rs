//! The background task: health checks every `health_check_interval` (re-read at once when
//! configureProviderStrategy changes it: the next round comes that long after the last one),
//! the first check of a strategy registered or changed when it is due (see
//! [`health::DueChecks`]),
//! breaker open → half-open on time, metrics flushed to the store, old metrics pruned, rows past
//! their retention pruned every `database.retention.prune_interval_seconds`. Stops when the
//! token is cancelled. A module per concern: `health` (the check of one strategy and health
//! recording), `breakers`, `metrics`, `retention`; this one keeps the loop.
//!
//! Replicas (`crate::replica`): checks, breaker timers and pruning run on the leader alone,
//! which saves what they change for the others to read back. Every replica flushes the metrics
//! it recorded itself: a flush adds to the stored buckets, so the store holds the sum over
//! replicas.

pub mod breakers;
pub mod health;
pub mod metrics;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::app::Engine;
use crate::config::RetentionConfig;
use crate::domain::now_millis;

const TICK: Duration = Duration::from_secs(1);
const FLUSH_EVERY_TICKS: u32 = 5;
const PRUNE_EVERY_TICKS: u32 = 3600;

pub use health::{check_all, check_due};

fn interval_of(engine: &Engine) -> Duration {
    Duration::from_secs_f64(engine.settings().effective().health_check_interval.max(1.0))
}

/// Completes when the earliest first check of a new or changed strategy is due; never when
/// none is waiting.
async fn sleep_until_due(engine: &Engine) {
    match engine.due_checks().next_due() {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub async fn run(engine: Arc<Engine>, keep: RetentionConfig, shutdown: CancellationToken) {
    let leadership = engine.store().leadership().clone();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next_check = Instant::now()
        + Duration::from_secs_f64(engine.settings().effective().health_check_initial_delay);
    let mut ticks: u32 = 0;
    let mut last_round = Instant::now();
    if leadership.is_leader() {
        metrics::prune(&engine).await;
        retention::prune(engine.store(), &keep, now_millis()).await;
    }
    let prune_every = Duration::from_secs_f64(keep.prune_interval_seconds);
    let mut next_prune = Instant::now() + prune_every;
    loop {
        // A replica that is not the leader leaves checks due until it leads: then the ones
        // overdue run at once.
        let leading = leadership.is_leader();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = leadership.until_leader(), if !leading => {}
            _ = tokio::time::sleep_until(next_check), if leading => {
                // A slow round delays the next one rather than piling rounds up.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = check_all(&engine) => {}
                }
                last_round = Instant::now();
                next_check = last_round + interval_of(&engine);
            }
            _ = engine.settings().changed() => {
                next_check = last_round + interval_of(&engine);
            }
            // Wakes the loop so that the sleep below is taken with the new time.
            _ = engine.due_checks().added() => {}
            _ = sleep_until_due(&engine), if leading => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = check_due(&engine) => {}
                }
            }
            _ = ticker.tick() => {
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(FLUSH_EVERY_TICKS) {
                    metrics::flush(&engine).await;
                }
                if !leadership.is_leader() {
                    continue;
                }
                breakers::tick_all(&engine).await;
                if ticks.is_multiple_of(PRUNE_EVERY_TICKS) {
                    metrics::prune(&engine).await;
                }
                if Instant::now() >= next_prune {
                    retention::prune(engine.store(), &keep, now_millis()).await;
                    next_prune = Instant::now() + prune_every;
                }
            }
        }
    }
    metrics::flush(&engine).await;
    tracing::info!("background monitor stopped");
}

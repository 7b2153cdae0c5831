//! Operation series for the Prometheus exposition (`GET /metrics`): a counter and a latency
//! histogram per strategy, operation type and outcome. They are recorded by the same call that
//! records getProviderMetrics' buckets ([`MetricsRecorder::record`](super::metrics::MetricsRecorder::record)),
//! so that the two always count alike, and use the same latency bounds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::Outcome;
use crate::store::LATENCY_BOUNDS_MS;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub strategy: String,
    pub operation: String,
    /// `success`, `failure`, `caller_error` or `rejected`.
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BOUNDS_MS.iter().map(|ms| ms / 1000.0))
}

/// The series; clones share the counts.
#[derive(Clone)]
pub struct OperationSeries {
    count: Family<OperationLabels, Counter>,
    seconds: Family<OperationLabels, Histogram>,
}

impl Default for OperationSeries {
    fn default() -> Self {
        Self {
            count: Family::default(),
            seconds: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl OperationSeries {
    pub fn observe(&self, strategy: &str, operation: &str, outcome: Outcome, response_ms: f64) {
        let labels = OperationLabels {
            strategy: strategy.to_string(),
            operation: operation.to_string(),
            outcome: outcome.as_str(),
        };
        self.count.get_or_create(&labels).inc();
        self.seconds
            .get_or_create(&labels)
            .observe(response_ms / 1000.0);
    }

    /// Adds the series (sharing their counts) to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ohfp_operations",
            "Provider operations by strategy, operation type and outcome",
            self.count.clone(),
        );
        registry.register(
            "ohfp_operation_duration_seconds",
            "Provider operation latency by strategy, operation type and outcome",
            self.seconds.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabel {
    pub strategy: String,
}

/// The HostFactory reconciler's series: how long its rounds take, and the status calls it
/// makes to each strategy (one per batch of `hostfactory.status_batch_size` machines).
#[derive(Clone)]
pub struct ReconcileSeries {
    round_seconds: Histogram,
    status_calls: Family<StrategyLabel, Counter>,
    last_polled: Family<StrategyLabel, Gauge>,
    last_calls: Family<StrategyLabel, Gauge>,
    notices_applied: Family<StrategyLabel, Counter>,
}

impl Default for ReconcileSeries {
    fn default() -> Self {
        Self {
            // 1 ms to about 65 s, doubling.
            round_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            status_calls: Family::default(),
            last_polled: Family::default(),
            last_calls: Family::default(),
            notices_applied: Family::default(),
        }
    }
}

impl ReconcileSeries {
    pub fn round(&self, took: std::time::Duration) {
        self.round_seconds.observe(took.as_secs_f64());
    }

    pub fn status_call(&self, strategy: &str) {
        self.status_calls.get_or_create(&label(strategy)).inc();
    }

    /// A reclaim notice from `strategy`'s queue marked a machine reclaimed.
    pub fn notice_applied(&self, strategy: &str) {
        self.notices_applied.get_or_create(&label(strategy)).inc();
    }

    /// A new round: strategies it does not poll show no latest poll.
    pub fn clear_polls(&self) {
        self.last_polled.clear();
        self.last_calls.clear();
    }

    /// The latest poll of `strategy`: `machines` asked about in `calls` status calls.
    pub fn polled(&self, strategy: &str, machines: usize, calls: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.last_polled
            .get_or_create(&label(strategy))
            .set(gauge(machines));
        self.last_calls
            .get_or_create(&label(strategy))
            .set(gauge(calls));
    }

    /// Adds the series (sharing their counts) to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ohfp_reconcile_round_seconds",
            "Time of one HostFactory reconciler round, its provider polls included",
            self.round_seconds.clone(),
        );
        registry.register(
            "ohfp_reconcile_status_calls",
            "Status calls the reconciler made, by strategy",
            self.status_calls.clone(),
        );
        registry.register(
            "ohfp_reconcile_last_poll_machines",
            "Machines asked about by the latest reconciler round, per strategy it polled",
            self.last_polled.clone(),
        );
        registry.register(
            "ohfp_reconcile_last_poll_calls",
            "Status calls of the latest reconciler round, per strategy it polled",
            self.last_calls.clone(),
        );
        registry.register(
            "ohfp_reclaim_notices_applied",
            "Reclaim notices from a strategy's interruption queue that marked a machine reclaimed",
            self.notices_applied.clone(),
        );
    }
}

fn label(strategy: &str) -> StrategyLabel {
    StrategyLabel {
        strategy: strategy.to_string(),
    }
}

//! Operation series for the Prometheus exposition (`GET /metrics`): a counter and a latency
//! histogram per strategy, operation type and outcome. They are recorded by the same call that
//! records getProviderMetrics' buckets ([`MetricsRecorder::record`](super::metrics::MetricsRecorder::record)),
//! so that the two always count alike, and use the same latency bounds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
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

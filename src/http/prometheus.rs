//! `GET /metrics` through prometheus-client (a maintained crate, not text by hand): it writes
//! each family once with its HELP and TYPE, escapes labels, and speaks both the Prometheus
//! text format and OpenMetrics. Series recorded as things happen (operations, events not
//! stored, HTTP requests) are shared with the registry; gauges of state (breakers, health, in
//! flight, HostFactory requests and machines, active alerts) are set from the live state at
//! each scrape.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::error::Problem;
use crate::app::Engine;
use crate::domain::HealthState;
use crate::hostfactory::HostFactory;
use crate::state::AppState;
use crate::store::HostFactoryRepo;
use crate::strategy::CircuitState;

/// The OpenMetrics content type, answered when the scraper asks for it.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The route label of requests no route matched (never the raw path: it is unbounded).
const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MachineLabels {
    state: &'static str,
}

/// 1 ms to about 65 s, doubling.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Exposition {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<RouteLabels, Histogram>,
    rate_limited: Family<TokenLabels, Counter>,
    in_flight: Family<StrategyLabels, Gauge>,
    healthy: Family<StrategyLabels, Gauge>,
    circuit: Family<StrategyLabels, Gauge>,
    hf_requests: Family<RequestLabels, Gauge>,
    hf_machines: Family<MachineLabels, Gauge>,
    alerts: Family<RuleLabels, Gauge>,
    uptime: Gauge,
    /// Setting the gauges and encoding are one step: two scrapes at once must not interleave.
    scrape: tokio::sync::Mutex<()>,
}

impl Exposition {
    pub fn new(engine: &Engine, hostfactory: &HostFactory) -> Self {
        let mut registry = Registry::default();
        engine.metrics_recorder().series().register(&mut registry);
        hostfactory.reconcile_series().register(&mut registry);
        let this = Self {
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(http_histogram),
            rate_limited: Family::default(),
            in_flight: Family::default(),
            healthy: Family::default(),
            circuit: Family::default(),
            hf_requests: Family::default(),
            hf_machines: Family::default(),
            alerts: Family::default(),
            uptime: Gauge::default(),
            scrape: tokio::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "ohfp_strategy_in_flight",
            "Operations in flight per strategy",
            this.in_flight.clone(),
        );
        registry.register(
            "ohfp_strategy_healthy",
            "Cached health per strategy: 1 healthy, 0 unhealthy, -1 unknown",
            this.healthy.clone(),
        );
        registry.register(
            "ohfp_circuit_state",
            "Circuit breaker per strategy: 0 closed, 1 half open, 2 open",
            this.circuit.clone(),
        );
        registry.register(
            "ohfp_hostfactory_requests",
            "HostFactory requests kept, by kind and state",
            this.hf_requests.clone(),
        );
        registry.register(
            "ohfp_hostfactory_machines",
            "HostFactory machines kept, by state",
            this.hf_machines.clone(),
        );
        registry.register(
            "ohfp_alerts_active",
            "Alerts raised and not cleared, by rule",
            this.alerts.clone(),
        );
        registry.register(
            "ohfp_http_requests",
            "HTTP requests by matched route, method and status",
            this.http_requests.clone(),
        );
        registry.register(
            "ohfp_http_request_duration_seconds",
            "Time to answer HTTP requests (to the headers), by matched route and method",
            this.http_seconds.clone(),
        );
        registry.register(
            "ohfp_http_rate_limited",
            "Calls refused with 429 for being over their token's rate limit, by token name",
            this.rate_limited.clone(),
        );
        registry.register(
            "ohfp_events_not_stored",
            "Events not kept because the queue was full or the write failed",
            engine.events().not_stored().clone(),
        );
        registry.register(
            "ohfp_uptime_seconds",
            "Seconds since the service started",
            this.uptime.clone(),
        );
        Self { registry, ..this }
    }

    /// One call refused for being over token `token`'s rate limit.
    pub fn rate_limited(&self, token: &str) {
        self.rate_limited
            .get_or_create(&TokenLabels {
                token: token.to_string(),
            })
            .inc();
    }

    fn observe_http(&self, route: String, method: &'static str, status: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.clone(),
                method,
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels { route, method })
            .observe(took.as_secs_f64());
    }

    /// Sets the gauges of state from the engine and the store.
    async fn refresh(&self, state: &AppState) -> Result<(), sqlx::Error> {
        let counts = state.engine.store().hf_counts().await?;
        let alerts = state.alerts.active_by_rule().await?;
        for family in [&self.in_flight, &self.healthy, &self.circuit] {
            // Strategies removed since the last scrape go.
            family.clear();
        }
        for e in state.engine.entries() {
            let labels = StrategyLabels {
                strategy: e.name().to_string(),
            };
            let in_flight = e
                .runtime
                .in_flight
                .load(std::sync::atomic::Ordering::SeqCst);
            self.in_flight
                .get_or_create(&labels)
                .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
            let health = match e.runtime.health().state {
                HealthState::Healthy => 1,
                HealthState::Unhealthy => 0,
                HealthState::Unknown => -1,
            };
            self.healthy.get_or_create(&labels).set(health);
            let circuit = match e
                .runtime
                .breaker
                .lock()
                .expect("breaker lock")
                .breaker
                .state
            {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            self.circuit.get_or_create(&labels).set(circuit);
        }
        self.hf_requests.clear();
        for (kind, request_state, n) in counts.requests {
            self.hf_requests
                .get_or_create(&RequestLabels {
                    kind: kind.as_str(),
                    state: request_state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.hf_machines.clear();
        for (machine_state, n) in counts.machines {
            self.hf_machines
                .get_or_create(&MachineLabels {
                    state: machine_state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.alerts.clear();
        for (rule, n) in alerts {
            self.alerts
                .get_or_create(&RuleLabels { rule })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.uptime
            .set(i64::try_from(state.started.elapsed().as_secs()).unwrap_or(i64::MAX));
        Ok(())
    }
}

/// Methods outside the standard ones share one label value, so that the label stays bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counts every request by the route it matched (its template, e.g.
/// `/api/v1/providers/{name}`), method and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_string();
    let method = method_label(req.method());
    let started = Instant::now();
    let res = next.run(req).await;
    state
        .prometheus
        .observe_http(route, method, res.status().as_u16(), started.elapsed());
    res
}

fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// Prometheus metrics: operations (counts and latency histograms by strategy, operation type
/// and outcome), breaker state, health, in flight, HostFactory requests and machines by state,
/// HTTP requests by route, method and status, events not stored. Prometheus text format 0.0.4;
/// OpenMetrics when the `Accept` header asks for `application/openmetrics-text`.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format (or OpenMetrics)", content_type = "text/plain", body = String,
        example = json!("# HELP ohfp_operations_total Provider operations by strategy, operation type and outcome.\n# TYPE ohfp_operations_total counter\nohfp_operations_total{strategy=\"sim-primary\",operation=\"HEALTH_CHECK\",outcome=\"success\"} 12\n")),
        (status = 503, description = "The store could not be read", body = Problem, content_type = "application/problem+json")))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let exposition = &state.prometheus;
    let _one = exposition.scrape.lock().await;
    if let Err(e) = exposition.refresh(&state).await {
        tracing::error!(error = %e, "cannot read the store for /metrics");
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            "Metrics unavailable",
            format!("the store could not be read: {e}"),
        )
        .into_response();
    }
    let mut out = String::new();
    let (encoded, content_type) = if wants_openmetrics(&headers) {
        (text::encode(&mut out, &exposition.registry), OPENMETRICS)
    } else {
        (
            prometheus_text::encode(&mut out, &exposition.registry),
            prometheus_text::CONTENT_TYPE,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], out).into_response(),
        Err(e) => Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Metrics could not be written",
            e.to_string(),
        )
        .into_response(),
    }
}

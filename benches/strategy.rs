//! Criterion benchmarks of the hot pure paths: selection, the breaker, and HostFactory parsing.
//! Run: `cargo bench --bench strategy`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ohfp::domain::{Capabilities, HealthState, OperationType};
use ohfp::strategy::selection::select;
use ohfp::strategy::{
    BreakerConfig, Candidate, CircuitBreaker, CircuitState, RecentStats, SelectionCriteria,
    SelectionPolicy, SelectorState,
};
use serde_json::{Map, json};

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            name: format!("strategy-{i}"),
            enabled: true,
            priority: (i % 3) as i64,
            weight: (i + 1) as f64,
            order: i as u64,
            capabilities: Capabilities {
                provider_type: "simulated".into(),
                supported_operations: OperationType::ALL.to_vec(),
                features: json!({"instances": true, "spot_instances": i % 2 == 0})
                    .as_object()
                    .cloned()
                    .unwrap(),
                limitations: Map::new(),
                performance_metrics: None,
            },
            health: HealthState::Healthy,
            health_message: None,
            circuit: CircuitState::Closed,
            in_flight: (i % 4) as u64,
            recent: RecentStats {
                samples: 50,
                success_rate: Some(90.0 + (i % 10) as f64),
                mean_response_ms: Some(10.0 + i as f64),
            },
        })
        .collect()
}

fn selection(c: &mut Criterion) {
    let cands = candidates(10);
    let criteria = SelectionCriteria {
        required_capabilities: Some(vec!["instances".into()]),
        min_success_rate: Some(50.0),
        ..Default::default()
    };
    for policy in [
        SelectionPolicy::FirstAvailable,
        SelectionPolicy::WeightedRoundRobin,
        SelectionPolicy::LeastConnections,
        SelectionPolicy::PerformanceBased,
    ] {
        let mut state = SelectorState::new(Some(1));
        c.bench_function(&format!("select 10 strategies {policy}"), |b| {
            b.iter(|| {
                select(
                    black_box(&cands),
                    OperationType::CreateInstances,
                    &criteria,
                    policy,
                    &mut state,
                )
                .unwrap()
            })
        });
    }
}

fn breaker(c: &mut Criterion) {
    let cfg = BreakerConfig::default();
    let mut b = CircuitBreaker::default();
    let mut now = 0;
    c.bench_function("breaker acquire + success", |bench| {
        bench.iter(|| {
            now += 1;
            let permit = b.try_acquire(&cfg, now).0.unwrap();
            black_box(b.on_success(&cfg, permit, now));
        })
    });
}

fn hostfactory(c: &mut Criterion) {
    let body = json!({"requests": (0..100).map(|i| json!({"requestId": format!("req-{i:08}")})).collect::<Vec<_>>()}).to_string();
    c.bench_function("parse getRequestStatus input, 100 ids", |b| {
        b.iter(|| ohfp::hostfactory::wire::parse_request_ids(black_box(body.as_bytes())).unwrap())
    });
    let templates = include_str!("../config/hostfactory/awsprov_templates.json");
    c.bench_function("parse and validate the sample templates file", |b| {
        b.iter(|| ohfp::hostfactory::templates::parse(black_box(templates)).unwrap())
    });
}

criterion_group!(benches, selection, breaker, hostfactory);
criterion_main!(benches);

//! Criterion benchmarks of the hot pure paths: selection among 10, 100 and 1,000 strategies by
//! every policy, the breaker, HostFactory parsing, and rendering a getRequestStatus answer of
//! 10,000 machines. Run: `cargo bench --bench strategy` (about two minutes).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ohfp::domain::{Capabilities, HealthState, MachineState, OperationType};
use ohfp::hostfactory::model::{HfMachine, HfRequest, RequestKind, RequestState};
use ohfp::hostfactory::wire::WireStatusAnswer;
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
    let criteria = SelectionCriteria {
        required_capabilities: Some(vec!["instances".into()]),
        min_success_rate: Some(50.0),
        ..Default::default()
    };
    let mut group = c.benchmark_group("select");
    for n in [10, 100, 1000] {
        let cands = candidates(n);
        for policy in SelectionPolicy::ALL {
            let mut state = SelectorState::new(Some(1));
            group.bench_with_input(
                BenchmarkId::new(policy.to_string(), n),
                &cands,
                |b, cands| {
                    b.iter(|| {
                        select(
                            black_box(cands),
                            OperationType::CreateInstances,
                            &criteria,
                            policy,
                            &mut state,
                        )
                        .unwrap()
                    })
                },
            );
        }
    }
    group.finish();
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

/// An acquire request of 10,000 running machines, as the store reads them back.
fn request_of(n: usize) -> (HfRequest, Vec<HfMachine>) {
    let now = 1_795_305_690_000;
    let request = HfRequest {
        request_id: "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713".into(),
        kind: RequestKind::Acquire,
        template_id: Some("OnDemand-Standard".into()),
        template: None,
        requested_count: n as i64,
        provider_name: None,
        strategy: Some("sim-primary".into()),
        state: RequestState::Done,
        message: String::new(),
        resource_id: None,
        provider_api: None,
        attempts: 1,
        created_at: now,
        updated_at: now,
        claimed_at: Some(now),
    };
    let machines = (0..n)
        .map(|i| HfMachine {
            machine_id: format!("i-{i:017x}"),
            request_id: request.request_id.clone(),
            template_id: request.template_id.clone(),
            strategy: "sim-primary".into(),
            state: MachineState::Running,
            delivered: true,
            private_ip: Some(format!("10.20.{}.{}", i / 250, i % 250 + 4)),
            private_dns: Some(format!("ip-10-20-{}-{}.sim.internal", i / 250, i % 250 + 4)),
            instance_type: Some("m5.large".into()),
            price_type: Some("ondemand".into()),
            launch_time: Some(now / 1000),
            created_at: now,
            updated_at: now,
            ..HfMachine::default()
        })
        .collect();
    (request, machines)
}

fn status_answer(c: &mut Criterion) {
    let (request, machines) = request_of(10_000);
    c.bench_function("getRequestStatus answer of 10,000 machines: build", |b| {
        b.iter(|| ohfp::hostfactory::wire_request(black_box(&request), black_box(&machines)))
    });
    c.bench_function(
        "getRequestStatus answer of 10,000 machines: build + JSON",
        |b| {
            b.iter(|| {
                let answer = WireStatusAnswer {
                    requests: vec![ohfp::hostfactory::wire_request(
                        black_box(&request),
                        black_box(&machines),
                    )],
                };
                serde_json::to_vec(&answer).unwrap()
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = selection, breaker, hostfactory, status_answer
}
criterion_main!(benches);

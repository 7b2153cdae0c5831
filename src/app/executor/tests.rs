//! The executor against a fake provider that counts its calls and answers as told: with an
//! answer, an error of a given kind, a long sleep or a panic. The store is a real SQLite file
//! in a temporary directory (breaker transitions are persisted there).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::Map;

use super::*;
use crate::app::registry::StrategyRuntime;
use crate::app::settings::SettingsPatch;
use crate::config::{StrategySettings, StrategySpec};
use crate::domain::{Capabilities, HealthStatus, LaunchSpec};
use crate::providers::{
    CreateRequest, Created, HealthReport, MachineRef, MemberInvoker, Provider, StatusQuery,
    StatusReport, TemplatesReport, TerminateReport, TerminateRequest, ValidationReport,
};
use crate::store::{CircuitRepo, CircuitRow, SecretKey, StrategySource};
use crate::strategy::{CircuitBreaker, CircuitState};

#[derive(Debug, Clone)]
enum Answer {
    Ok,
    Fail(ProviderErrorKind),
    Sleep(Duration),
    Panic,
}

/// A provider that counts calls and answers every operation as told.
struct Fake {
    calls: AtomicUsize,
    answer: Mutex<Answer>,
}

impl Fake {
    fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer_with(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    async fn act(&self) -> Result<(), ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.lock().unwrap().clone();
        match answer {
            Answer::Ok => Ok(()),
            Answer::Fail(kind) => Err(ProviderError::new(kind, "FAKE_ERROR", "told to fail")),
            Answer::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Answer::Panic => panic!("told to panic"),
        }
    }
}

#[async_trait]
impl Provider for Fake {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            provider_type: "fake".into(),
            supported_operations: OperationType::ALL.to_vec(),
            features: Map::new(),
            limitations: Map::new(),
            performance_metrics: None,
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        self.act().await?;
        Ok(Created {
            count: req.units as usize,
            ..Created::default()
        })
    }

    async fn status(&self, _: &StatusQuery) -> Result<StatusReport, ProviderError> {
        self.act().await?;
        Ok(StatusReport::default())
    }

    async fn terminate(&self, req: &TerminateRequest) -> Result<TerminateReport, ProviderError> {
        self.act().await?;
        Ok(TerminateReport {
            terminating: req.instance_ids(),
            ..TerminateReport::default()
        })
    }

    async fn validate(&self, _: &LaunchSpec) -> Result<ValidationReport, ProviderError> {
        self.act().await?;
        Ok(ValidationReport::from_problems(Vec::new()))
    }

    async fn templates(&self) -> Result<TemplatesReport, ProviderError> {
        self.act().await?;
        Ok(TemplatesReport::default())
    }

    async fn health(&self) -> Result<HealthReport, ProviderError> {
        self.act().await?;
        Ok(HealthReport::healthy("fine"))
    }
}

struct Harness {
    executor: Arc<Executor>,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn harness(settings: StrategySettings) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("executor.db");
    let path = path.to_str().expect("utf-8 path");
    let store = Store::open(path, 5_000, 2, SecretKey::load(None, path).unwrap())
        .await
        .expect("store opens");
    let settings = Arc::new(Settings::new(
        settings,
        SettingsPatch::default(),
        store.clone(),
    ));
    let events = EventBus::start(store.clone()).await.expect("event ids");
    let executor = Executor::new(store.clone(), settings, Arc::default(), Arc::new(events));
    Harness {
        executor,
        store,
        _dir: dir,
    }
}

impl Harness {
    /// Registers `provider` as strategy `name` (lower `priority` is chosen first).
    fn add(&self, name: &str, priority: i64, provider: &Arc<Fake>) -> Arc<StrategyEntry> {
        self.add_full(name, priority, true, CircuitBreaker::default(), provider)
    }

    fn add_full(
        &self,
        name: &str,
        priority: i64,
        enabled: bool,
        breaker: CircuitBreaker,
        provider: &Arc<Fake>,
    ) -> Arc<StrategyEntry> {
        let order = self.executor.registry().all().len() as u64;
        self.executor.registry().put(StrategyEntry {
            spec: StrategySpec {
                name: name.into(),
                provider_type: "fake".into(),
                enabled,
                priority,
                weight: 100.0,
                capabilities: Default::default(),
                config: Map::new(),
                circuit_breaker: None,
            },
            source: StrategySource::Api,
            order,
            registered_at: 0,
            updated_at: 0,
            provider: Arc::clone(provider) as Arc<dyn Provider>,
            runtime: Arc::new(StrategyRuntime::new(
                HealthStatus::unknown(),
                CircuitRow {
                    breaker,
                    ..CircuitRow::default()
                },
            )),
        })
    }

    async fn run(&self, op: Operation, route: Route) -> ExecutionOutcome {
        self.executor
            .execute(op, route)
            .await
            .expect("a strategy is resolved")
    }
}

fn create() -> Operation {
    Operation::Create(CreateRequest {
        spec: LaunchSpec::named("web"),
        units: 1,
        request_id: None,
        tags: Vec::new(),
    })
}

fn on(strategy: &str) -> Route {
    Route {
        strategy: Some(strategy.into()),
        ..Route::default()
    }
}

fn tried(outcome: &ExecutionOutcome) -> Vec<&str> {
    outcome
        .attempts
        .iter()
        .map(|a| a.strategy.as_str())
        .collect()
}

fn error_of(outcome: &ExecutionOutcome) -> &ProviderError {
    outcome.result.as_ref().expect_err("the operation failed")
}

fn breaker_of(entry: &StrategyEntry) -> CircuitBreaker {
    entry.runtime.breaker.lock().unwrap().breaker.clone()
}

fn samples_of(entry: &StrategyEntry) -> u64 {
    entry.runtime.window.lock().unwrap().stats().samples
}

fn with_breaker_threshold(failure_threshold: u32) -> StrategySettings {
    let mut s = StrategySettings::default();
    s.circuit_breaker.failure_threshold = failure_threshold;
    s
}

fn with_fallbacks(names: &[&str]) -> StrategySettings {
    StrategySettings {
        fallback_strategies: names.iter().map(|n| n.to_string()).collect(),
        ..StrategySettings::default()
    }
}

fn with_active(name: &str) -> StrategySettings {
    StrategySettings {
        active_strategy: Some(name.into()),
        ..StrategySettings::default()
    }
}

#[tokio::test]
async fn an_open_circuit_never_calls_the_provider() {
    let h = harness(with_breaker_threshold(2)).await;
    let fake = Fake::new(Answer::Fail(ProviderErrorKind::Transient));
    let a = h.add("a", 0, &fake);
    for _ in 0..2 {
        let out = h.run(create(), on("a")).await;
        assert_eq!(error_of(&out).code, "FAKE_ERROR");
    }
    assert_eq!(breaker_of(&a).state, CircuitState::Open);
    // Open now: the call is refused without reaching the provider, whatever it would answer.
    fake.answer_with(Answer::Ok);
    let out = h.run(create(), on("a")).await;
    let err = error_of(&out);
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ProviderErrorKind::CircuitOpen, "CIRCUIT_OPEN")
    );
    assert_eq!(fake.calls(), 2);
    // The transition was persisted.
    let stored = h.store.load_circuits().await.unwrap();
    assert!(
        stored
            .iter()
            .any(|(n, c)| n == "a" && c.breaker.state == CircuitState::Open),
        "{stored:?}"
    );
}

#[tokio::test]
async fn an_open_circuit_on_a_fallback_is_passed_without_a_call() {
    let h = harness(with_fallbacks(&["b", "c"])).await;
    let (a, b, c) = (
        Fake::new(Answer::Fail(ProviderErrorKind::Capacity)),
        Fake::new(Answer::Ok),
        Fake::new(Answer::Ok),
    );
    h.add("a", 0, &a);
    let open = CircuitBreaker::restored(CircuitState::Open, 5, Some(now_millis()), None);
    h.add_full("b", 1, true, open, &b);
    h.add("c", 2, &c);
    let out = h.run(create(), Route::default()).await;
    assert_eq!(tried(&out), ["a", "b", "c"]);
    assert_eq!(out.attempts[1].error_code.as_deref(), Some("CIRCUIT_OPEN"));
    assert_eq!(out.strategy_used, "c");
    assert!(out.fallback_used());
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 0, 1));
}

#[tokio::test]
async fn failover_goes_down_the_fallbacks_in_order_skipping_tried_and_disabled_ones() {
    let h = harness(with_fallbacks(&["a", "b", "c", "d", "e"])).await;
    let a = Fake::new(Answer::Fail(ProviderErrorKind::Capacity));
    let b = Fake::new(Answer::Ok);
    let c = Fake::new(Answer::Fail(ProviderErrorKind::Transient));
    let d = Fake::new(Answer::Ok);
    let e = Fake::new(Answer::Ok);
    h.add("a", 0, &a);
    h.add_full("b", 1, false, CircuitBreaker::default(), &b);
    h.add("c", 2, &c);
    h.add("d", 3, &d);
    h.add("e", 4, &e);
    let out = h.run(create(), Route::default()).await;
    // a was chosen by selection, so it is not tried again; b is disabled; d succeeds.
    assert_eq!(out.how_chosen, "selection policy FIRST_AVAILABLE");
    assert_eq!(tried(&out), ["a", "c", "d"]);
    assert_eq!(out.strategy_used, "d");
    assert!(out.fallback_used());
    let calls: Vec<usize> = [&a, &b, &c, &d, &e].iter().map(|f| f.calls()).collect();
    assert_eq!(calls, [1, 0, 1, 1, 0]);

    // Everything failing: the last error is the answer, after every usable fallback.
    d.answer_with(Answer::Fail(ProviderErrorKind::Auth));
    e.answer_with(Answer::Fail(ProviderErrorKind::Timeout));
    let out = h.run(create(), Route::default()).await;
    assert_eq!(tried(&out), ["a", "c", "d", "e"]);
    assert_eq!(out.strategy_used, "e");
    assert!(!out.fallback_used());

    // An explicit override runs on that strategy only.
    let out = h.run(create(), on("a")).await;
    assert_eq!(tried(&out), ["a"]);
    assert_eq!(out.how_chosen, "strategy_override");
}

#[tokio::test]
async fn a_timeout_is_a_timeout_error_and_counts_against_the_breaker() {
    let h = harness(with_breaker_threshold(2)).await;
    let fake = Fake::new(Answer::Sleep(Duration::from_secs(30)));
    let a = h.add("a", 0, &fake);
    let route = Route {
        timeout: Some(Duration::from_millis(50)),
        ..on("a")
    };
    let out = h.run(create(), route.clone()).await;
    let err = error_of(&out);
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ProviderErrorKind::Timeout, "TIMEOUT")
    );
    assert_eq!(breaker_of(&a).consecutive_failures, 1);
    let recent = a.runtime.window.lock().unwrap().stats();
    assert_eq!((recent.samples, recent.success_rate), (1, Some(0.0)));
    h.run(create(), route).await;
    assert_eq!(breaker_of(&a).state, CircuitState::Open);
    // The abandoned calls do not stay counted in flight.
    assert_eq!(a.candidate().in_flight, 0);
}

#[tokio::test]
async fn a_panicking_provider_is_an_error_and_the_service_goes_on() {
    let h = harness(with_fallbacks(&["b"])).await;
    let fake = Fake::new(Answer::Panic);
    let other = Fake::new(Answer::Ok);
    let a = h.add("a", 0, &fake);
    h.add("b", 1, &other);
    let out = h.run(create(), on("a")).await;
    let err = error_of(&out);
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ProviderErrorKind::Internal, "PROVIDER_PANICKED")
    );
    assert!(err.message.contains("told to panic"), "{}", err.message);
    // Accounted like any failure, with nothing left taken.
    assert_eq!(breaker_of(&a).consecutive_failures, 1);
    assert_eq!(samples_of(&a), 1);
    assert_eq!(a.candidate().in_flight, 0);
    // Without an override the operation fails over.
    let out = h.run(create(), Route::default()).await;
    assert_eq!(tried(&out), ["a", "b"]);
    assert!(out.result.is_ok());
    // And the strategy works again once its provider does.
    fake.answer_with(Answer::Ok);
    let out = h.run(create(), on("a")).await;
    assert!(out.result.is_ok(), "{:?}", out.result);
    assert_eq!(breaker_of(&a).consecutive_failures, 0);
}

#[tokio::test]
async fn caller_errors_are_not_counted_against_the_strategy_and_do_not_fail_over() {
    let h = harness(StrategySettings {
        fallback_strategies: vec!["b".into()],
        ..with_breaker_threshold(1)
    })
    .await;
    let fake = Fake::new(Answer::Fail(ProviderErrorKind::Validation));
    let other = Fake::new(Answer::Ok);
    let a = h.add("a", 0, &fake);
    let b = h.add("b", 1, &other);
    for route in [Route::default(), on("a")] {
        let out = h.run(create(), route).await;
        assert_eq!(error_of(&out).kind, ProviderErrorKind::Validation);
        assert_eq!(tried(&out), ["a"]);
    }
    assert_eq!(fake.calls(), 2);
    assert_eq!(other.calls(), 0);
    let breaker = breaker_of(&a);
    assert_eq!(
        (breaker.state, breaker.consecutive_failures),
        (CircuitState::Closed, 0)
    );
    assert_eq!(samples_of(&a), 0);
    assert_eq!(samples_of(&b), 0);
}

fn status() -> Operation {
    Operation::Status(StatusQuery {
        instance_ids: vec!["i-1".into()],
        ..StatusQuery::default()
    })
}

fn terminate() -> Operation {
    Operation::Terminate(TerminateRequest {
        machines: vec![MachineRef::bare("i-1")],
        simulate_reclaim: false,
    })
}

#[tokio::test]
async fn a_disabled_active_strategy_is_passed_over_and_the_policy_chooses() {
    let h = harness(with_active("a")).await;
    let (a, b) = (Fake::new(Answer::Ok), Fake::new(Answer::Ok));
    h.add_full("a", 0, false, CircuitBreaker::default(), &a);
    h.add("b", 1, &b);
    for op in [create(), status(), terminate()] {
        let out = h.run(op, Route::default()).await;
        assert_eq!(out.strategy_used, "b");
        assert_eq!(
            out.how_chosen,
            "selection policy FIRST_AVAILABLE (active_strategy 'a' is disabled)"
        );
    }
    assert_eq!((a.calls(), b.calls()), (0, 3));
    assert!(matches!(h.executor.active(), Active::Disabled(n) if n == "a"));

    // An enabled active strategy takes every operation without an override.
    let h = harness(with_active("a")).await;
    h.add("a", 5, &a);
    h.add("b", 0, &b);
    let out = h.run(create(), Route::default()).await;
    assert_eq!(
        (out.strategy_used.as_str(), out.how_chosen.as_str()),
        ("a", "active_strategy")
    );
}

#[tokio::test]
async fn a_disabled_strategy_takes_no_new_work_but_still_tends_its_machines() {
    let h = harness(StrategySettings::default()).await;
    let fake = Fake::new(Answer::Ok);
    h.add_full("a", 0, false, CircuitBreaker::default(), &fake);
    for op in [
        create(),
        Operation::Validate(LaunchSpec::named("web")),
        Operation::Templates,
        Operation::Health,
    ] {
        let kind = op.kind();
        match h.executor.execute(op, on("a")).await {
            Err(AppError::Conflict(m)) => {
                assert!(m.contains("strategy 'a' is disabled"), "{m}");
                assert!(m.contains(kind.as_str()), "{m}");
            }
            other => panic!("{kind}: expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(fake.calls(), 0);
    // Status polls and terminations of its machines go through, named by the override.
    let polled = h.run(status(), on("a")).await;
    assert!(polled.result.is_ok(), "{:?}", polled.result);
    let returned = h.run(terminate(), on("a")).await;
    let report = returned.result.unwrap().into_terminated().unwrap();
    assert_eq!(report.terminating, ["i-1"]);
    assert_eq!(fake.calls(), 2);
    // Never chosen without being named.
    assert!(matches!(
        h.executor.execute(status(), Route::default()).await,
        Err(AppError::NoCandidate(_))
    ));
}

#[tokio::test]
async fn a_disabled_member_runs_only_status_polls_and_terminations() {
    let h = harness(StrategySettings::default()).await;
    let fake = Fake::new(Answer::Ok);
    h.add_full("m", 0, false, CircuitBreaker::default(), &fake);
    let members = super::members::MemberCalls(Arc::downgrade(&h.executor));
    let (attempt, result) = members.invoke("m", &create(), None).await;
    let err = result.unwrap_err();
    assert_eq!(
        (err.kind, err.code.as_str()),
        (ProviderErrorKind::Unsupported, "STRATEGY_DISABLED")
    );
    assert!(!attempt.success);
    assert_eq!(fake.calls(), 0);
    for op in [status(), terminate()] {
        let (_, result) = members.invoke("m", &op, None).await;
        assert!(result.is_ok(), "{:?}", result);
    }
    assert_eq!(fake.calls(), 2);
}

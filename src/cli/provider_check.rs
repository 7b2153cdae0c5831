//! `ohfp provider-check URL`: the provider protocol's conformance kit. Exercises every call of
//! an implementation (idempotency, batching, unknown ids, bad input, error classes, the API
//! key) and prints one line a check, naming the call; any failure makes the exit code 1.

use std::time::Duration;

use clap::Args;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{LaunchSpec, MachineState, WeightedType};
use crate::providers::http::protocol::{
    Call, ErrorClass, IDEMPOTENCY_KEY, ProtocolError, ServiceCapabilities,
};
use crate::providers::http::{check_endpoint, parse_answer, with_causes};
use crate::providers::{
    CreateRequest, Created, HealthReport, MachineRef, StatusQuery, StatusReport, TerminateReport,
    TerminateRequest, ValidationReport,
};

#[derive(Debug, Args)]
pub struct ProviderCheckArgs {
    /// The service's endpoint_url.
    pub url: String,
    /// The bearer token the service expects; also checks that calls without it are refused.
    #[arg(long, env = "OHFP_PROVIDER_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The instance type to start; else the first template's from getCapabilities.
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Seconds one call may take.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

/// Which Authorization a call carries.
#[derive(Clone, Copy, PartialEq)]
enum Auth {
    Key,
    Without,
    Wrong,
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

struct Kit {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
    lines: Vec<String>,
    failures: usize,
}

type Outcome<T> = Result<T, String>;

impl Kit {
    async fn send(
        &self,
        call: Call,
        body: Option<Vec<u8>>,
        idempotency_key: Option<&str>,
        auth: Auth,
    ) -> Outcome<Answer> {
        let mut req = self
            .client
            .request(call.method(), format!("{}{}", self.base, call.path()));
        match (auth, &self.key) {
            (Auth::Key, Some(key)) => req = req.bearer_auth(key),
            (Auth::Wrong, _) => req = req.header(AUTHORIZATION, "Bearer not-the-key"),
            _ => {}
        }
        if let Some(k) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY, k);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let res = req
            .send()
            .await
            .map_err(|e| format!("no answer: {}", with_causes(&e)))?;
        let status = res.status().as_u16();
        let body = res
            .bytes()
            .await
            .map_err(|e| format!("answer unreadable: {}", with_causes(&e)))?;
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }

    async fn post<B: Serialize>(&self, call: Call, body: &B, key: Option<&str>) -> Outcome<Answer> {
        let body = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        self.send(call, Some(body), key, Auth::Key).await
    }

    /// Notes one check's outcome, naming the call; answers whether it passed.
    fn record<T>(&mut self, call: Call, what: &str, outcome: &Outcome<T>) -> bool {
        let line = match outcome {
            Ok(_) => format!("ok    {}: {what}", call.name()),
            Err(why) => {
                self.failures += 1;
                format!("FAIL  {}: {what}: {why}", call.name())
            }
        };
        self.lines.push(line);
        outcome.is_ok()
    }
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// A 200 whose body is the contract's `T`.
fn answered<T: DeserializeOwned>(call: Call, answer: Outcome<Answer>) -> Outcome<T> {
    let a = answer?;
    if a.status != 200 {
        return Err(format!("answered {}: {}", a.status, snippet(&a.body)));
    }
    parse_answer(call, &a.body).map_err(|e| e.message)
}

/// An error answer of `class`, with a protocol error body and the class's status.
fn refused(answer: Outcome<Answer>, class: ErrorClass) -> Outcome<()> {
    let a = answer?;
    let err: ProtocolError = serde_json::from_slice(&a.body).map_err(|e| {
        format!(
            "answered {} without a protocol error body ({e}): {}",
            a.status,
            snippet(&a.body)
        )
    })?;
    if err.class != class || a.status != class.status() {
        return Err(format!(
            "expected {} with class {class:?}, got {} with class {:?}",
            class.status(),
            a.status,
            err.class
        ));
    }
    Ok(())
}

fn expect(ok: bool, why: impl FnOnce() -> String) -> Outcome<()> {
    if ok { Ok(()) } else { Err(why()) }
}

/// Every check's line, in order, and how many failed.
pub struct CheckReport {
    pub lines: Vec<String>,
    pub failures: usize,
}

/// Runs every check against `args.url`.
pub async fn check_provider(args: &ProviderCheckArgs) -> Result<CheckReport, String> {
    check_endpoint(&args.url).map_err(|e| format!("URL {e}"))?;
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(format!(
            "--timeout must be more than 0 and at most 3600 seconds, got {}",
            args.timeout
        ));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut kit = Kit {
        client,
        base: args.url.trim_end_matches('/').to_string(),
        key: args.api_key.clone().filter(|k| !k.is_empty()),
        lines: Vec::new(),
        failures: 0,
    };
    check_all(&mut kit, args.instance_type.clone()).await;
    let summary = format!(
        "{} checks, {} failed: {}",
        kit.lines.len(),
        kit.failures,
        if kit.failures == 0 {
            "the service speaks the provider protocol"
        } else {
            "see the FAIL lines"
        }
    );
    kit.lines.push(summary);
    Ok(CheckReport {
        lines: kit.lines,
        failures: kit.failures,
    })
}

/// Prints the report; the exit code is 1 when a check failed, 2 when none could run.
pub async fn run(args: ProviderCheckArgs) -> i32 {
    match check_provider(&args).await {
        Ok(report) => {
            for line in &report.lines {
                super::print_line(line);
            }
            i32::from(report.failures > 0)
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

async fn check_all(kit: &mut Kit, instance_type: Option<String>) {
    let health = answered::<HealthReport>(
        Call::Health,
        kit.send(Call::Health, None, None, Auth::Key).await,
    )
    .and_then(|h| expect(h.is_healthy, || "is_healthy is false".into()));
    kit.record(Call::Health, "answers healthy", &health);
    if kit.key.is_some() {
        for (auth, what) in [
            (
                Auth::Without,
                "refuses a call without the api key (401, auth)",
            ),
            (
                Auth::Wrong,
                "refuses a call with a wrong api key (401, auth)",
            ),
        ] {
            let outcome = refused(
                kit.send(Call::Health, None, None, auth).await,
                ErrorClass::Auth,
            );
            kit.record(Call::Health, what, &outcome);
        }
    }
    let described = answered::<ServiceCapabilities>(
        Call::Capabilities,
        kit.send(Call::Capabilities, None, None, Auth::Key).await,
    );
    kit.record(Call::Capabilities, "describes the service", &described);
    let instance_type = instance_type
        .or_else(|| {
            described
                .ok()
                .and_then(|d| d.templates.into_iter().find_map(|t| t.instance_type))
        })
        .unwrap_or_else(|| "standard".into());
    let spec = LaunchSpec {
        instance_types: vec![WeightedType {
            instance_type,
            weight: 1,
        }],
        ..LaunchSpec::named("ohfp-provider-check")
    };

    let valid =
        answered::<ValidationReport>(Call::Validate, kit.post(Call::Validate, &spec, None).await)
            .and_then(|r| {
                expect(r.valid, || {
                    format!("the check's own spec is refused: {:?}", r.errors)
                })
            });
    kit.record(Call::Validate, "accepts a launch spec it can start", &valid);
    let empty = answered::<ValidationReport>(
        Call::Validate,
        kit.post(Call::Validate, &LaunchSpec::default(), None).await,
    )
    .and_then(|r| {
        expect(!r.valid && !r.errors.is_empty(), || {
            "a spec without template or instance type is called valid".into()
        })
    });
    kit.record(
        Call::Validate,
        "refuses a spec without template or instance type, naming the fields",
        &empty,
    );

    check_bad_input(kit).await;

    let request_id = format!("check-{}", uuid::Uuid::new_v4());
    let create = CreateRequest {
        spec,
        units: 2,
        request_id: Some(request_id.clone()),
        tags: Vec::new(),
    };
    let key = uuid::Uuid::new_v4().to_string();
    let first = answered::<Created>(
        Call::Create,
        kit.post(Call::Create, &create, Some(&key)).await,
    )
    .and_then(|c| {
        expect(c.instance_ids.len() == 2 && c.count == 2, || {
            format!(
                "asked for 2 units, got count {} and ids {:?}",
                c.count, c.instance_ids
            )
        })?;
        Ok(c)
    });
    if !kit.record(Call::Create, "starts 2 instances", &first) {
        return;
    }
    let ids = first.map(|c| c.instance_ids).unwrap_or_default();
    let again = answered::<Created>(
        Call::Create,
        kit.post(Call::Create, &create, Some(&key)).await,
    )
    .and_then(|c| {
        expect(same_ids(&c.instance_ids, &ids), || {
            format!(
                "the same Idempotency-Key answered other instances: {:?}, first {ids:?}",
                c.instance_ids
            )
        })
    });
    kit.record(
        Call::Create,
        "the same Idempotency-Key twice creates once",
        &again,
    );
    let no_key = refused(
        kit.post(Call::Create, &create, None).await,
        ErrorClass::Validation,
    );
    kit.record(
        Call::Create,
        "refuses a create without Idempotency-Key (400, validation)",
        &no_key,
    );

    let unknown = format!("ohfp-check-unknown-{}", uuid::Uuid::new_v4().simple());
    let by_ids = StatusQuery {
        instance_ids: vec![ids[0].clone(), ids[1].clone(), unknown.clone()],
        ..StatusQuery::default()
    };
    let batch = answered::<StatusReport>(Call::Status, kit.post(Call::Status, &by_ids, None).await)
        .and_then(|r| {
            let seen: Vec<String> = r.machines.iter().map(|m| m.instance_id.clone()).collect();
            expect(
                same_ids(&seen, &ids) && r.not_found == [unknown.clone()],
                || {
                    format!(
                        "asked for {ids:?} and {unknown}, got machines {seen:?}, not_found {:?}",
                        r.not_found
                    )
                },
            )
        });
    kit.record(
        Call::Status,
        "answers a batch of ids, unknown ones in not_found",
        &batch,
    );
    let by_request = StatusQuery {
        request_ids: vec![request_id.clone()],
        ..StatusQuery::default()
    };
    let by_request = answered::<StatusReport>(Call::Status, kit.post(Call::Status, &by_request, None).await)
        .and_then(|r| {
            let seen: Vec<String> = r.machines.iter().map(|m| m.instance_id.clone()).collect();
            let tagged = r.machines.iter().all(|m| m.request_id.as_deref() == Some(&request_id));
            expect(same_ids(&seen, &ids) && tagged, || {
                format!("request {request_id} made {ids:?}, status by request id answered {seen:?} (each must carry the request_id)")
            })
        });
    kit.record(
        Call::Status,
        "finds the instances by request id, and only them",
        &by_request,
    );

    let terminate = TerminateRequest {
        machines: vec![MachineRef::bare(&ids[0]), MachineRef::bare(&unknown)],
        simulate_reclaim: false,
    };
    let gone = answered::<TerminateReport>(
        Call::Terminate,
        kit.post(Call::Terminate, &terminate, None).await,
    )
    .and_then(|r| {
        expect(
            r.terminating == [ids[0].clone()] && r.not_found == [unknown.clone()],
            || {
                format!(
                    "terminating {:?}, not_found {:?}",
                    r.terminating, r.not_found
                )
            },
        )
    });
    kit.record(
        Call::Terminate,
        "terminates a known id, unknown ones in not_found",
        &gone,
    );
    let again = TerminateRequest {
        machines: vec![MachineRef::bare(&ids[0]), MachineRef::bare(&ids[1])],
        simulate_reclaim: false,
    };
    let again = answered::<TerminateReport>(
        Call::Terminate,
        kit.post(Call::Terminate, &again, None).await,
    )
    .and_then(|r| {
        expect(
            r.already_terminating == [ids[0].clone()] && r.terminating == [ids[1].clone()],
            || {
                format!(
                    "already_terminating {:?}, terminating {:?}",
                    r.already_terminating, r.terminating
                )
            },
        )
    });
    kit.record(
        Call::Terminate,
        "lists instances already on their way out apart",
        &again,
    );
    let after = StatusQuery {
        instance_ids: ids.clone(),
        ..StatusQuery::default()
    };
    let after = answered::<StatusReport>(Call::Status, kit.post(Call::Status, &after, None).await)
        .and_then(|r| {
            let states: Vec<MachineState> = r.machines.iter().map(|m| m.state).collect();
            expect(
                states.len() == 2
                    && states.iter().all(|s| {
                        matches!(s, MachineState::ShuttingDown | MachineState::Terminated)
                    }),
                || format!("after terminating, states are {states:?}"),
            )
        });
    kit.record(
        Call::Status,
        "shows terminated instances shutting down or terminated",
        &after,
    );
}

/// Every POST call refuses a body that is not its request (400, validation).
async fn check_bad_input(kit: &mut Kit) {
    for call in Call::ALL
        .into_iter()
        .filter(|c| *c != Call::Health && *c != Call::Capabilities)
    {
        let key = uuid::Uuid::new_v4().to_string();
        let key = (call == Call::Create).then_some(key.as_str());
        let outcome = refused(
            kit.send(call, Some(b"[1, 2".to_vec()), key, Auth::Key)
                .await,
            ErrorClass::Validation,
        );
        kit.record(
            call,
            "refuses a body that is not JSON (400, validation)",
            &outcome,
        );
    }
    let zero = serde_json::json!({"spec": LaunchSpec::named("ohfp-provider-check"), "units": 0, "tags": []});
    let key = uuid::Uuid::new_v4().to_string();
    let outcome = refused(
        kit.post(Call::Create, &zero, Some(&key)).await,
        ErrorClass::Validation,
    );
    kit.record(Call::Create, "refuses 0 units (400, validation)", &outcome);
}

fn same_ids(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

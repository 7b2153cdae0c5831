//! getRequestStatus's answer: each request's, built from its machines, and as JSON, rendered
//! once per snapshot of it.
//!
//! HostFactory polls the same requests again and again while most of them do not change. The
//! store hands out one shared snapshot per request until a write evicts it
//! (`store::request_cache`); the JSON rendered from a snapshot is kept beside a weak reference
//! to it and reused while the store still serves that same snapshot, so an unchanged request
//! costs a copy of its bytes, and a changed one is rendered again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::model::{HfMachine, HfRequest, RequestKind, RequestState};
use super::provisioning::{placed_units, spec_of};
use super::service::host_name;
use super::status::{self, MachineResult, RequestStatus};
use super::wire::{WireMachine, WireRequest};
use crate::store::RequestSnapshot;

/// Entries kept before those of snapshots the store no longer serves are dropped.
const SWEEP_ABOVE: usize = 20_000;

/// getRequestStatus's answer for `r` over `machines` (any machines; those of other requests are
/// skipped). Pure: the benches render 10,000 machines through it.
pub fn wire_request(r: &HfRequest, all: &[HfMachine]) -> WireRequest {
    let (machines, results): (Vec<WireMachine>, Vec<MachineResult>) = match r.kind {
        RequestKind::Acquire => all
            .iter()
            .filter(|m| m.request_id == r.request_id)
            .map(|m| {
                let result = status::acquire_result(m.state, m.failed, m.delivered);
                (wire_machine(m, result), result)
            })
            .unzip(),
        RequestKind::Return => all
            .iter()
            .filter(|m| m.return_request_id.as_deref() == Some(&r.request_id))
            .map(|m| {
                let result = status::return_result(m.state);
                (wire_machine(m, result), result)
            })
            .unzip(),
    };
    let known = machines.len() as i64;
    let spec = spec_of(r);
    let placed = placed_units(&spec, r, all);
    let (more_expected, shortfall) = match (r.kind, r.state) {
        (RequestKind::Return, _) => (false, false),
        (_, RequestState::Pending | RequestState::Provisioning) => (true, false),
        (_, RequestState::InProgress) => (placed < r.requested_count, false),
        (_, RequestState::Done) => (false, placed < r.requested_count),
        (_, RequestState::Failed) => (false, true),
    };
    let status = status::request_status(&results, more_expected, shortfall);
    let count = |x: MachineResult| results.iter().filter(|r| **r == x).count();
    // Weighted templates are asked for in capacity units: say so, beside the machines.
    let asked = if r.kind == RequestKind::Acquire && spec.weighted {
        format!(
            "{placed} of {} capacity unit(s) placed; ",
            r.requested_count
        )
    } else {
        String::new()
    };
    let message = if !r.message.is_empty() {
        r.message.clone()
    } else {
        match (r.kind, status) {
            (RequestKind::Acquire, RequestStatus::Running) if !asked.is_empty() => {
                format!("{asked}{} machine(s) ready.", count(MachineResult::Succeed))
            }
            (RequestKind::Acquire, RequestStatus::Running) => {
                format!(
                    "{} of {} machine(s) ready.",
                    count(MachineResult::Succeed),
                    r.requested_count
                )
            }
            (RequestKind::Acquire, RequestStatus::Complete) => {
                format!("{asked}{known} machine(s) ready.")
            }
            (RequestKind::Acquire, RequestStatus::CompleteWithError) if !asked.is_empty() => {
                format!(
                    "{asked}{} machine(s) ready, {} failed.",
                    count(MachineResult::Succeed),
                    count(MachineResult::Fail)
                )
            }
            (RequestKind::Acquire, RequestStatus::CompleteWithError) => format!(
                "{} of {} machine(s) ready; {} failed.",
                count(MachineResult::Succeed),
                r.requested_count,
                count(MachineResult::Fail)
            ),
            (RequestKind::Return, RequestStatus::Running) => {
                let problem = machines.iter().map(|m| &m.message).find(|m| !m.is_empty());
                format!(
                    "{} of {} machine(s) terminated.{}",
                    count(MachineResult::Succeed),
                    known,
                    problem.map(|p| format!(" {p}")).unwrap_or_default()
                )
            }
            (RequestKind::Return, _) => format!("{known} machine(s) returned."),
        }
    };
    WireRequest {
        request_id: r.request_id.clone(),
        status,
        message,
        machines,
    }
}

fn wire_machine(m: &HfMachine, result: MachineResult) -> WireMachine {
    let message = match result {
        MachineResult::Fail if m.message.is_empty() => {
            "Machine failed (no detail from the provider).".to_string()
        }
        _ => m.message.clone(),
    };
    WireMachine {
        machine_id: m.machine_id.clone(),
        name: host_name(m),
        result,
        status: m.state.as_str().to_string(),
        private_ip_address: m.private_ip.clone(),
        public_ip_address: m.public_ip.clone(),
        launchtime: m.launch_time.unwrap_or(0),
        message,
        instance_type: m.instance_type.clone(),
        price_type: m.price_type.clone(),
        cloud_host_id: None,
    }
}

#[derive(Default)]
pub(super) struct RenderedAnswers {
    by_request: Mutex<HashMap<String, Rendered>>,
}

struct Rendered {
    from: Weak<RequestSnapshot>,
    json: Arc<str>,
}

impl RenderedAnswers {
    /// The JSON of `snapshot`'s answer, rendered now or earlier from this very snapshot.
    pub(super) fn of(&self, snapshot: &Arc<RequestSnapshot>) -> Arc<str> {
        let id = &snapshot.request.request_id;
        if let Some(r) = self.lock().get(id)
            && std::ptr::eq(r.from.as_ptr(), Arc::as_ptr(snapshot))
        {
            return Arc::clone(&r.json);
        }
        let json: Arc<str> = to_json(&wire_request(&snapshot.request, &snapshot.machines)).into();
        let mut memo = self.lock();
        if memo.len() >= SWEEP_ABOVE {
            memo.retain(|_, r| r.from.strong_count() > 0);
        }
        memo.insert(
            id.clone(),
            Rendered {
                from: Arc::downgrade(snapshot),
                json: Arc::clone(&json),
            },
        );
        json
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Rendered>> {
        // Entries are whole or absent: one left by a panicking thread is still right.
        self.by_request
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(super) fn to_json(answer: &WireRequest) -> String {
    serde_json::to_string(answer).expect("a wire answer always serializes")
}

/// `{"requests": [parts…]}`, the shape of `WireStatusAnswer`, from each request's JSON.
pub(super) fn status_answer(parts: &[Arc<str>]) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"requests\":[";
    let len = HEAD.len() + 2 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(HEAD);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(part.as_bytes());
    }
    body.extend_from_slice(b"]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostfactory::model::{HfMachine, HfRequest, RequestState};
    use crate::hostfactory::wire::WireStatusAnswer;

    fn snapshot(id: &str, machines: usize) -> Arc<RequestSnapshot> {
        let request = HfRequest {
            request_id: id.into(),
            ..HfRequest::new_return(machines as i64, RequestState::InProgress, 0)
        };
        let machines = (0..machines)
            .map(|i| HfMachine {
                machine_id: format!("i-{id}-{i}"),
                request_id: "req-x".into(),
                return_request_id: Some(id.into()),
                private_ip: Some(format!("10.0.0.{i}")),
                ..HfMachine::default()
            })
            .collect();
        Arc::new(RequestSnapshot { request, machines })
    }

    #[test]
    fn the_composed_answer_is_what_serde_writes_for_the_typed_one() {
        let memo = RenderedAnswers::default();
        let snapshots = [snapshot("ret-a", 3), snapshot("ret-b", 0)];
        for n in 0..=2 {
            let parts: Vec<Arc<str>> = snapshots[..n].iter().map(|s| memo.of(s)).collect();
            let typed = WireStatusAnswer {
                requests: snapshots[..n]
                    .iter()
                    .map(|s| wire_request(&s.request, &s.machines))
                    .collect(),
            };
            let composed: serde_json::Value =
                serde_json::from_slice(&status_answer(&parts)).unwrap();
            assert_eq!(
                composed,
                serde_json::to_value(&typed).unwrap(),
                "{n} request(s)"
            );
        }
    }

    #[test]
    fn a_snapshot_is_rendered_once_and_a_new_one_again() {
        let memo = RenderedAnswers::default();
        let first = snapshot("ret-a", 2);
        let rendered = memo.of(&first);
        assert!(Arc::ptr_eq(&rendered, &memo.of(&first)), "reused");
        // The store replaced the snapshot (a write evicted it): rendered anew from the new one.
        let second = snapshot("ret-a", 1);
        let again = memo.of(&second);
        assert!(!Arc::ptr_eq(&rendered, &again));
        assert_eq!(again.matches("machineId").count(), 1);
    }
}

//! The events of HostFactory requests and their machines: accepted, moved on, ended, and each
//! machine's change, as the request progress stream follows them.

use std::collections::HashMap;

use serde_json::json;

use super::answers::wire_request;
use super::model::{HfMachine, HfRequest, RequestKind};
use super::service::HostFactory;
use super::status::RequestStatus;
use crate::domain::{Event, EventKind};

impl HostFactory {
    /// A request accepted, completed or failed, once that is stored. `strategy`: the one that
    /// provisions it, when known.
    pub(super) fn request_event(
        &self,
        kind: EventKind,
        r: &HfRequest,
        strategy: Option<&str>,
        message: &str,
    ) {
        self.engine.events().emit(
            kind,
            strategy.or(r.strategy.as_deref()),
            json!({"request_id": r.request_id, "request_kind": r.kind.as_str(),
                "template_id": r.template_id, "requested_count": r.requested_count,
                "message": message}),
        );
    }

    /// A request moved on (`state`: the provisioning step; `status`: what getRequestStatus
    /// answers, whose end — `complete` or `complete_with_error` — ends the request's stream).
    pub(super) fn request_state(&self, r: &HfRequest, status: RequestStatus) {
        self.engine.events().emit(
            EventKind::RequestState,
            r.strategy.as_deref(),
            json!({"request_id": r.request_id, "request_kind": r.kind.as_str(),
                "state": r.state.as_str(), "status": status}),
        );
    }

    /// HostFactory's status of `r` over `machines` (any machines; others are skipped).
    pub(super) fn status_of(&self, r: &HfRequest, machines: &[HfMachine]) -> RequestStatus {
        wire_request(r, machines).status
    }

    /// Machine rows once stored: an event for each that is new (`was` has no row of that id)
    /// or whose state or failure changed, so that a request's followers see its machines move.
    pub(super) fn machine_events(&self, was: &MachinesById, now: &[HfMachine]) {
        for m in now {
            let before = was.get(m.machine_id.as_str()).copied();
            if before.is_some_and(|b| b.state == m.state && b.failed == m.failed) {
                continue;
            }
            self.engine.events().emit(
                EventKind::MachineState,
                Some(&m.strategy),
                json!({"request_id": m.request_id, "return_request_id": m.return_request_id,
                    "machine_id": m.machine_id, "from": before.map(|b| b.state.as_str()),
                    "state": m.state.as_str(), "failed": m.failed, "message": m.message}),
            );
        }
    }
}

/// Machine rows by id: the rounds look each polled machine up among every tracked one, which
/// a scan would make quadratic at thousands of machines.
pub(super) type MachinesById<'a> = HashMap<&'a str, &'a HfMachine>;

pub(super) fn by_id(machines: &[HfMachine]) -> MachinesById<'_> {
    machines
        .iter()
        .map(|m| (m.machine_id.as_str(), m))
        .collect()
}

/// Machine rows by the acquire request they belong to, for the same reason.
pub(super) fn by_request(machines: &[HfMachine]) -> HashMap<&str, Vec<&HfMachine>> {
    let mut of: HashMap<&str, Vec<&HfMachine>> = HashMap::new();
    for m in machines {
        of.entry(m.request_id.as_str()).or_default().push(m);
    }
    of
}

/// Whether `e` is the last event of request `id`: its status became final, its provisioning
/// failed, or (a return) all its machines are gone.
pub fn ends_request(e: &Event, id: &str) -> bool {
    let detail = &e.detail;
    detail["request_id"] == id
        && match e.kind {
            EventKind::RequestFailed => true,
            EventKind::RequestCompleted => detail["request_kind"] == RequestKind::Return.as_str(),
            EventKind::RequestState => detail["status"] != "running",
            _ => false,
        }
}

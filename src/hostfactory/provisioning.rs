//! Provisioning of acquire requests: the launch spec a request was made with, the create call
//! through the strategy layer, adoption of machines an interrupted attempt made, and the rows
//! the machines are recorded as. Runs as tracked tasks the reconciler starts.

use std::sync::Arc;

use serde_json::Value;

use super::events::MachinesById;
use super::model::{HfMachine, HfRequest, RequestState};
use super::service::HostFactory;
use super::status::RequestStatus;
use super::templates::launch_spec;
use crate::app::Route;
use crate::domain::{
    AuditCause, EpochMillis, EventKind, LaunchSpec, Machine, MachineState, OperationType,
    now_millis,
};
use crate::providers::{CreateRequest, Operation, OperationOutput, StatusQuery};
use crate::store::HostFactoryRepo;

/// The launch spec an acquire request was made with, read from the template stored with it.
pub(super) fn spec_of(r: &HfRequest) -> LaunchSpec {
    let id = r.template_id.clone().unwrap_or_default();
    match r
        .template
        .as_ref()
        .and_then(Value::as_object)
        .map(launch_spec)
    {
        Some(Ok(spec)) => spec,
        // Stored templates were valid when stored; one that no longer reads counts machines.
        Some(Err(problems)) => {
            tracing::warn!(request_id = %r.request_id, ?problems, "stored template no longer reads; counting machines");
            LaunchSpec::named(id)
        }
        None => LaunchSpec::named(id),
    }
}

/// Units of `r` placed so far among `machines` (any machines; those of other requests are
/// skipped), counted with `spec`, the request's launch spec.
pub(super) fn placed_units<'m>(
    spec: &LaunchSpec,
    r: &HfRequest,
    machines: impl IntoIterator<Item = &'m HfMachine>,
) -> i64 {
    machines
        .into_iter()
        .filter(|m| m.request_id == r.request_id)
        .map(|m| spec.units_of(m.instance_type.as_deref()))
        .sum()
}

/// The row for a machine a provider reported.
pub(super) fn machine_row(
    req: &HfRequest,
    strategy: &str,
    m: &Machine,
    now: EpochMillis,
) -> HfMachine {
    HfMachine {
        machine_id: m.instance_id.clone(),
        request_id: req.request_id.clone(),
        template_id: req.template_id.clone(),
        strategy: strategy.to_string(),
        state: m.state,
        delivered: m.state == MachineState::Running,
        private_ip: m.private_ip.clone(),
        public_ip: m.public_ip.clone(),
        private_dns: m.private_dns.clone(),
        instance_type: m.instance_type.clone(),
        price_type: m.price_type.clone(),
        launch_time: m.launch_time,
        resource_id: m.resource_id.clone(),
        provider_api: m.provider_api,
        reclaim_notice: m.reclaim_notice.clone(),
        reclaim_deadline: m.reclaim_deadline,
        created_at: now,
        updated_at: now,
        ..HfMachine::default()
    }
}

impl HostFactory {
    /// How long a machine of `strategy` may stay pending: the strategy's own timeout when its
    /// provider has one, else `hostfactory.pending_timeout_seconds`.
    pub(super) fn pending_timeout_of(&self, strategy: Option<&str>) -> f64 {
        strategy
            .and_then(|name| self.engine.registry().get(name))
            .and_then(|entry| entry.provider.pending_timeout_seconds())
            .unwrap_or(self.cfg.pending_timeout_seconds)
    }

    /// Provisions one acquire request. An earlier attempt (before a restart) may have made
    /// machines already: they are found by their request-id tag first, and only the rest is made.
    pub(super) async fn provision(self: Arc<Self>, req: HfRequest) {
        let id = req.request_id.clone();
        let now = now_millis();
        // Replicas: a round started while this process led may spawn this after it stopped
        // leading; the new leader provisions the request instead.
        if !self.store.leadership().is_leader() {
            tracing::warn!(request_id = %id, "no longer the leader; provisioning left to the new one");
            self.provisioning
                .lock()
                .expect("provisioning lock")
                .remove(&id);
            return;
        }
        if let Err(e) = self.store.start_provisioning(&id, now).await {
            tracing::error!(request_id = %id, error = %e, "cannot mark provisioning");
            self.provisioning
                .lock()
                .expect("provisioning lock")
                .remove(&id);
            return;
        }
        let provisioning = HfRequest {
            state: RequestState::Provisioning,
            ..req.clone()
        };
        self.request_state(&provisioning, RequestStatus::Running);
        let mut made: Vec<(String, Machine)> = Vec::new();
        if req.attempts > 0 {
            made = self.adopt(&id).await;
        }
        let spec = spec_of(&req);
        let made_units: i64 = made
            .iter()
            .map(|(_, m)| spec.units_of(m.instance_type.as_deref()))
            .sum();
        // HostFactory never asked about it in time: nothing more is made, and the reconciler
        // cancels it, returning what an earlier attempt made.
        let unclaimed = self.is_unclaimed(&req, now) && self.still_unclaimed(&id, now).await;
        if unclaimed {
            tracing::warn!(request_id = %id, "HostFactory never asked about this request; no machine is made for it");
        }
        let missing = if unclaimed {
            0
        } else {
            req.requested_count - made_units
        };
        let mut strategy = made.first().map(|(s, _)| s.clone());
        let (mut resource_id, mut provider_api, mut message) =
            (None, req.provider_api, String::new());
        let mut failed = false;
        if missing > 0 {
            let op = Operation::Create(CreateRequest {
                spec,
                units: u32::try_from(missing).unwrap_or(u32::MAX),
                request_id: Some(id.clone()),
                tags: Vec::new(),
            });
            let route = Route {
                strategy: req.provider_name.clone(),
                ..Route::default()
            };
            let cause = AuditCause::current_with([id.clone()]);
            match cause.scope(self.engine.execute(op, route)).await {
                Ok(outcome) => {
                    let tried: Vec<&str> = outcome
                        .attempts
                        .iter()
                        .map(|a| a.strategy.as_str())
                        .collect();
                    match outcome
                        .result
                        .clone()
                        .and_then(OperationOutput::into_created)
                    {
                        Ok(created) => {
                            strategy = Some(outcome.strategy_used.clone());
                            resource_id = created.resource_id;
                            provider_api = created.provider_api.or(provider_api);
                            made.extend(
                                created
                                    .instances
                                    .into_iter()
                                    .map(|m| (outcome.strategy_used.clone(), m)),
                            );
                        }
                        Err(e) => {
                            failed = made.is_empty();
                            message =
                                format!("{}: {} (tried {})", e.code, e.message, tried.join(", "));
                        }
                    }
                }
                Err(e) => {
                    failed = made.is_empty();
                    message = e.to_string();
                }
            }
        }
        let now = now_millis();
        let rows: Vec<HfMachine> = made
            .iter()
            .map(|(s, m)| machine_row(&req, s, m, now))
            .collect();
        let state = if failed {
            RequestState::Failed
        } else {
            RequestState::InProgress
        };
        if failed {
            tracing::warn!(request_id = %id, %message, "provisioning failed");
        }
        let saved = self
            .store
            .finish_provisioning(
                &id,
                state,
                &message,
                strategy.as_deref(),
                resource_id.as_deref(),
                provider_api,
                &rows,
                now,
            )
            .await;
        match saved {
            Ok(()) if failed => self.request_event(
                EventKind::RequestFailed,
                &req,
                strategy.as_deref(),
                &message,
            ),
            Ok(()) => {
                let req = HfRequest {
                    strategy: strategy.clone().or(req.strategy),
                    state,
                    ..req
                };
                self.machine_events(&MachinesById::new(), &rows);
                self.request_state(&req, self.status_of(&req, &rows));
            }
            // The machines carry the request id in the cloud; the next attempt adopts them.
            Err(e) => {
                tracing::error!(request_id = %id, error = %e, "cannot record provisioning; will retry")
            }
        }
        self.provisioning
            .lock()
            .expect("provisioning lock")
            .remove(&id);
        self.wake.notify_one();
    }

    /// Machines already made for `request_id`, asked of every strategy that can tell.
    async fn adopt(&self, request_id: &str) -> Vec<(String, Machine)> {
        let mut found = Vec::new();
        for entry in self.engine.entries() {
            // Disabled strategies count too: they still answer for the machines they made.
            if !entry
                .capabilities()
                .supports(OperationType::GetInstanceStatus)
            {
                continue;
            }
            let op = Operation::Status(StatusQuery {
                request_ids: vec![request_id.to_string()],
                ..StatusQuery::default()
            });
            let route = Route {
                strategy: Some(entry.name().to_string()),
                ..Route::default()
            };
            let answer = self.engine.execute(op, route).await;
            if let Ok(report) = answer.map(|o| o.result.and_then(OperationOutput::into_status)) {
                let Ok(report) = report else { continue };
                for m in report.machines {
                    if m.request_id.as_deref() == Some(request_id)
                        && m.state != MachineState::Terminated
                    {
                        found.push((entry.name().to_string(), m));
                    }
                }
            }
        }
        if !found.is_empty() {
            tracing::info!(
                request_id,
                count = found.len(),
                "adopted machines made before a restart"
            );
        }
        found
    }
}

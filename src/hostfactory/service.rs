use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;

use super::answers::{self, RenderedAnswers, wire_request};
use super::events::by_id;
use super::model::{Caller, HfMachine, HfRequest, RequestKind, RequestState};
use super::status::RequestStatus;
use super::templates::{Template, TemplateCatalog};
use super::views::RequestInFlight;
use super::wire::{Host, WireRequest, WireRequestId, WireReturn};
use crate::app::Engine;
use crate::app::prometheus::ReconcileSeries;
use crate::config::HostFactoryConfig;
use crate::domain::{EpochMillis, EventKind, MachineState, now_millis, rfc3339};
use crate::store::{HostFactoryRepo, RequestSnapshot, Store};
use crate::tasks::Tasks;

pub use super::error::{HfError, HfResult};

/// The HostFactory side of the service; one per process.
pub struct HostFactory {
    pub(super) engine: Arc<Engine>,
    pub(super) store: Store,
    pub(super) catalog: TemplateCatalog,
    pub(super) cfg: HostFactoryConfig,
    /// Requests being provisioned by a task of this process.
    pub(super) provisioning: Mutex<HashSet<String>>,
    /// Wakes the reconciler early (a new request, a return).
    pub(super) wake: Notify,
    /// Reconciler chores (`poll:<strategy>`, `terminate:<strategy>`) still under way.
    pub(super) chores: Mutex<HashSet<String>>,
    /// Provisioning runs as tracked tasks: shutdown waits for them before the store closes.
    pub(super) tasks: Tasks,
    /// When this process started: an unclaimed request's time runs from here at the earliest,
    /// so that HostFactory has the whole timeout to ask after a restart.
    pub(super) started_at: EpochMillis,
    /// The reconciler's round times and status calls, for `/metrics`.
    pub(super) reconcile_series: ReconcileSeries,
    /// getRequestStatus answers by the snapshot they were rendered from.
    answers: RenderedAnswers,
}

/// The host name HostFactory uses: private DNS name, else private IP, else the instance id.
pub fn host_name(m: &HfMachine) -> String {
    m.private_dns
        .clone()
        .or_else(|| m.private_ip.clone())
        .unwrap_or_else(|| m.machine_id.clone())
}

/// The stored machines of the hosts HostFactory named, paired with each host (`None` when
/// unknown). The machine id wins over the name; names are looked up only for the hosts whose
/// id is unknown (or not given), so that a return of thousands of hosts is answered from the
/// primary key rather than from scans of the name columns.
async fn lookup_hosts<'h>(
    store: &Store,
    hosts: &'h [Host],
) -> HfResult<Vec<(&'h Host, Option<HfMachine>)>> {
    let ids: Vec<String> = hosts.iter().filter_map(|h| h.machine_id.clone()).collect();
    let mut found = store.hf_machines_by_ids(&ids).await?;
    let known: HashSet<&str> = found.iter().map(|m| m.machine_id.as_str()).collect();
    let names: Vec<String> = hosts
        .iter()
        .filter(|h| h.machine_id.as_deref().is_none_or(|id| !known.contains(id)))
        .filter_map(|h| h.name.clone())
        .collect();
    if !names.is_empty() {
        found.extend(store.hf_machines_by_keys(&names).await?);
    }
    let by_id = by_id(&found);
    let mut by_name: HashMap<&str, &HfMachine> = HashMap::new();
    for m in &found {
        for name in m.private_dns.iter().chain(m.private_ip.iter()) {
            by_name.entry(name.as_str()).or_insert(m);
        }
    }
    Ok(hosts
        .iter()
        .map(|h| {
            let machine = h
                .machine_id
                .as_deref()
                .and_then(|id| by_id.get(id))
                .or_else(|| h.name.as_deref().and_then(|n| by_name.get(n)));
            (h, machine.map(|m| (*m).clone()))
        })
        .collect())
}

impl HostFactory {
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Starts a reconciler round now rather than at its interval (on the leader; elsewhere the
    /// reconciler waits for leadership).
    pub fn wake_reconciler(&self) {
        self.wake.notify_one();
    }

    pub fn new(
        engine: Arc<Engine>,
        catalog: TemplateCatalog,
        cfg: HostFactoryConfig,
        tasks: Tasks,
    ) -> Arc<Self> {
        Arc::new(Self {
            tasks,
            store: engine.store().clone(),
            engine,
            catalog,
            cfg,
            provisioning: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            chores: Mutex::new(HashSet::new()),
            started_at: now_millis(),
            reconcile_series: ReconcileSeries::default(),
            answers: RenderedAnswers::default(),
        })
    }

    /// The reconciler's series (clones share the counts).
    pub fn reconcile_series(&self) -> &ReconcileSeries {
        &self.reconcile_series
    }

    pub fn templates(&self) -> Arc<Vec<Template>> {
        self.catalog.all()
    }

    pub fn catalog(&self) -> &TemplateCatalog {
        &self.catalog
    }

    pub fn template(&self, id: &str) -> HfResult<Template> {
        self.catalog.get(id).ok_or_else(|| {
            let known: Vec<String> = self.catalog.all().iter().map(|t| t.id.clone()).collect();
            HfError::UnknownTemplate {
                id: id.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            }
        })
    }

    /// Units a template may still get (`None`: unlimited): maxNumber less its live machines and
    /// what its open requests still wait for, in units for weighted templates.
    pub async fn available(&self, t: &Template) -> HfResult<Option<i64>> {
        let room = self.max_number_room(t).await?;
        Ok(match (room, self.quota_room(t)) {
            (Some(r), Some((_, q))) => Some(r.min(q)),
            (r, q) => r.or(q.map(|(_, q)| q)),
        })
    }

    /// What the account's quotas still allow the template on the strategy it names (`None`:
    /// no strategy named, or no cap known), with that strategy.
    fn quota_room(&self, t: &Template) -> Option<(String, i64)> {
        let name = t.provider_name.as_ref()?;
        let room = self
            .engine
            .entry(name)
            .ok()?
            .provider
            .quota_headroom(&t.launch)?;
        Some((name.clone(), room))
    }

    /// maxNumber less what the template holds and waits for.
    async fn max_number_room(&self, t: &Template) -> HfResult<Option<i64>> {
        if t.max_number < 0 {
            return Ok(None);
        }
        let (live, open) = self.store.hf_template_usage(&t.id).await?;
        let units = |types: &[Option<String>]| -> i64 {
            types
                .iter()
                .map(|ty| t.launch.units_of(ty.as_deref()))
                .sum()
        };
        let waiting: i64 = open
            .iter()
            .map(|(requested, placed)| (requested - units(placed)).max(0))
            .sum();
        Ok(Some((t.max_number - units(&live) - waiting).max(0)))
    }

    /// requestMachines: checks, records the request, answers at once; provisioning follows in
    /// the background.
    /// `count` has passed [`check_machine_count`](super::error::check_machine_count) at the
    /// edge that read it. An operator's request is claimed at once; HostFactory claims its own
    /// by asking about it.
    pub async fn request_machines(
        &self,
        template_id: &str,
        count: i64,
        caller: Caller,
    ) -> HfResult<WireRequestId> {
        let t = self.template(template_id)?;
        if t.is_disabled() {
            return Err(HfError::TemplateDisabled(t.id));
        }
        if let Some(provider) = &t.provider_name
            && self.engine.entry(provider).is_err()
        {
            return Err(HfError::UnknownProvider {
                template: t.id.clone(),
                provider: provider.clone(),
            });
        }
        // Serialises admission (maxNumber), also across replicas. Released before a refusal
        // too: dropping it unreleased would close its PostgreSQL session.
        let admission = self.store.admission().await?;
        let admitted = self.admit(&t, count, caller).await;
        admission.release().await;
        let request = admitted?;
        self.request_event(EventKind::RequestAccepted, &request, None, "");
        tracing::info!(request_id = %request.request_id, template = %t.id, count, "machines requested");
        self.wake.notify_one();
        Ok(WireRequestId {
            request_id: request.request_id,
            message: format!(
                "Request VM success from ohfp: {count} machine(s) of template {}.",
                t.id
            ),
        })
    }

    /// Under the admission lock: refuses `count` over the template's maxNumber room or the
    /// strategy's vCPU quota, else records the new acquire request.
    async fn admit(&self, t: &Template, count: i64, caller: Caller) -> HfResult<HfRequest> {
        if let Some(room) = self.max_number_room(t).await?
            && count > room
        {
            return Err(HfError::OverLimit {
                template: t.id.clone(),
                max: t.max_number,
                unit: if t.launch.weighted {
                    "capacity units"
                } else {
                    "machines"
                },
                held: t.max_number - room,
                asked: count,
            });
        }
        if let Some((strategy, room)) = self.quota_room(t)
            && count > room
        {
            return Err(HfError::OverQuota {
                template: t.id.clone(),
                strategy,
                room,
                asked: count,
            });
        }
        let now = now_millis();
        let request = HfRequest {
            request_id: format!("req-{}", uuid::Uuid::new_v4()),
            kind: RequestKind::Acquire,
            template_id: Some(t.id.clone()),
            template: Some(Value::Object(t.raw.clone())),
            requested_count: count,
            provider_name: t.provider_name.clone(),
            strategy: None,
            state: RequestState::Pending,
            message: String::new(),
            resource_id: None,
            provider_api: t.launch.provisioning_api,
            attempts: 0,
            created_at: now,
            updated_at: now,
            claimed_at: (caller == Caller::Operator).then_some(now),
        };
        self.store.insert_hf_request(&request).await?;
        Ok(request)
    }

    /// getRequestStatus's answer as JSON (`WireStatusAnswer`), from the store only. Every id
    /// gets its own answer, in the order asked; a request unchanged since it was last asked
    /// about is not rendered again.
    pub async fn request_status(&self, ids: &[String]) -> HfResult<Vec<u8>> {
        let snapshots = self.snapshots_asked(ids, Caller::HostFactory).await?;
        let parts: Vec<Arc<str>> = ids
            .iter()
            .zip(&snapshots)
            .map(|(id, snapshot)| match snapshot {
                Some(s) => self.answers.of(s),
                None => answers::to_json(&WireRequest {
                    request_id: id.clone(),
                    status: RequestStatus::CompleteWithError,
                    message: format!("Unknown request '{id}': this service never issued it."),
                    machines: Vec::new(),
                })
                .into(),
            })
            .collect();
        Ok(answers::status_answer(&parts))
    }

    /// Each id's answer from the store, `None` for an id this service never issued.
    pub async fn known_requests(
        &self,
        ids: &[String],
        caller: Caller,
    ) -> HfResult<Vec<Option<WireRequest>>> {
        Ok(self
            .snapshots_asked(ids, caller)
            .await?
            .iter()
            .map(|s| s.as_ref().map(|s| wire_request(&s.request, &s.machines)))
            .collect())
    }

    /// Each id's request and machines, `None` for an id this service never issued. HostFactory
    /// asking claims the acquire requests it names (one write, only for those not claimed yet).
    async fn snapshots_asked(
        &self,
        ids: &[String],
        caller: Caller,
    ) -> HfResult<Vec<Option<Arc<RequestSnapshot>>>> {
        let snapshots = self.store.hf_request_snapshots(ids).await?;
        if caller == Caller::HostFactory {
            let unclaimed: Vec<String> = snapshots
                .iter()
                .flatten()
                .map(|s| &s.request)
                .filter(|r| r.kind == RequestKind::Acquire && r.claimed_at.is_none())
                .map(|r| r.request_id.clone())
                .collect();
            if !unclaimed.is_empty() {
                self.store.claim_requests(&unclaimed, now_millis()).await?;
            }
        }
        Ok(snapshots)
    }

    /// The requests getRequestStatus answers `running` for, oldest first: acquire requests
    /// being provisioned or short of machines, acquire requests whose machines still boot, and
    /// returns whose machines are not gone yet.
    pub async fn requests_in_flight(&self) -> HfResult<Vec<RequestInFlight>> {
        let mut open = self
            .store
            .hf_requests_in(&[
                RequestState::Pending,
                RequestState::Provisioning,
                RequestState::InProgress,
            ])
            .await?;
        let listed: HashSet<String> = open.iter().map(|r| r.request_id.clone()).collect();
        let mut booting: Vec<String> = self
            .store
            .hf_machines_to_track()
            .await?
            .into_iter()
            .filter(|m| m.state == MachineState::Pending && !m.delivered)
            .map(|m| m.request_id)
            .filter(|id| !listed.contains(id))
            .collect();
        booting.sort();
        booting.dedup();
        open.extend(self.store.hf_requests(&booting).await?);
        open.sort_by(|a, b| (a.created_at, &a.request_id).cmp(&(b.created_at, &b.request_id)));
        let ids: Vec<String> = open.iter().map(|r| r.request_id.clone()).collect();
        let snapshots = self.store.hf_request_snapshots(&ids).await?;
        Ok(open
            .iter()
            .zip(snapshots)
            .map(|(r, s)| {
                (
                    r,
                    wire_request(r, s.as_deref().map_or(&[], |s| &s.machines)),
                )
            })
            .filter(|(_, wire)| wire.status == RequestStatus::Running)
            .map(|(r, wire)| {
                let mut machines_by_state = BTreeMap::new();
                for m in &wire.machines {
                    *machines_by_state.entry(m.status.clone()).or_default() += 1;
                }
                RequestInFlight {
                    request_id: r.request_id.clone(),
                    kind: r.kind,
                    template_id: r.template_id.clone(),
                    state: r.state,
                    message: wire.message,
                    machines: wire.machines.len() as u64,
                    machines_by_state,
                    created_at: rfc3339(r.created_at),
                }
            })
            .collect())
    }

    /// requestReturnMachines: one return request for the machines given (by name or id),
    /// whatever providers hold them. Unknown hosts are named in the message; machines already
    /// being returned are not returned twice.
    pub async fn return_machines(&self, hosts: &[Host]) -> HfResult<WireRequestId> {
        let admission = self.store.admission().await?;
        let mut unknown = Vec::new();
        let mut already: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut to_return: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (h, machine) in lookup_hosts(&self.store, hosts).await? {
            match machine {
                None => unknown.push(
                    h.name
                        .clone()
                        .or_else(|| h.machine_id.clone())
                        .unwrap_or_default(),
                ),
                Some(m) => match &m.return_request_id {
                    Some(ret) => already.entry(ret.clone()).or_default().push(host_name(&m)),
                    None if seen.insert(m.machine_id.clone()) => {
                        to_return.push(m.machine_id.clone())
                    }
                    None => {}
                },
            }
        }
        // Returning exactly what one earlier return covers answers with that return's id.
        if to_return.is_empty() && unknown.is_empty() && already.len() == 1 {
            let (ret, names) = already.into_iter().next().expect("one entry");
            admission.release().await;
            return Ok(WireRequestId {
                request_id: ret,
                message: format!("Already being returned: {}.", names.join(", ")),
            });
        }
        let mut parts = Vec::new();
        if to_return.is_empty() {
            parts.push("No Active VM: nothing to return.".to_string());
        } else {
            parts.push(format!(
                "Delete VM success: returning {} machine(s).",
                to_return.len()
            ));
        }
        if !unknown.is_empty() {
            parts.push(format!(
                "Unknown machines, not returned: {}.",
                unknown.join(", ")
            ));
        }
        for (ret, names) in &already {
            parts.push(format!(
                "Already being returned by {ret}: {}.",
                names.join(", ")
            ));
        }
        let now = now_millis();
        let request = HfRequest::new_return(
            to_return.len() as i64,
            if to_return.is_empty() {
                RequestState::Done
            } else {
                RequestState::InProgress
            },
            now,
        );
        self.store
            .insert_return_request(&request, &to_return)
            .await?;
        admission.release().await;
        self.request_event(EventKind::RequestAccepted, &request, None, "");
        if request.state == RequestState::Done {
            self.request_event(
                EventKind::RequestCompleted,
                &request,
                None,
                "nothing to return",
            );
        }
        tracing::info!(request_id = %request.request_id, machines = to_return.len(), unknown = unknown.len(), "machines returned");
        self.wake.notify_one();
        Ok(WireRequestId {
            request_id: request.request_id,
            message: parts.join(" "),
        })
    }

    /// getReturnRequests: of the hosts HostFactory lists, those the cloud is taking back or has
    /// taken (spot interruption, termination outside HostFactory), with the seconds left; and
    /// of the hosts this service has no record of, those the cloud reports gone or does not
    /// know (gracePeriod 0). Healthy hosts are not listed.
    pub async fn reclaimed(&self, hosts: &[Host]) -> HfResult<Vec<WireReturn>> {
        let now = now_millis();
        let looked_up = lookup_hosts(&self.store, hosts).await?;
        let unknown: Vec<&Host> = looked_up
            .iter()
            .filter(|(_, m)| m.is_none())
            .map(|(h, _)| *h)
            .collect();
        let mut answer: Vec<WireReturn> = looked_up
            .iter()
            .filter_map(|(h, m)| {
                let m = m.as_ref()?;
                let reclaimed_at = m.reclaimed_at.filter(|_| m.return_request_id.is_none())?;
                Some(WireReturn {
                    machine: h.name.clone().unwrap_or_else(|| host_name(m)),
                    grace_period: self.grace_period(m, reclaimed_at, now),
                })
            })
            .collect();
        answer.extend(self.ghosts(&unknown).await);
        Ok(answer)
    }

    pub(super) fn grace_period(
        &self,
        m: &HfMachine,
        reclaimed_at: EpochMillis,
        now: EpochMillis,
    ) -> i64 {
        match (m.state, m.reclaim_deadline) {
            // The cloud said when: the seconds left until then, whenever we noticed.
            (MachineState::Running | MachineState::Pending, Some(deadline)) => {
                ((deadline - now) / 1000).max(0)
            }
            (MachineState::Running | MachineState::Pending, None) => {
                (self.cfg.spot_grace_seconds - (now - reclaimed_at) / 1000).max(0)
            }
            _ => 0,
        }
    }
}

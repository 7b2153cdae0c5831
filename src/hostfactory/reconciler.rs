//! The background reconciler: drives provisioning of recorded requests (new ones and those a
//! restart interrupted), asks each provider about all machines in flight in batches (one call
//! per strategy and batch, never one per HostFactory request), notices reclaims, times out
//! machines that never start, and sends terminations for returned machines.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::{MachinesById, by_id, by_request};
use super::model::{HfMachine, HfRequest, RequestKind, RequestState};
use super::provisioning::{machine_row, placed_units, spec_of};
use super::service::HostFactory;
use super::status::{self, MachineResult};
use crate::app::Route;
use crate::domain::{EpochMillis, EventKind, MachineState, now_millis};
use crate::providers::{Operation, OperationOutput, ResourceRef, StatusQuery};
use crate::store::HostFactoryRepo;

/// How long a round waits for its polls and terminations before it settles requests; calls
/// still under way go on by themselves, and their strategy is skipped by later rounds until
/// they end. So one hung provider costs its own answers, never the others'.
const ROUND_WAIT: Duration = Duration::from_secs(5);

pub async fn run(hf: Arc<HostFactory>, shutdown: CancellationToken) {
    let interval = Duration::from_secs_f64(hf.cfg.reconcile_interval_seconds);
    let leadership = hf.store.leadership().clone();
    loop {
        // Replicas: only the leader reconciles (`crate::replica`).
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = leadership.until_leader() => {}
        }
        // A round stops where it is at shutdown: every step is saved as it completes, and
        // provider calls run in tasks of their own, so the next start picks up from there.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = async {
                let started = std::time::Instant::now();
                Arc::clone(&hf).reconcile(&shutdown).await;
                hf.reconcile_series.round(started.elapsed());
            } => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
            _ = hf.wake.notified() => {}
        }
    }
    tracing::info!("hostfactory reconciler stopped");
}

/// What one strategy is asked in a round.
#[derive(Default)]
struct Poll {
    instance_ids: Vec<String>,
    request_ids: Vec<String>,
}

pub(super) fn is_gone(state: MachineState) -> bool {
    matches!(
        state,
        MachineState::ShuttingDown
            | MachineState::Terminated
            | MachineState::Stopping
            | MachineState::Stopped
    )
}

impl HostFactory {
    /// One round. Errors are logged and retried next round; nothing here fails a request
    /// because a provider was briefly unreachable.
    pub async fn reconcile(self: Arc<Self>, shutdown: &CancellationToken) {
        let now = now_millis();
        self.cancel_unclaimed(now).await;
        let open = match self
            .store
            .hf_requests_in(&[
                RequestState::Pending,
                RequestState::Provisioning,
                RequestState::InProgress,
            ])
            .await
        {
            Ok(r) => r,
            Err(e) => return tracing::error!(error = %e, "reconciler cannot read requests"),
        };
        for req in open
            .iter()
            .filter(|r| matches!(r.state, RequestState::Pending | RequestState::Provisioning))
        {
            let fresh = self
                .provisioning
                .lock()
                .expect("provisioning lock")
                .insert(req.request_id.clone());
            if fresh {
                self.tasks
                    .spawn_tracked(Arc::clone(&self).provision(req.clone()));
            }
        }
        let mut tracked = match self.store.hf_machines_to_track().await {
            Ok(m) => m,
            Err(e) => return tracing::error!(error = %e, "reconciler cannot read machines"),
        };
        self.apply_reclaim_notices(&mut tracked, now).await;
        let (in_progress, returns): (Vec<HfRequest>, Vec<HfRequest>) = open
            .into_iter()
            .filter(|r| r.state == RequestState::InProgress)
            .partition(|r| r.kind == RequestKind::Acquire);
        let (tracked, in_progress) = (Arc::new(tracked), Arc::new(in_progress));
        let mut chores = self.poll(&tracked, &in_progress, now, shutdown);
        chores.extend(self.send_terminations(&tracked, shutdown).await);
        let _ = tokio::time::timeout(ROUND_WAIT, futures::future::join_all(chores)).await;
        self.settle(&in_progress, now).await;
        self.close_returns(&returns, now).await;
    }

    /// Marks done the return requests whose machines are all gone, so that they leave the
    /// rounds (their answers come from the machines and do not change).
    async fn close_returns(&self, returns: &[HfRequest], now: EpochMillis) {
        let ids: Vec<String> = returns.iter().map(|r| r.request_id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let snapshots = match self.store.hf_request_snapshots(&ids).await {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot read returned machines"),
        };
        for (r, snapshot) in returns.iter().zip(snapshots) {
            let done = snapshot.is_some_and(|s| {
                s.machines
                    .iter()
                    .all(|m| status::return_result(m.state) == MachineResult::Succeed)
            });
            if !done {
                continue;
            }
            match self
                .store
                .set_request_state(&r.request_id, RequestState::Done, &r.message, now)
                .await
            {
                Ok(()) => self.request_event(EventKind::RequestCompleted, r, None, &r.message),
                Err(e) => {
                    tracing::error!(request_id = %r.request_id, error = %e, "cannot close return")
                }
            }
        }
    }

    /// Runs `work` for `strategy` in a task of its own, unless the same chore from an earlier
    /// round is still under way there. The task ends at shutdown.
    pub(super) fn chore(
        self: &Arc<Self>,
        what: &'static str,
        strategy: &str,
        shutdown: &CancellationToken,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        let key = format!("{what}:{strategy}");
        if !self.chores.lock().expect("chores lock").insert(key.clone()) {
            tracing::debug!(
                strategy,
                what,
                "still under way from an earlier round; skipped"
            );
            return None;
        }
        let (hf, token) = (Arc::clone(self), shutdown.clone());
        Some(tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = work => {}
            }
            hf.chores.lock().expect("chores lock").remove(&key);
        }))
    }

    fn poll(
        self: &Arc<Self>,
        tracked: &Arc<Vec<HfMachine>>,
        in_progress: &Arc<Vec<HfRequest>>,
        now: EpochMillis,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let live_every = (self.cfg.live_check_interval_seconds * 1000.0) as i64;
        let mut polls: BTreeMap<String, Poll> = BTreeMap::new();
        for m in tracked.iter() {
            let due = m.state != MachineState::Running
                || m.return_request_id.is_some()
                || now - m.updated_at >= live_every;
            if due {
                polls
                    .entry(m.strategy.clone())
                    .or_default()
                    .instance_ids
                    .push(m.machine_id.clone());
            }
        }
        // Fleets and groups place machines after the create call answered: look them up by tag.
        let tracked_of = by_request(tracked);
        for r in in_progress.iter() {
            let placed = tracked_of.get(r.request_id.as_str()).into_iter().flatten();
            if let Some(strategy) = &r.strategy
                && placed_units(&spec_of(r), r, placed.copied()) < r.requested_count
            {
                polls
                    .entry(strategy.clone())
                    .or_default()
                    .request_ids
                    .push(r.request_id.clone());
            }
        }
        let batch = self.cfg.status_batch_size.max(1);
        self.reconcile_series.clear_polls();
        let mut chores = Vec::new();
        for (strategy, poll) in polls {
            let (hf, tracked, in_progress) = (
                Arc::clone(self),
                Arc::clone(tracked),
                Arc::clone(in_progress),
            );
            let name = strategy.clone();
            let work = async move {
                let mut chunks: Vec<(Vec<String>, Vec<String>)> = poll
                    .instance_ids
                    .chunks(batch)
                    .map(|c| (c.to_vec(), Vec::new()))
                    .collect();
                if !poll.request_ids.is_empty() {
                    match chunks.first_mut() {
                        Some(first) => first.1 = poll.request_ids.clone(),
                        None => chunks.push((Vec::new(), poll.request_ids.clone())),
                    }
                }
                hf.reconcile_series
                    .polled(&name, poll.instance_ids.len(), chunks.len());
                let was = by_id(&tracked);
                let mut saved = Vec::new();
                for (ids, request_ids) in chunks {
                    saved.extend(
                        hf.poll_one(&name, ids, request_ids, &was, &in_progress, now)
                            .await,
                    );
                }
                // Once for the strategy's whole poll, not per batch: a request of thousands of
                // machines spread over batches is read once.
                if !saved.is_empty() {
                    hf.status_events(&was, &saved).await;
                }
            };
            chores.extend(self.chore("poll", &strategy, shutdown, work));
        }
        chores
    }

    /// One status call; saves what it says and emits the machines' events. Returns the rows
    /// saved (none when the call or the save failed).
    async fn poll_one(
        &self,
        strategy: &str,
        ids: Vec<String>,
        request_ids: Vec<String>,
        was: &MachinesById<'_>,
        in_progress: &[HfRequest],
        now: EpochMillis,
    ) -> Vec<HfMachine> {
        let resources: Vec<ResourceRef> = in_progress
            .iter()
            .filter(|r| request_ids.contains(&r.request_id))
            .filter_map(|r| {
                Some(ResourceRef {
                    resource_id: r.resource_id.clone()?,
                    provider_api: r.provider_api?,
                })
            })
            .collect();
        let op = Operation::Status(StatusQuery {
            instance_ids: ids,
            request_ids,
            resources,
        });
        let route = Route {
            strategy: Some(strategy.to_string()),
            ..Route::default()
        };
        self.reconcile_series.status_call(strategy);
        let report = match self.engine.execute(op, route).await {
            Ok(outcome) => match outcome.result.and_then(OperationOutput::into_status) {
                Ok(report) => report,
                Err(e) => {
                    tracing::warn!(strategy, error = %e, "status poll failed; retrying next round");
                    return Vec::new();
                }
            },
            Err(e) => {
                tracing::warn!(strategy, error = %e, "status poll not possible; retrying next round");
                return Vec::new();
            }
        };
        let pending_seconds = self.pending_timeout_of(Some(strategy));
        let pending_timeout = (pending_seconds * 1000.0) as i64;
        let mut rows = Vec::new();
        for m in &report.machines {
            let row = match was.get(m.instance_id.as_str()) {
                Some(t) => observe(t, m, now),
                None => match in_progress
                    .iter()
                    .find(|r| m.request_id.as_deref() == Some(r.request_id.as_str()))
                {
                    Some(r) => machine_row(r, strategy, m, now),
                    None => continue,
                },
            };
            rows.push(row);
        }
        let not_found: BTreeSet<&str> = report.not_found.iter().map(String::as_str).collect();
        for t in not_found.into_iter().filter_map(|id| was.get(id)) {
            let mut gone = HfMachine::clone(t);
            gone.state = MachineState::Terminated;
            gone.failed = !t.delivered && t.return_request_id.is_none();
            if gone.failed {
                gone.message = "The provider no longer knows this instance.".into();
            }
            if t.delivered && t.return_request_id.is_none() && t.reclaimed_at.is_none() {
                gone.reclaimed_at = Some(now);
                gone.reclaim_notice = Some("no longer known to the provider".into());
            }
            gone.updated_at = now;
            rows.push(gone);
        }
        for row in rows.iter_mut() {
            if row.state == MachineState::Pending
                && !row.failed
                && now - row.created_at > pending_timeout
            {
                row.failed = true;
                row.message =
                    format!("Did not start within {pending_seconds}s; it is being terminated.");
            }
        }
        match self.store.save_observations(&rows).await {
            Ok(()) => {
                self.machine_events(was, &rows);
                rows
            }
            Err(e) => {
                tracing::error!(strategy, error = %e, "cannot save machine states");
                Vec::new()
            }
        }
    }

    /// `request_state` for each acquire request whose HostFactory status the machine rows just
    /// saved changed (`was`: the rows before, of the machines tracked).
    async fn status_events(&self, was: &MachinesById<'_>, saved: &[HfMachine]) {
        let mut ids: Vec<String> = saved.iter().map(|m| m.request_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let snapshots = match self.store.hf_request_snapshots(&ids).await {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot read requests for their status"),
        };
        let saved = by_id(saved);
        for s in snapshots.iter().flatten() {
            if s.request.kind != RequestKind::Acquire {
                continue;
            }
            // The rows as they were: a saved machine that was not tracked before is new.
            let before: Vec<HfMachine> = s
                .machines
                .iter()
                .filter_map(|m| {
                    if saved.contains_key(m.machine_id.as_str()) {
                        was.get(m.machine_id.as_str()).map(|w| (*w).clone())
                    } else {
                        Some(m.clone())
                    }
                })
                .collect();
            let status = self.status_of(&s.request, &s.machines);
            if status != self.status_of(&s.request, &before) {
                self.request_state(&s.request, status);
            }
        }
    }

    /// Closes acquire requests whose machines are all known, and ends those that never got
    /// all their machines within the pending timeout.
    async fn settle(&self, in_progress: &[HfRequest], now: EpochMillis) {
        let ids: Vec<String> = in_progress.iter().map(|r| r.request_id.clone()).collect();
        let snapshots = match self.store.hf_request_snapshots(&ids).await {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "cannot read machines to settle"),
        };
        for (r, snapshot) in in_progress.iter().zip(snapshots) {
            let machines: &[HfMachine] = snapshot.as_deref().map_or(&[], |s| &s.machines);
            let pending_seconds = self.pending_timeout_of(r.strategy.as_deref());
            let timeout = (pending_seconds * 1000.0) as i64;
            let known = placed_units(&spec_of(r), r, machines);
            let outcome = if known >= r.requested_count {
                Some((RequestState::Done, r.message.clone()))
            } else if now - r.created_at > timeout {
                Some((
                    RequestState::Failed,
                    format!(
                        "Only {known} of {} unit(s) were placed within {pending_seconds}s.",
                        r.requested_count
                    ),
                ))
            } else {
                None
            };
            let Some((state, message)) = outcome else {
                continue;
            };
            match self
                .store
                .set_request_state(&r.request_id, state, &message, now)
                .await
            {
                Ok(()) if state == RequestState::Done => {
                    self.request_event(EventKind::RequestCompleted, r, None, &message);
                    let done = HfRequest {
                        state,
                        message: message.clone(),
                        ..r.clone()
                    };
                    let status = self.status_of(&done, machines);
                    if status != self.status_of(r, machines) {
                        self.request_state(&done, status);
                    }
                }
                Ok(()) => self.request_event(EventKind::RequestFailed, r, None, &message),
                Err(e) => {
                    tracing::error!(request_id = %r.request_id, error = %e, "cannot settle request")
                }
            }
        }
    }
}

/// A tracked machine updated with what its provider says now.
fn observe(t: &HfMachine, m: &crate::domain::Machine, now: EpochMillis) -> HfMachine {
    let mut row = t.clone();
    row.state = m.state;
    row.delivered = t.delivered || row.state == MachineState::Running;
    row.private_ip = m.private_ip.clone().or_else(|| t.private_ip.clone());
    row.public_ip = m.public_ip.clone().or_else(|| t.public_ip.clone());
    row.private_dns = m.private_dns.clone().or_else(|| t.private_dns.clone());
    row.launch_time = m.launch_time.or(t.launch_time);
    row.instance_type = m.instance_type.clone().or_else(|| t.instance_type.clone());
    row.price_type = m.price_type.clone().or_else(|| t.price_type.clone());
    row.resource_id = m.resource_id.clone().or_else(|| t.resource_id.clone());
    row.provider_api = m.provider_api.or(t.provider_api);
    // Gone before it ever ran: say why, rather than leave HostFactory a bare failure.
    if !row.delivered
        && is_gone(row.state)
        && t.return_request_id.is_none()
        && row.message.is_empty()
    {
        row.message = format!(
            "The cloud took the machine back before it started ({}{}).",
            row.state.as_str(),
            m.reclaim_notice
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
    }
    // The cloud taking back a machine HostFactory still holds.
    let taken = m.reclaim_notice.is_some() || (row.delivered && is_gone(row.state));
    if t.return_request_id.is_none() && taken {
        row.reclaim_notice = m
            .reclaim_notice
            .clone()
            .or_else(|| Some(format!("{} outside HostFactory", row.state.as_str())));
        row.reclaimed_at = t.reclaimed_at.or(Some(now));
        // The first deadline the cloud gave stays, as the store keeps it.
        row.reclaim_deadline = t.reclaim_deadline.or(m.reclaim_deadline);
    }
    row.updated_at = now;
    row
}

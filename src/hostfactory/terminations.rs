//! Terminations, part of each reconciler round: returned machines not yet handed to their
//! provider, and machines failed for not starting, sent in one TERMINATE_INSTANCES per
//! strategy; what a provider could not give back is noted on the machines and retried.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model::HfMachine;
use super::reconciler::is_gone;
use super::service::HostFactory;
use crate::app::Route;
use crate::domain::{AuditCause, now_millis};
use crate::providers::{MachineRef, Operation, OperationOutput, TerminateRequest};
use crate::store::HostFactoryRepo;

impl HostFactory {
    /// TERMINATE_INSTANCES for returned machines not yet handed to their provider, and for
    /// machines failed for not starting; one call per strategy.
    /// `tracked`: the round's machines, read at its start (the round does not read them twice).
    pub(super) async fn send_terminations(
        self: &Arc<Self>,
        tracked: &[HfMachine],
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut by_strategy: BTreeMap<String, Vec<HfMachine>> = BTreeMap::new();
        for m in tracked {
            if m.return_request_id.is_some() && m.return_sent_at.is_none() && !is_gone(m.state) {
                by_strategy
                    .entry(m.strategy.clone())
                    .or_default()
                    .push(m.clone());
            }
        }
        // Failed machines are no longer tracked, but still need to go.
        match self.store.hf_failed_unterminated().await {
            Ok(failed) => {
                for m in failed {
                    by_strategy.entry(m.strategy.clone()).or_default().push(m);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read failed machines"),
        }
        let mut chores = Vec::new();
        for (strategy, list) in by_strategy {
            let hf = Arc::clone(self);
            let work = {
                let strategy = strategy.clone();
                async move { hf.terminate_on(strategy, list).await }
            };
            chores.extend(self.chore("terminate", &strategy, shutdown, work));
        }
        chores
    }

    /// One TERMINATE_INSTANCES for the machines of one strategy.
    async fn terminate_on(&self, strategy: String, list: Vec<HfMachine>) {
        let ids: Vec<String> = list.iter().map(|m| m.machine_id.clone()).collect();
        let op = Operation::Terminate(TerminateRequest {
            machines: list
                .iter()
                .map(|m| MachineRef {
                    instance_id: m.machine_id.clone(),
                    resource_id: m.resource_id.clone(),
                    provider_api: m.provider_api,
                })
                .collect(),
            simulate_reclaim: false,
        });
        let route = Route {
            strategy: Some(strategy.clone()),
            ..Route::default()
        };
        let cause = AuditCause::current_with(
            list.iter()
                .filter_map(|m| m.return_request_id.clone())
                .collect::<BTreeSet<_>>(),
        );
        let answer = cause
            .scope(self.engine.execute(op, route))
            .await
            .map(|o| o.result.and_then(OperationOutput::into_terminated));
        match answer {
            Ok(Ok(report)) => {
                // Machines the provider could not give back stay unsent: retried next round.
                let failed: Vec<&str> = report
                    .failed
                    .iter()
                    .flat_map(|f| &f.instance_ids)
                    .map(String::as_str)
                    .collect();
                if !failed.is_empty() {
                    tracing::warn!(%strategy, failed = ?report.failed, "some terminations failed; retrying them next round");
                }
                for f in &report.failed {
                    let reason = format!("{}: {}", f.error_code, f.error_message);
                    self.note_termination_problem(&strategy, &f.instance_ids, &reason)
                        .await;
                }
                let sent: Vec<String> = ids
                    .into_iter()
                    .filter(|id| !failed.contains(&id.as_str()))
                    .collect();
                if let Err(e) = self.store.mark_return_sent(&sent, now_millis()).await {
                    tracing::error!(%strategy, error = %e, "cannot record terminations");
                }
                tracing::info!(%strategy, count = sent.len(), "terminations sent");
            }
            Ok(Err(e)) => {
                tracing::warn!(%strategy, error = %e, "terminate failed; retrying next round");
                self.note_termination_problem(&strategy, &ids, &e.to_string())
                    .await;
            }
            Err(e) => {
                tracing::warn!(%strategy, error = %e, "terminate not possible; retrying next round");
                self.note_termination_problem(&strategy, &ids, &e.to_string())
                    .await;
            }
        }
    }

    /// Shows HostFactory why a return is not done yet, on the machines concerned.
    async fn note_termination_problem(&self, strategy: &str, ids: &[String], reason: &str) {
        let message = format!("Termination not accepted yet, retrying: {reason}");
        if let Err(e) = self.store.note_termination_problem(ids, &message).await {
            tracing::error!(strategy, error = %e, "cannot record the termination problem");
        }
    }
}

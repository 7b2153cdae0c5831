//! Hosts HostFactory holds that this service has no record of (made before its database was
//! reset, or by another service on the same account). getReturnRequests asks the strategies
//! about them, so that a host the cloud no longer has never stays in HostFactory.

use std::collections::HashSet;

use super::service::HostFactory;
use super::wire::{Host, WireReturn};
use crate::app::Route;
use crate::domain::{MachineState, OperationType};
use crate::providers::{Operation, OperationOutput, StatusQuery};

impl HostFactory {
    /// Of `hosts` (none of them known here), those the cloud reports gone, or that no strategy
    /// knows, with gracePeriod 0. Every strategy that can tell is asked, in batches of
    /// `status_batch_size` ids. A host without a machine id, or one that some strategy could
    /// not be asked about (it failed), is not listed: nothing is invented.
    pub(super) async fn ghosts(&self, hosts: &[&Host]) -> Vec<WireReturn> {
        let ids: Vec<String> = hosts.iter().filter_map(|h| h.machine_id.clone()).collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let mut live: HashSet<String> = HashSet::new();
        let mut gone: HashSet<String> = HashSet::new();
        let mut unanswered: HashSet<String> = HashSet::new();
        let mut asked = 0;
        for entry in self.engine.entries() {
            if !entry
                .capabilities()
                .supports(OperationType::GetInstanceStatus)
            {
                continue;
            }
            asked += 1;
            for batch in ids.chunks(self.cfg.status_batch_size.max(1)) {
                let op = Operation::Status(StatusQuery {
                    instance_ids: batch.to_vec(),
                    ..StatusQuery::default()
                });
                let route = Route {
                    strategy: Some(entry.name().to_string()),
                    ..Route::default()
                };
                let answer = self.engine.execute(op, route).await;
                let report = match answer {
                    Ok(outcome) => outcome
                        .result
                        .and_then(OperationOutput::into_status)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match report {
                    Ok(report) => {
                        for m in report.machines {
                            let going = matches!(
                                m.state,
                                MachineState::ShuttingDown | MachineState::Terminated
                            );
                            if going {
                                gone.insert(m.instance_id);
                            } else {
                                live.insert(m.instance_id);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(strategy = entry.name(), error = %e, "cannot ask about unknown hosts");
                        unanswered.extend(batch.iter().cloned());
                    }
                }
            }
        }
        if asked == 0 {
            return Vec::new();
        }
        hosts
            .iter()
            .filter_map(|h| {
                let id = h.machine_id.as_ref()?;
                let listed = !live.contains(id) && (gone.contains(id) || !unanswered.contains(id));
                listed.then(|| WireReturn {
                    machine: h.name.clone().unwrap_or_else(|| id.clone()),
                    grace_period: 0,
                })
            })
            .collect()
    }
}

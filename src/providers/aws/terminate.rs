//! TERMINATE_INSTANCES, each machine given back the way it came:
//! - EC2 fleets of type request/maintain and spot fleets: the target capacity is lowered by
//!   the returned machines' weights (no replacement, nothing else chosen by EC2) and only the
//!   named instances are terminated; the fleet is deleted/cancelled only when no other machine
//!   is left in it.
//! - Auto Scaling groups: TerminateInstanceInAutoScalingGroup with a capacity decrement; the
//!   group is deleted when it is empty.
//! - RunInstances and instant fleets: TerminateInstances.
//!
//! Every instance is tagged `ohfp:returned` first, so that terminations by anyone else stand
//! out as reclaims in later status answers.
//!
//! A fleet or group that cannot be given back is listed under `failed` and does not hold up
//! the others; the call fails only when nothing went.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    ExcessCapacityTerminationPolicy, FleetExcessCapacityTerminationPolicy, InstanceType,
    TargetCapacitySpecificationRequest,
};
use serde_json::json;

use super::errors::classify;
use super::{AwsProvider, TAG_RETURNED, TAG_TEMPLATE_ID, tag};
use crate::domain::{MachineState, ProviderError, ProvisioningApi};
use crate::providers::{MachineRef, TerminateFailure, TerminateReport, TerminateRequest};

/// What holds a machine, and so how it is given back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Holder {
    Ec2Fleet(String),
    SpotFleet(String),
    Group(String),
    /// Made by RunInstances, or held by nothing known: terminated on its own.
    Nothing,
}

impl Holder {
    /// From how the machine was made: the caller's word when it gives both the API and the
    /// resource, else the instance's tags.
    fn of(caller: Option<&MachineRef>, tags: (Option<ProvisioningApi>, Option<String>)) -> Self {
        let (api, resource) = match caller {
            Some(MachineRef {
                provider_api: Some(api),
                resource_id: Some(resource),
                ..
            }) => (Some(*api), Some(resource.clone())),
            _ => tags,
        };
        match (api, resource.filter(|r| !r.is_empty())) {
            (Some(ProvisioningApi::Ec2Fleet), Some(id)) => Holder::Ec2Fleet(id),
            (Some(ProvisioningApi::SpotFleet), Some(id)) => Holder::SpotFleet(id),
            (Some(ProvisioningApi::Asg), Some(name)) => Holder::Group(name),
            _ => Holder::Nothing,
        }
    }
}

/// A live machine to give back: its id, instance type and template (from its tag).
struct Member {
    instance_id: String,
    instance_type: String,
    template_id: Option<String>,
}

impl AwsProvider {
    pub(super) async fn give_back(
        &self,
        req: &TerminateRequest,
    ) -> Result<TerminateReport, ProviderError> {
        let ids = req.instance_ids();
        if ids.is_empty() {
            return Ok(TerminateReport::default());
        }
        let (instances, not_found) = self.describe_instances_by_id(&ids).await?;
        let mut already = Vec::new();
        let mut live: BTreeMap<Holder, Vec<Member>> = BTreeMap::new();
        for i in &instances {
            let m = self.machine_of(i, None, None);
            if matches!(
                m.state,
                MachineState::ShuttingDown | MachineState::Terminated
            ) {
                already.push(m.instance_id);
                continue;
            }
            let caller = req.machines.iter().find(|r| r.instance_id == m.instance_id);
            let holder = Holder::of(caller, (m.provider_api, m.resource_id));
            let template_id = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_TEMPLATE_ID))
                .and_then(|t| t.value())
                .map(str::to_string);
            live.entry(holder).or_default().push(Member {
                instance_id: m.instance_id,
                instance_type: m.instance_type.unwrap_or_default(),
                template_id,
            });
        }
        let terminating: Vec<String> = live
            .values()
            .flatten()
            .map(|m| m.instance_id.clone())
            .collect();
        if !terminating.is_empty() {
            self.mark_returned(&terminating).await?;
        }
        // Each fleet or group is given back on its own: one that cannot shrink (an API
        // error, a call the cloud lacks) must not hold up the machines of the others.
        let mut plain = Vec::new();
        let mut failed: Vec<(Vec<String>, ProviderError)> = Vec::new();
        for (holder, members) in live {
            let ids: Vec<String> = members.iter().map(|m| m.instance_id.clone()).collect();
            let template = members.iter().find_map(|m| m.template_id.as_deref());
            let left_to_terminate = match &holder {
                Holder::Ec2Fleet(fleet) | Holder::SpotFleet(fleet) => {
                    let spot = matches!(holder, Holder::SpotFleet(_));
                    let types: Vec<&str> =
                        members.iter().map(|m| m.instance_type.as_str()).collect();
                    self.shrink_fleet(fleet, spot, &ids, &types, template)
                        .await
                        // The fleet no longer wants them; they go like any other instance.
                        .map(|went_with_fleet| {
                            if went_with_fleet {
                                Vec::new()
                            } else {
                                ids.clone()
                            }
                        })
                }
                Holder::Group(name) => self.leave_group(name, &ids, template).await,
                Holder::Nothing => Ok(ids.clone()),
            };
            match left_to_terminate {
                Ok(left) => plain.extend(left),
                Err(e) => {
                    tracing::warn!(strategy = %self.strategy, holder = ?holder, code = %e.code, "machines not given back: {}", e.message);
                    failed.push((ids, e));
                }
            }
        }
        for chunk in plain.chunks(super::status::DESCRIBE_BATCH) {
            let sent = self
                .clients
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify("TerminateInstances", e));
            let target = json!({"instance_ids": chunk});
            self.audit("TerminateInstances", target, &sent).await;
            if let Err(e) = sent {
                failed.push((chunk.to_vec(), e));
            }
        }
        let not_sent: Vec<&String> = failed.iter().flat_map(|(ids, _)| ids).collect();
        if !terminating.is_empty() && not_sent.len() == terminating.len() {
            // Nothing went: the call failed, as its first error says.
            return Err(failed.swap_remove(0).1);
        }
        let terminating: Vec<String> = terminating
            .iter()
            .filter(|id| !not_sent.contains(id))
            .cloned()
            .collect();
        Ok(TerminateReport {
            terminating,
            already_terminating: already,
            not_found,
            failed: failed
                .into_iter()
                .map(|(instance_ids, e)| TerminateFailure {
                    instance_ids,
                    error_code: e.code,
                    error_message: e.message,
                })
                .collect(),
        })
    }

    async fn mark_returned(&self, ids: &[String]) -> Result<(), ProviderError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        for chunk in ids.chunks(super::status::DESCRIBE_BATCH) {
            self.clients
                .ec2
                .create_tags()
                .set_resources(Some(chunk.to_vec()))
                .tags(tag(TAG_RETURNED, &now))
                .send()
                .await
                .map_err(|e| classify("CreateTags", e))?;
        }
        Ok(())
    }

    /// Lowers a request fleet's target capacity by the returned instances, or deletes the fleet
    /// (and with it the instances) when they are all it holds: `true` then. Instant fleets and
    /// fleets already gone are left alone. Otherwise the caller terminates the instances.
    async fn shrink_fleet(
        &self,
        fleet: &str,
        spot_fleet: bool,
        ids: &[String],
        instance_types: &[&str],
        template_id: Option<&str>,
    ) -> Result<bool, ProviderError> {
        let (target, weights) = if spot_fleet {
            match self.spot_fleet_target(fleet).await? {
                Some(t) => t,
                None => return Ok(false),
            }
        } else {
            match self.ec2_fleet_target(fleet).await? {
                Some(t) => t,
                None => return Ok(false),
            }
        };
        let members = if spot_fleet {
            self.spot_fleet_instance_ids(fleet).await?
        } else {
            self.fleet_instance_ids(fleet).await?
        };
        let others = members.iter().filter(|id| !ids.contains(id)).count();
        if others == 0 {
            tracing::info!(fleet = %fleet, "fleet deleted: its last machines were returned");
            let deleted = if spot_fleet {
                self.cancel_spot_fleet(fleet).await
            } else {
                self.delete_fleet(fleet).await
            };
            if deleted && let Some(t) = template_id {
                self.release_launch_template(t).await;
            }
            return Ok(deleted);
        }
        let returned: f64 = instance_types
            .iter()
            .map(|t| weights.get(*t).copied().unwrap_or(1.0))
            .sum();
        let new_target = (f64::from(target) - returned).ceil().max(0.0) as i32;
        let (action, sent) = if spot_fleet {
            let sent = self
                .clients
                .ec2
                .modify_spot_fleet_request()
                .spot_fleet_request_id(fleet)
                .target_capacity(new_target)
                .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("ModifySpotFleetRequest", e));
            ("ModifySpotFleetRequest", sent)
        } else {
            let sent = self
                .clients
                .ec2
                .modify_fleet()
                .fleet_id(fleet)
                .target_capacity_specification(
                    TargetCapacitySpecificationRequest::builder()
                        .total_target_capacity(new_target)
                        .build(),
                )
                .excess_capacity_termination_policy(
                    FleetExcessCapacityTerminationPolicy::NoTermination,
                )
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("ModifyFleet", e));
            ("ModifyFleet", sent)
        };
        let target = json!({"fleet_id": fleet, "target_capacity": new_target});
        self.audit(action, target, &sent).await;
        sent?;
        Ok(false)
    }

    /// Target capacity and weights by instance type of a live request/maintain EC2 fleet.
    async fn ec2_fleet_target(
        &self,
        fleet_id: &str,
    ) -> Result<Option<(i32, BTreeMap<String, f64>)>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_fleets()
            .fleet_ids(fleet_id)
            .send()
            .await
            .map_err(|e| classify("DescribeFleets", e))?;
        let Some(f) = out.fleets().first() else {
            return Ok(None);
        };
        let gone = f
            .fleet_state()
            .is_some_and(|s| s.as_str().starts_with("deleted"));
        if gone || f.r#type().is_none_or(|t| t.as_str() == "instant") {
            return Ok(None);
        }
        let weights = weights_by_type(
            f.launch_template_configs()
                .iter()
                .flat_map(|c| c.overrides())
                .map(|o| (o.instance_type(), o.weighted_capacity())),
        );
        let target = f
            .target_capacity_specification()
            .and_then(|t| t.total_target_capacity())
            .unwrap_or(0);
        Ok(Some((target, weights)))
    }

    /// Target capacity and weights by instance type of a live spot fleet request.
    async fn spot_fleet_target(
        &self,
        request_id: &str,
    ) -> Result<Option<(i32, BTreeMap<String, f64>)>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_spot_fleet_requests()
            .spot_fleet_request_ids(request_id)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if super::errors::code_of(&e).is_some_and(|c| c.contains("NotFound")) => {
                return Ok(None);
            }
            Err(e) => return Err(classify("DescribeSpotFleetRequests", e)),
        };
        let Some(c) = out.spot_fleet_request_configs().first() else {
            return Ok(None);
        };
        if c.spot_fleet_request_state()
            .is_some_and(|s| s.as_str().starts_with("cancelled"))
        {
            return Ok(None);
        }
        let Some(data) = c.spot_fleet_request_config() else {
            return Ok(None);
        };
        let weights = weights_by_type(
            data.launch_template_configs()
                .iter()
                .flat_map(|c| c.overrides())
                .map(|o| (o.instance_type(), o.weighted_capacity())),
        );
        Ok(Some((data.target_capacity().unwrap_or(0), weights)))
    }
}

/// Weight by instance type from a fleet's overrides (those without both are left out).
fn weights_by_type<'a>(
    overrides: impl Iterator<Item = (Option<&'a InstanceType>, Option<f64>)>,
) -> BTreeMap<String, f64> {
    overrides
        .filter_map(|(t, w)| Some((t?.as_str().to_string(), w?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(api: Option<ProvisioningApi>, resource: Option<&str>) -> MachineRef {
        MachineRef {
            instance_id: "i-1".into(),
            resource_id: resource.map(str::to_string),
            provider_api: api,
        }
    }

    #[test]
    fn the_callers_word_wins_only_when_it_is_whole() {
        let tags = (Some(ProvisioningApi::Asg), Some("ohfp-web".to_string()));
        let fleet = told(Some(ProvisioningApi::Ec2Fleet), Some("fleet-1"));
        assert_eq!(
            Holder::of(Some(&fleet), tags.clone()),
            Holder::Ec2Fleet("fleet-1".into())
        );
        let half = told(Some(ProvisioningApi::SpotFleet), None);
        assert_eq!(
            Holder::of(Some(&half), tags.clone()),
            Holder::Group("ohfp-web".into())
        );
        assert_eq!(Holder::of(None, tags), Holder::Group("ohfp-web".into()));
    }

    #[test]
    fn run_instances_and_unknown_holders_are_terminated_on_their_own() {
        let reservation = told(Some(ProvisioningApi::RunInstances), Some("r-1"));
        assert_eq!(
            Holder::of(Some(&reservation), (None, None)),
            Holder::Nothing
        );
        assert_eq!(
            Holder::of(
                None,
                (Some(ProvisioningApi::SpotFleet), Some(String::new()))
            ),
            Holder::Nothing
        );
        assert_eq!(
            Holder::of(None, (None, Some("sir-1".into()))),
            Holder::Nothing
        );
    }
}

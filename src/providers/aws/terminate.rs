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
use serde_json::{Map, Value, json};

use super::errors::classify;
use super::{AwsProvider, TAG_RETURNED, TAG_TEMPLATE_ID, tag};
use crate::domain::{MachineState, ProviderError};
use crate::providers::string_list;

/// How one instance was made, from the caller's `machines` or else from its tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Origin {
    provider_api: String,
    resource_id: String,
}

impl AwsProvider {
    pub(super) async fn terminate(
        &self,
        params: &Map<String, Value>,
    ) -> Result<Value, ProviderError> {
        let ids = string_list(params, "instance_ids")?.ok_or_else(|| {
            ProviderError::validation(
                "parameters.instance_ids is required (a list of instance ids)",
            )
        })?;
        if ids.is_empty() {
            return Err(ProviderError::validation(
                "parameters.instance_ids must not be empty",
            ));
        }
        let hints = machine_hints(params)?;
        let (instances, not_found) = self.describe_instances_by_id(&ids).await?;
        let mut already = Vec::new();
        let mut live: BTreeMap<Origin, Vec<(String, String, Option<String>)>> = BTreeMap::new();
        for i in &instances {
            let m = self.machine_of(i, None, None);
            if matches!(
                m.state,
                MachineState::ShuttingDown | MachineState::Terminated
            ) {
                already.push(m.instance_id);
                continue;
            }
            let origin = hints.get(&m.instance_id).cloned().unwrap_or(Origin {
                provider_api: m
                    .provider_api
                    .clone()
                    .unwrap_or_else(|| "RunInstances".into()),
                resource_id: m.resource_id.clone().unwrap_or_default(),
            });
            let template = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(TAG_TEMPLATE_ID))
                .and_then(|t| t.value())
                .map(str::to_string);
            let instance_type = m.instance_type.clone().unwrap_or_default();
            live.entry(origin)
                .or_default()
                .push((m.instance_id, instance_type, template));
        }
        let terminating: Vec<String> = live.values().flatten().map(|(id, ..)| id.clone()).collect();
        if !terminating.is_empty() {
            self.mark_returned(&terminating).await?;
        }
        // Each fleet or group is given back on its own: one that cannot shrink (an API
        // error, a call the cloud lacks) must not hold up the machines of the others.
        let mut plain = Vec::new();
        let mut failed: Vec<(Vec<String>, ProviderError)> = Vec::new();
        for (origin, members) in live {
            let ids: Vec<String> = members.iter().map(|(id, ..)| id.clone()).collect();
            let template = members.iter().find_map(|(.., t)| t.clone());
            let left_to_terminate = match origin.provider_api.as_str() {
                "EC2Fleet" | "SpotFleet" if !origin.resource_id.is_empty() => {
                    let types: Vec<&str> = members.iter().map(|(_, t, _)| t.as_str()).collect();
                    self.shrink_fleet(&origin, &ids, &types, template.as_deref())
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
                "ASG" if !origin.resource_id.is_empty() => {
                    self.leave_group(&origin.resource_id, &ids, template.as_deref())
                        .await
                }
                _ => Ok(ids.clone()),
            };
            match left_to_terminate {
                Ok(left) => plain.extend(left),
                Err(e) => {
                    tracing::warn!(strategy = %self.strategy, resource = %origin.resource_id, code = %e.code, "machines not given back: {}", e.message);
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
                .await;
            if let Err(e) = sent {
                failed.push((chunk.to_vec(), classify("TerminateInstances", e)));
            }
        }
        let not_sent: Vec<&String> = failed.iter().flat_map(|(ids, _)| ids).collect();
        if !terminating.is_empty() && not_sent.len() == terminating.len() {
            // Nothing went: the call failed, as its first error says.
            return Err(failed.swap_remove(0).1);
        }
        let terminating: Vec<&String> = terminating
            .iter()
            .filter(|id| !not_sent.contains(id))
            .collect();
        let failed: Vec<Value> = failed
            .iter()
            .map(|(ids, e)| json!({"instance_ids": ids, "error_code": e.code, "error_message": e.message}))
            .collect();
        Ok(json!({
            "terminating": terminating,
            "already_terminating": already,
            "not_found": not_found,
            "failed": failed,
        }))
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
        origin: &Origin,
        ids: &[String],
        instance_types: &[&str],
        template_id: Option<&str>,
    ) -> Result<bool, ProviderError> {
        let fleet = &origin.resource_id;
        let spot_fleet = origin.provider_api == "SpotFleet";
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
        if spot_fleet {
            self.clients
                .ec2
                .modify_spot_fleet_request()
                .spot_fleet_request_id(fleet)
                .target_capacity(new_target)
                .excess_capacity_termination_policy(ExcessCapacityTerminationPolicy::NoTermination)
                .send()
                .await
                .map_err(|e| classify("ModifySpotFleetRequest", e))?;
        } else {
            self.clients
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
                .map_err(|e| classify("ModifyFleet", e))?;
        }
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

/// `parameters.machines: [{instance_id, resource_id?, provider_api?}]` by instance id.
fn machine_hints(params: &Map<String, Value>) -> Result<BTreeMap<String, Origin>, ProviderError> {
    let mut out = BTreeMap::new();
    let Some(value) = params.get("machines").filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let items = value.as_array().ok_or_else(|| {
        ProviderError::validation(
            "parameters.machines must be a list of {instance_id, resource_id, provider_api}",
        )
    })?;
    for (i, item) in items.iter().enumerate() {
        let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
        let id = text("instance_id").ok_or_else(|| {
            ProviderError::validation(format!("parameters.machines[{i}].instance_id is required"))
        })?;
        if let (Some(resource_id), Some(provider_api)) = (text("resource_id"), text("provider_api"))
        {
            out.insert(
                id,
                Origin {
                    provider_api,
                    resource_id,
                },
            );
        }
    }
    Ok(out)
}

//! GET_INSTANCE_STATUS: DescribeInstances in batches (by id, by request tag, by the fleets and
//! groups that hold instances), mapped to `Machine`, with spot interruptions and outside
//! terminations as reclaim notices.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{
    Filter, Instance, InstanceLifecycleType, InstanceStateName, SpotInstanceRequest,
};

use super::errors::{classify, code_of};
use super::{AwsProvider, TAG_PROVIDER_API, TAG_REQUEST_ID, TAG_RETURNED};
use crate::domain::{EpochMillis, Machine, MachineState, ProviderError, ProvisioningApi};
use crate::providers::{ResourceRef, StatusQuery, StatusReport};

/// Most instance ids in one DescribeInstances call (the API's limit).
pub const DESCRIBE_BATCH: usize = 1000;
/// Most values in one filter (the API's limit).
const FILTER_VALUES: usize = 200;

/// Spot request status codes that mean the cloud is taking the instance back.
fn spot_reclaim(code: &str) -> bool {
    code.starts_with("marked-for-")
        || ((code.starts_with("instance-terminated-")
            || code.starts_with("instance-stopped-")
            || code.starts_with("instance-hibernated-"))
            && !code.ends_with("-by-user"))
}

/// How long EC2 gives a spot instance between its interruption warning and the interruption.
pub(super) const SPOT_WARNING_MILLIS: EpochMillis = 120_000;

/// When the cloud takes the instance of a spot request in status `code`, last changed at
/// `updated`: the two-minute warning (`marked-for-termination`, `marked-for-stop`,
/// `marked-for-hibernation`) runs out 120 s after the status changed.
fn spot_deadline(code: &str, updated: Option<&DateTime>) -> Option<EpochMillis> {
    let updated = updated?.to_millis().ok()?;
    code.starts_with("marked-for-")
        .then_some(updated + SPOT_WARNING_MILLIS)
}

/// The instance a spot request's status says EC2 is taking back, with the notice and, for a
/// two-minute warning, the deadline.
fn spot_notice(r: &SpotInstanceRequest) -> Option<(&str, String, Option<EpochMillis>)> {
    let status = r.status()?;
    let code = status.code().filter(|c| spot_reclaim(c))?;
    Some((
        r.instance_id()?,
        format!(
            "spot request {code}: {}",
            status.message().unwrap_or("taken back by EC2")
        ),
        spot_deadline(code, status.update_time()),
    ))
}

fn tag_value<'a>(i: &'a Instance, key: &str) -> Option<&'a str> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn state_of(i: &Instance) -> MachineState {
    match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Running) => MachineState::Running,
        Some(InstanceStateName::ShuttingDown) => MachineState::ShuttingDown,
        Some(InstanceStateName::Terminated) => MachineState::Terminated,
        Some(InstanceStateName::Stopping) => MachineState::Stopping,
        Some(InstanceStateName::Stopped) => MachineState::Stopped,
        _ => MachineState::Pending,
    }
}

/// Ids named as unknown (or malformed) in an InvalidInstanceID error message.
fn ids_in_message<'a>(message: &str, asked: &'a [String]) -> Vec<&'a String> {
    asked
        .iter()
        .filter(|id| {
            message
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .any(|word| word == id.as_str())
        })
        .collect()
}

impl AwsProvider {
    /// One instance as a `Machine`; `resource` and `api` when the caller knows what holds it.
    pub(super) fn machine_of(
        &self,
        i: &Instance,
        resource: Option<&str>,
        api: Option<ProvisioningApi>,
    ) -> Machine {
        let (tag_resource, tag_api) = [
            ("aws:ec2:fleet-id", ProvisioningApi::Ec2Fleet),
            ("aws:ec2spot:fleet-request-id", ProvisioningApi::SpotFleet),
            ("aws:autoscaling:groupName", ProvisioningApi::Asg),
        ]
        .into_iter()
        .find_map(|(key, api)| tag_value(i, key).map(|v| (Some(v), Some(api))))
        .unwrap_or((None, None));
        let state = state_of(i);
        let reason = i.state_reason();
        let reclaim_notice = match reason.and_then(|r| r.code()) {
            Some(code) if code.starts_with("Server.Spot") => Some(format!(
                "spot interruption: {}",
                reason.and_then(|r| r.message()).unwrap_or(code)
            )),
            _ if matches!(
                state,
                MachineState::ShuttingDown
                    | MachineState::Terminated
                    | MachineState::Stopping
                    | MachineState::Stopped
            ) && tag_value(i, TAG_RETURNED).is_none() =>
            {
                Some(format!(
                    "{} outside HostFactory ({})",
                    state.as_str(),
                    reason
                        .and_then(|r| r.message().or(r.code()))
                        .unwrap_or("no state reason")
                ))
            }
            _ => None,
        };
        Machine {
            instance_id: i.instance_id().unwrap_or_default().to_string(),
            state,
            // Shutting-down and terminated instances may have lost their addresses.
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            private_dns: i
                .private_dns_name()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            instance_type: i.instance_type().map(|t| t.as_str().to_string()),
            launch_time: i.launch_time().map(|t| t.secs()),
            region: Some(self.cfg.region.clone()),
            price_type: Some(
                if i.instance_lifecycle() == Some(&InstanceLifecycleType::Spot) {
                    "spot"
                } else {
                    "ondemand"
                }
                .into(),
            ),
            reclaim_notice,
            reclaim_deadline: None,
            request_id: tag_value(i, TAG_REQUEST_ID).map(str::to_string),
            resource_id: resource
                .or(tag_resource)
                .map(str::to_string)
                .or_else(|| i.spot_instance_request_id().map(str::to_string)),
            provider_api: api
                .or(tag_api)
                .or_else(|| tag_value(i, TAG_PROVIDER_API).and_then(|v| v.parse().ok())),
        }
    }

    /// Every instance of every reservation of every page.
    async fn describe(
        &self,
        ids: Option<Vec<String>>,
        filters: Vec<Filter>,
    ) -> Result<Vec<Instance>, ProviderError> {
        let mut pages = self
            .clients
            .ec2
            .describe_instances()
            .set_instance_ids(ids)
            .set_filters((!filters.is_empty()).then_some(filters))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("DescribeInstances", e))?;
            for r in page.reservations.unwrap_or_default() {
                out.extend(r.instances.unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// Instances by id, up to 1000 a call. Unknown ids are answered as not found: EC2 fails the
    /// whole call naming them, so they are taken out and the rest asked again.
    pub(super) async fn describe_instances_by_id(
        &self,
        ids: &[String],
    ) -> Result<(Vec<Instance>, Vec<String>), ProviderError> {
        let unique: Vec<String> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let mut found = Vec::new();
        let mut not_found = Vec::new();
        for chunk in unique.chunks(DESCRIBE_BATCH) {
            let mut asked = chunk.to_vec();
            while !asked.is_empty() {
                match self.describe(Some(asked.clone()), Vec::new()).await {
                    Ok(instances) => {
                        found.extend(instances);
                        break;
                    }
                    Err(e) if e.code.starts_with("InvalidInstanceID") => {
                        let missing: Vec<String> = ids_in_message(&e.message, &asked)
                            .into_iter()
                            .cloned()
                            .collect();
                        if missing.is_empty() {
                            return Err(e);
                        }
                        asked.retain(|id| !missing.contains(id));
                        not_found.extend(missing);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((found, not_found))
    }

    /// Machines by id, with reclaim notices; and the ids EC2 does not know.
    pub(super) async fn describe_ids(
        &self,
        ids: &[String],
    ) -> Result<(Vec<Machine>, Vec<String>), ProviderError> {
        let (instances, not_found) = self.describe_instances_by_id(ids).await?;
        let mut machines: Vec<Machine> = instances
            .iter()
            .map(|i| self.machine_of(i, None, None))
            .collect();
        self.add_spot_notices(&instances, &mut machines).await;
        Ok((machines, not_found))
    }

    /// Looks up the spot requests of spot instances in one call per batch and marks the
    /// instances the cloud is taking back. Best effort: a failure leaves the notices out.
    async fn add_spot_notices(&self, instances: &[Instance], machines: &mut [Machine]) {
        let requests: Vec<String> = instances
            .iter()
            .filter(|i| state_of(i) != MachineState::Terminated)
            .filter_map(|i| i.spot_instance_request_id().map(str::to_string))
            .collect();
        for chunk in requests.chunks(FILTER_VALUES) {
            let answer = self
                .clients
                .ec2
                .describe_spot_instance_requests()
                .filters(
                    Filter::builder()
                        .name("spot-instance-request-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .send()
                .await;
            let out = match answer {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %classify("DescribeSpotInstanceRequests", e), "spot interruption notices unavailable");
                    return;
                }
            };
            for (instance, notice, deadline) in
                out.spot_instance_requests().iter().filter_map(spot_notice)
            {
                if let Some(m) = machines.iter_mut().find(|m| m.instance_id == instance) {
                    m.reclaim_notice = Some(notice);
                    m.reclaim_deadline = deadline;
                }
            }
        }
    }

    /// The instances each resource holds, by instance id; each resource is asked about once.
    async fn resource_members(
        &self,
        resources: &[ResourceRef],
    ) -> Result<BTreeMap<String, ResourceRef>, ProviderError> {
        let mut out = BTreeMap::new();
        let mut groups = Vec::new();
        let mut reservations = Vec::new();
        for (n, resource) in resources.iter().enumerate() {
            if resources[..n].contains(resource) {
                continue;
            }
            let ids = match resource.provider_api {
                ProvisioningApi::Ec2Fleet => self.fleet_instance_ids(&resource.resource_id).await?,
                ProvisioningApi::SpotFleet => {
                    self.spot_fleet_instance_ids(&resource.resource_id).await?
                }
                ProvisioningApi::Asg => {
                    groups.push(resource.resource_id.clone());
                    continue;
                }
                ProvisioningApi::RunInstances => {
                    reservations.push(resource.resource_id.clone());
                    continue;
                }
            };
            for id in ids {
                out.insert(id, resource.clone());
            }
        }
        let held = |resource_id: String, provider_api| ResourceRef {
            resource_id,
            provider_api,
        };
        for g in self.describe_groups(&groups).await? {
            let name = g.auto_scaling_group_name().unwrap_or_default().to_string();
            for id in g.instances().iter().filter_map(|i| i.instance_id()) {
                out.insert(id.to_string(), held(name.clone(), ProvisioningApi::Asg));
            }
        }
        for chunk in reservations.chunks(FILTER_VALUES) {
            let filter = Filter::builder()
                .name("reservation-id")
                .set_values(Some(chunk.to_vec()))
                .build();
            for (reservation, ids) in self.describe_reservations(filter).await? {
                for id in ids {
                    let resource = held(reservation.clone(), ProvisioningApi::RunInstances);
                    out.insert(id, resource);
                }
            }
        }
        Ok(out)
    }

    /// (reservation id, instance ids) matching a filter.
    async fn describe_reservations(
        &self,
        filter: Filter,
    ) -> Result<Vec<(String, Vec<String>)>, ProviderError> {
        let mut pages = self
            .clients
            .ec2
            .describe_instances()
            .filters(filter)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("DescribeInstances", e))?;
            for r in page.reservations() {
                out.push((
                    r.reservation_id().unwrap_or_default().to_string(),
                    r.instances()
                        .iter()
                        .filter_map(|i| i.instance_id.clone())
                        .collect(),
                ));
            }
        }
        Ok(out)
    }

    /// The active instances of an EC2 fleet (none when the fleet is gone).
    pub(super) async fn fleet_instance_ids(
        &self,
        fleet_id: &str,
    ) -> Result<Vec<String>, ProviderError> {
        all_pages("DescribeFleetInstances", |token| async move {
            let page = self
                .clients
                .ec2
                .describe_fleet_instances()
                .fleet_id(fleet_id)
                .set_next_token(token)
                .send()
                .await?;
            let ids = page
                .active_instances()
                .iter()
                .filter_map(|i| i.instance_id.clone());
            Ok((ids.collect(), page.next_token))
        })
        .await
    }

    /// The active instances of a spot fleet request (none when it is gone).
    pub(super) async fn spot_fleet_instance_ids(
        &self,
        request_id: &str,
    ) -> Result<Vec<String>, ProviderError> {
        all_pages("DescribeSpotFleetInstances", |token| async move {
            let page = self
                .clients
                .ec2
                .describe_spot_fleet_instances()
                .spot_fleet_request_id(request_id)
                .set_next_token(token)
                .send()
                .await?;
            let ids = page
                .active_instances()
                .iter()
                .filter_map(|i| i.instance_id.clone());
            Ok((ids.collect(), page.next_token))
        })
        .await
    }

    /// Machines by id, by request tag and by the resources holding them, in the order asked,
    /// then the rest as found.
    pub(super) async fn machines_status(
        &self,
        query: &StatusQuery,
    ) -> Result<StatusReport, ProviderError> {
        let held_by = self.resource_members(&query.resources).await?;
        let mut all: Vec<String> = query.instance_ids.clone();
        all.extend(held_by.keys().cloned());
        let (mut machines, not_found) = if all.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.describe_ids(&all).await?
        };
        for m in &mut machines {
            if let Some(resource) = held_by.get(&m.instance_id) {
                m.resource_id = Some(resource.resource_id.clone());
                m.provider_api = Some(resource.provider_api);
            }
        }
        for chunk in query.request_ids.chunks(FILTER_VALUES) {
            let filter = Filter::builder()
                .name(format!("tag:{TAG_REQUEST_ID}"))
                .set_values(Some(chunk.to_vec()))
                .build();
            let instances = self.describe(None, vec![filter]).await?;
            let mut extra: Vec<Machine> = instances
                .iter()
                .filter(|i| {
                    !machines
                        .iter()
                        .any(|m| Some(m.instance_id.as_str()) == i.instance_id())
                })
                .map(|i| self.machine_of(i, None, None))
                .collect();
            self.add_spot_notices(&instances, &mut extra).await;
            machines.extend(extra);
        }
        machines.sort_by_key(|m| {
            query
                .instance_ids
                .iter()
                .position(|id| id == &m.instance_id)
                .unwrap_or(usize::MAX)
        });
        Ok(StatusReport {
            machines,
            not_found,
        })
    }
}

/// Follows NextToken through every page of instance ids; a resource EC2 no longer knows
/// (`...NotFound`) has none.
async fn all_pages<E, F, Fut>(api: &str, mut page: F) -> Result<Vec<String>, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<String>, Option<String>), SdkError<E, HttpResponse>>>,
{
    let mut ids = Vec::new();
    let mut token = None;
    loop {
        match page(token).await {
            Ok((more, next)) => {
                ids.extend(more);
                token = next.filter(|t| !t.is_empty());
                if token.is_none() {
                    return Ok(ids);
                }
            }
            Err(e) if code_of(&e).is_some_and(|c| c.contains("NotFound")) => return Ok(ids),
            Err(e) => return Err(classify(api, e)),
        }
    }
}

#[cfg(test)]
mod recorded;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_are_read_from_the_error_message() {
        let asked = vec!["i-1".to_string(), "i-22".to_string(), "i-3".to_string()];
        let found = ids_in_message("The instance IDs 'i-1, i-3' do not exist", &asked);
        assert_eq!(found, vec![&asked[0], &asked[2]]);
        assert!(ids_in_message("The instance ID 'i-2' does not exist", &asked).is_empty());
    }

    #[test]
    fn spot_codes_that_mean_reclaim() {
        assert!(spot_reclaim("marked-for-termination"));
        assert!(spot_reclaim("instance-terminated-by-price"));
        assert!(spot_reclaim("instance-terminated-no-capacity"));
        assert!(!spot_reclaim("instance-terminated-by-user"));
        assert!(!spot_reclaim("fulfilled"));
    }
}

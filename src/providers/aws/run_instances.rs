//! The RunInstances API: on-demand (or spot through market options) instances in one call,
//! tagged at launch.

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, CapacityReservationSpecification, EbsBlockDevice,
    IamInstanceProfileSpecification, InstanceMarketOptionsRequest, LaunchTemplateSpecification,
    Placement, ResourceType, TagSpecification,
};
use serde_json::json;

use super::create::LaunchOrder;
use super::errors::classify;
use super::interfaces::run_interfaces;
use super::launch_template::{market_type, reservation_request};
use super::pools::{PoolKey, failover_order, is_pool_fault};
use super::spec::invalid;
use super::{AwsProvider, tag};
use crate::domain::{Machine, ProviderError, ProviderErrorKind, ProvisioningApi, now_millis};
use crate::providers::Created;

impl AwsProvider {
    /// Runs the order in the first pool that has room, in failover order: a pool that
    /// answers a pool fault is parked and the whole count moves to the next (RunInstances is
    /// all or nothing: MinCount = MaxCount). Parked pools are skipped. When every pool fails
    /// the error is a Capacity error with the last pool's code, so the strategy layer fails
    /// over to the next strategy.
    pub(super) async fn run_over_pools(
        &self,
        order: &LaunchOrder,
    ) -> Result<Created, ProviderError> {
        let all = failover_order(&order.spec.spec);
        let now = now_millis();
        let (open, parked): (Vec<PoolKey>, Vec<PoolKey>) = all
            .into_iter()
            .partition(|p| !self.parking.is_parked(p, now));
        let mut failed: Vec<(PoolKey, ProviderError)> = Vec::new();
        for pool in open {
            match self.run_instances(order, &pool).await {
                Ok(created) => {
                    if !failed.is_empty() {
                        self.parking.count_failover();
                    }
                    return Ok(created);
                }
                Err(e) if is_pool_fault(&e.code) => {
                    self.park(&pool, &e.code);
                    failed.push((pool, e));
                }
                Err(e) => return Err(e),
            }
        }
        let skipped = parked.iter().map(ToString::to_string).collect::<Vec<_>>();
        let tried = failed
            .iter()
            .map(|(p, e)| format!("{p}: {}", e.code))
            .collect::<Vec<_>>();
        let code = failed
            .last()
            .map_or("POOLS_PARKED", |(_, e)| e.code.as_str());
        Err(ProviderError::new(
            ProviderErrorKind::Capacity,
            code,
            format!(
                "RunInstances: no pool has room (tried: [{}]; parked: [{}])",
                tried.join(", "),
                skipped.join(", ")
            ),
        ))
    }

    /// The RunInstances call of `order` in `pool`, ready to send (or to dry-run by a plan).
    pub(super) async fn run_instances_call(
        &self,
        order: &LaunchOrder,
        pool: &PoolKey,
    ) -> Result<RunInstancesFluentBuilder, ProviderError> {
        let t = &order.spec;
        let tags: Vec<_> = order.tags.iter().map(|(k, v)| tag(k, v)).collect();
        let mut call = self
            .clients
            .ec2
            .run_instances()
            .min_count(order.units)
            .max_count(order.units)
            .instance_type(pool.instance_type.as_str().into())
            .set_key_name(t.spec.key_name.clone())
            .set_user_data(t.user_data().await.map_err(invalid)?)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        call = match &t.spec.network_interfaces {
            Some(n) => call.set_network_interfaces(Some(run_interfaces(
                n,
                pool.subnet.as_deref(),
                &t.spec.security_groups,
            ))),
            None => call
                .set_subnet_id(pool.subnet.clone())
                .set_security_group_ids(
                    (!t.spec.security_groups.is_empty()).then(|| t.spec.security_groups.clone()),
                ),
        };
        call = match &t.spec.launch_template_id {
            Some(id) => call.launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(id)
                    .version(t.launch_template_version())
                    .build(),
            ),
            None => call.image_id(self.resolve_image(t).await?),
        };
        if let Some(market) = market_type(t) {
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(market)
                    .build(),
            );
        }
        let p = &t.spec.placement;
        if p.group_name.is_some() || p.tenancy.is_some() {
            call = call.placement(
                Placement::builder()
                    .set_group_name(p.group_name.clone())
                    .set_tenancy(p.tenancy.map(|v| v.as_str().into()))
                    .build(),
            );
        }
        if let Some(reservation) = &p.capacity_reservation {
            let (preference, target) = reservation_request(reservation);
            call = call.capacity_reservation_specification(
                CapacityReservationSpecification::builder()
                    .set_capacity_reservation_preference(preference)
                    .set_capacity_reservation_target(target)
                    .build(),
            );
        }
        if let Some(profile) = &t.spec.instance_profile {
            call = call.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(profile)
                    .build(),
            );
        }
        let root = &t.spec.root_volume;
        if let Some(size) = root.size_gib {
            call = call.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(self.root_device_name(t).await?)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(size as i32)
                            .set_volume_type(root.volume_type.map(|v| v.as_str().into()))
                            .set_iops(root.iops.map(|n| n as i32))
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        Ok(call)
    }

    async fn run_instances(
        &self,
        order: &LaunchOrder,
        pool: &PoolKey,
    ) -> Result<Created, ProviderError> {
        let call = self.run_instances_call(order, pool).await?;
        let sent = call.send().await.map_err(|e| classify("RunInstances", e));
        let launched: Vec<&str> = sent.as_ref().map_or(Vec::new(), |out| {
            out.instances()
                .iter()
                .filter_map(|i| i.instance_id())
                .collect()
        });
        let target = json!({
            "instance_type": pool.instance_type,
            "subnet": pool.subnet,
            "count": order.units,
            "instance_ids": launched,
        });
        self.audit("RunInstances", target, &sent).await;
        let out = sent?;
        let reservation = out.reservation_id.clone().unwrap_or_default();
        let machines: Vec<Machine> = out
            .instances()
            .iter()
            .map(|i| self.machine_of(i, Some(&reservation), Some(ProvisioningApi::RunInstances)))
            .collect();
        Ok(Created {
            instance_ids: machines.iter().map(|m| m.instance_id.clone()).collect(),
            count: machines.len(),
            instances: machines,
            resource_id: Some(reservation),
            provider_api: Some(ProvisioningApi::RunInstances),
            ..Created::default()
        })
    }
}

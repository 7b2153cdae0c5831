//! The EC2Fleet API: `instant` fleets answer with their instances; `request` and `maintain`
//! fleets place them later and are followed through DescribeFleetInstances.

use aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType as SdkFleetType, OnDemandOptionsRequest,
    ResourceType, SpotAllocationStrategy, SpotOptionsRequest, TagSpecification,
    TargetCapacitySpecificationRequest,
};
use serde_json::json;

use super::create::LaunchOrder;
use super::errors::{classify, kind_of_code};
use super::launch_template::LaunchTemplateRef;
use super::pools::{PoolKey, is_pool_fault};
use super::spec::ResolvedSpec;
use super::{AwsProvider, tag};
use crate::domain::{
    AllocationStrategy, FleetType, Machine, OnDemandAllocation, ProviderError, ProviderErrorKind,
    ProvisioningApi,
};
use crate::providers::Created;

fn spot_allocation(strategy: AllocationStrategy) -> SpotAllocationStrategy {
    match strategy {
        AllocationStrategy::CapacityOptimized => SpotAllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized => {
            SpotAllocationStrategy::CapacityOptimizedPrioritized
        }
        AllocationStrategy::Diversified => SpotAllocationStrategy::Diversified,
        AllocationStrategy::LowestPrice => SpotAllocationStrategy::LowestPrice,
        AllocationStrategy::PriceCapacityOptimized => {
            SpotAllocationStrategy::PriceCapacityOptimized
        }
    }
}

fn on_demand_allocation(strategy: OnDemandAllocation) -> FleetOnDemandAllocationStrategy {
    match strategy {
        OnDemandAllocation::LowestPrice => FleetOnDemandAllocationStrategy::LowestPrice,
        OnDemandAllocation::Prioritized => FleetOnDemandAllocationStrategy::Prioritized,
    }
}

fn fleet_type(fleet_type: FleetType) -> SdkFleetType {
    match fleet_type {
        FleetType::Instant => SdkFleetType::Instant,
        FleetType::Request => SdkFleetType::Request,
        FleetType::Maintain => SdkFleetType::Maintain,
    }
}

/// Spot options, always with an allocation strategy (the spec's or the default).
fn spot_options(t: &ResolvedSpec) -> SpotOptionsRequest {
    SpotOptionsRequest::builder()
        .allocation_strategy(spot_allocation(t.spot_allocation()))
        .set_instance_pools_to_use_count(t.spec.fleet.pools_count.map(|n| n as i32))
        .set_max_total_price(t.spec.max_price.clone())
        .build()
}

/// On-demand options, always with an allocation strategy (the spec's or the default).
fn on_demand_options(t: &ResolvedSpec) -> OnDemandOptionsRequest {
    OnDemandOptionsRequest::builder()
        .allocation_strategy(on_demand_allocation(t.on_demand_allocation()))
        .build()
}

fn fleet_config(t: &ResolvedSpec, lt: &LaunchTemplateRef) -> FleetLaunchTemplateConfigRequest {
    let max_price = t.is_spot().then(|| t.spec.max_price.clone()).flatten();
    let overrides = t
        .pools()
        .into_iter()
        .map(|pool| {
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(pool.instance_type.as_str().into())
                .set_subnet_id(pool.subnet)
                .weighted_capacity(pool.weight)
                .set_priority(pool.priority)
                .set_max_price(max_price.clone())
                .build()
        })
        .collect();
    FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(
            FleetLaunchTemplateSpecificationRequest::builder()
                .launch_template_id(&lt.id)
                .version(&lt.version)
                .build(),
        )
        .set_overrides(Some(overrides))
        .build()
}

/// The CreateFleet call of `order` from `lt`, ready to send (or to dry-run by a plan).
pub(super) fn create_fleet_call(
    ec2: &aws_sdk_ec2::Client,
    order: &LaunchOrder,
    lt: &LaunchTemplateRef,
) -> CreateFleetFluentBuilder {
    let t = &order.spec;
    let on_demand = order.on_demand_units();
    let capacity = TargetCapacitySpecificationRequest::builder()
        .total_target_capacity(order.units)
        .on_demand_target_capacity(on_demand)
        .spot_target_capacity(order.units - on_demand)
        .default_target_capacity_type(if t.is_spot() {
            DefaultTargetCapacityType::Spot
        } else {
            DefaultTargetCapacityType::OnDemand
        })
        .build();
    let fleet_tags: Vec<_> = order.tags.iter().map(|(k, v)| tag(k, v)).collect();
    let mut call = ec2
        .create_fleet()
        .r#type(fleet_type(t.fleet_type))
        .launch_template_configs(fleet_config(t, lt))
        .target_capacity_specification(capacity)
        .spot_options(spot_options(t))
        .on_demand_options(on_demand_options(t))
        .replace_unhealthy_instances(false)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Fleet)
                .set_tags(Some(fleet_tags.clone()))
                .build(),
        );
    if t.fleet_type == FleetType::Instant {
        // Instant fleets tag their instances at launch (request fleets cannot).
        call = call.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(fleet_tags))
                .build(),
        );
    }
    call
}

impl AwsProvider {
    pub(super) async fn create_ec2_fleet(
        &self,
        order: &LaunchOrder,
    ) -> Result<Created, ProviderError> {
        let t = &order.spec;
        let lt = self.launch_template_for(t, &order.tags).await?;
        let call = create_fleet_call(&self.clients.ec2, order, &lt);
        let sent = call.send().await.map_err(|e| classify("CreateFleet", e));
        let target = sent.as_ref().map_or(json!({}), |out| {
            json!({
                "fleet_id": out.fleet_id(),
                "instance_ids": out.instances().iter().flat_map(|i| i.instance_ids()).collect::<Vec<_>>(),
            })
        });
        let mut target = target;
        target["count"] = json!(order.units);
        target["fleet_type"] = json!(t.fleet_type.as_str());
        self.audit("CreateFleet", target, &sent).await;
        let out = sent?;
        // An instant fleet names the pools that had no room: the next request leaves them out.
        for e in out.errors() {
            let overrides = e
                .launch_template_and_overrides()
                .and_then(|lt| lt.overrides());
            let (Some(code), Some(instance_type)) =
                (e.error_code(), overrides.and_then(|o| o.instance_type()))
            else {
                continue;
            };
            if is_pool_fault(code) {
                let pool = PoolKey {
                    instance_type: instance_type.as_str().to_string(),
                    subnet: overrides.and_then(|o| o.subnet_id()).map(str::to_string),
                };
                self.park(&pool, code);
            }
        }
        let fleet_id = out.fleet_id.clone().unwrap_or_default();
        let ids: Vec<String> = out
            .instances()
            .iter()
            .flat_map(|i| i.instance_ids().iter().cloned())
            .collect();
        if t.fleet_type == FleetType::Instant && ids.is_empty() {
            // An instant fleet that placed nothing reports why in `errors`, not as a failure.
            let first = out.errors().first();
            let code = first.and_then(|e| e.error_code()).unwrap_or("NoInstances");
            let message = first
                .and_then(|e| e.error_message())
                .unwrap_or("the fleet launched no instance");
            let kind = match kind_of_code(code) {
                ProviderErrorKind::Transient => ProviderErrorKind::Capacity,
                k => k,
            };
            // Nothing to keep: the fleet record goes, whether or not that works.
            self.delete_fleet(&fleet_id).await;
            return Err(ProviderError::new(
                kind,
                code,
                format!("CreateFleet: {message}"),
            ));
        }
        let machines: Vec<Machine> = if ids.is_empty() {
            Vec::new()
        } else {
            self.describe_ids(&ids)
                .await?
                .0
                .into_iter()
                .map(|mut m| {
                    m.resource_id = Some(fleet_id.clone());
                    m.provider_api = Some(ProvisioningApi::Ec2Fleet);
                    m
                })
                .collect()
        };
        Ok(Created {
            count: ids.len(),
            instance_ids: ids,
            instances: machines,
            resource_id: Some(fleet_id),
            provider_api: Some(ProvisioningApi::Ec2Fleet),
            ..Created::default()
        })
    }

    /// Deletes a fleet and its instances; `false` (logged) when that failed.
    pub(super) async fn delete_fleet(&self, fleet_id: &str) -> bool {
        let deleted = self
            .clients
            .ec2
            .delete_fleets()
            .fleet_ids(fleet_id)
            .terminate_instances(true)
            .send()
            .await
            .map_err(|e| classify("DeleteFleets", e));
        self.audit("DeleteFleets", json!({"fleet_id": fleet_id}), &deleted)
            .await;
        match deleted {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(fleet_id, %error, "fleet not deleted");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FleetOptions, LaunchSpec, PriceType};
    use crate::providers::aws::AwsConfig;
    use serde_json::json;

    fn resolved(spec: LaunchSpec) -> ResolvedSpec {
        let cfg = AwsConfig::from_spec(json!({"region": "us-east-1"}).as_object().unwrap());
        ResolvedSpec::new(&spec, &cfg.unwrap())
    }

    #[test]
    fn a_fleet_always_names_its_allocation_strategies() {
        let plain = resolved(LaunchSpec::named("web"));
        assert_eq!(
            spot_options(&plain).allocation_strategy(),
            Some(&SpotAllocationStrategy::PriceCapacityOptimized)
        );
        assert_eq!(
            on_demand_options(&plain).allocation_strategy(),
            Some(&FleetOnDemandAllocationStrategy::LowestPrice)
        );
        let chosen = resolved(LaunchSpec {
            price_type: PriceType::Spot,
            max_price: Some("0.05".into()),
            fleet: FleetOptions {
                allocation_strategy: Some(AllocationStrategy::Diversified),
                on_demand_allocation: Some(OnDemandAllocation::Prioritized),
                pools_count: Some(2),
                ..FleetOptions::default()
            },
            ..LaunchSpec::named("web")
        });
        let spot = spot_options(&chosen);
        assert_eq!(
            spot.allocation_strategy(),
            Some(&SpotAllocationStrategy::Diversified)
        );
        assert_eq!(spot.instance_pools_to_use_count(), Some(2));
        assert_eq!(
            on_demand_options(&chosen).allocation_strategy(),
            Some(&FleetOnDemandAllocationStrategy::Prioritized)
        );
    }
}

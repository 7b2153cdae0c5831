//! providerApi EC2Fleet: `instant` fleets answer with their instances; `request` and `maintain`
//! fleets place them later and are followed through DescribeFleetInstances.

use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType as SdkFleetType, OnDemandOptionsRequest,
    ResourceType, SpotAllocationStrategy, SpotOptionsRequest, TagSpecification,
    TargetCapacitySpecificationRequest,
};
use serde_json::{Value, json};

use super::create::CreateRequest;
use super::errors::{classify, kind_of_code};
use super::launch_template::LaunchTemplateRef;
use super::template::{AwsTemplate, FleetType};
use super::{AwsProvider, tag};
use crate::domain::{Machine, ProviderError, ProviderErrorKind};

/// (instance type, subnet, weight, priority) for every pool the template allows.
pub(super) fn pools(t: &AwsTemplate) -> Vec<(String, Option<String>, f64, Option<f64>)> {
    let subnets: Vec<Option<String>> = if t.subnet_ids.is_empty() {
        vec![None]
    } else {
        t.subnet_ids.iter().cloned().map(Some).collect()
    };
    t.vm_types
        .iter()
        .flat_map(|(vm, weight)| {
            subnets.iter().map(move |s| {
                (
                    vm.clone(),
                    s.clone(),
                    *weight,
                    t.vm_types_priority.get(vm).copied(),
                )
            })
        })
        .collect()
}

fn spot_allocation(name: &str) -> SpotAllocationStrategy {
    match name {
        "capacityOptimized" => SpotAllocationStrategy::CapacityOptimized,
        "capacityOptimizedPrioritized" => SpotAllocationStrategy::CapacityOptimizedPrioritized,
        "diversified" => SpotAllocationStrategy::Diversified,
        "priceCapacityOptimized" => SpotAllocationStrategy::PriceCapacityOptimized,
        _ => SpotAllocationStrategy::LowestPrice,
    }
}

fn fleet_config(t: &AwsTemplate, lt: &LaunchTemplateRef) -> FleetLaunchTemplateConfigRequest {
    let overrides = pools(t)
        .into_iter()
        .map(|(vm, subnet, weight, priority)| {
            FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(vm.as_str().into())
                .set_subnet_id(subnet)
                .weighted_capacity(weight)
                .set_priority(priority)
                .set_max_price(t.spot.then(|| t.max_spot_price.clone()).flatten())
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

impl AwsProvider {
    pub(super) async fn create_ec2_fleet(
        &self,
        req: &CreateRequest,
    ) -> Result<Value, ProviderError> {
        let t = &req.template;
        let lt = self.launch_template_for(t, &req.tags).await?;
        let on_demand = t.on_demand_units(req.count);
        let capacity = TargetCapacitySpecificationRequest::builder()
            .total_target_capacity(req.count)
            .on_demand_target_capacity(on_demand)
            .spot_target_capacity(req.count - on_demand)
            .default_target_capacity_type(if t.spot {
                DefaultTargetCapacityType::Spot
            } else {
                DefaultTargetCapacityType::OnDemand
            })
            .build();
        let fleet_type = match t.fleet_type {
            FleetType::Instant => SdkFleetType::Instant,
            FleetType::Request => SdkFleetType::Request,
            FleetType::Maintain => SdkFleetType::Maintain,
        };
        let mut spot = SpotOptionsRequest::builder()
            .set_allocation_strategy(t.allocation_strategy.as_deref().map(spot_allocation))
            .set_instance_pools_to_use_count(t.pools_count);
        if let Some(price) = &t.max_spot_price {
            spot = spot.max_total_price(price);
        }
        let on_demand_options = OnDemandOptionsRequest::builder()
            .set_allocation_strategy(t.allocation_strategy_on_demand.as_deref().map(|s| {
                if s == "prioritized" {
                    FleetOnDemandAllocationStrategy::Prioritized
                } else {
                    FleetOnDemandAllocationStrategy::LowestPrice
                }
            }))
            .build();
        let fleet_tags: Vec<_> = req.tags.iter().map(|(k, v)| tag(k, v)).collect();
        let mut call = self
            .clients
            .ec2
            .create_fleet()
            .r#type(fleet_type)
            .launch_template_configs(fleet_config(t, &lt))
            .target_capacity_specification(capacity)
            .spot_options(spot.build())
            .on_demand_options(on_demand_options)
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
        let out = call.send().await.map_err(|e| classify("CreateFleet", e))?;
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
                    m.provider_api = Some("EC2Fleet".into());
                    m
                })
                .collect()
        };
        Ok(json!({
            "instance_ids": ids,
            "count": ids.len(),
            "instances": machines,
            "resource_id": fleet_id,
            "provider_api": "EC2Fleet",
            "fleet_type": format!("{:?}", t.fleet_type).to_ascii_lowercase(),
        }))
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
            .await;
        match deleted {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(fleet_id, error = %classify("DeleteFleets", e), "fleet not deleted");
                false
            }
        }
    }
}

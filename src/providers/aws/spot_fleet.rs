//! providerApi SpotFleet: a `request` (or `maintain`) spot fleet from our launch template,
//! valid for `spotFleetRequestExpiry` minutes, at most `maxSpotPrice`.

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{
    AllocationStrategy, FleetLaunchTemplateSpecification, FleetType as SdkFleetType,
    LaunchTemplateConfig, LaunchTemplateOverrides, OnDemandAllocationStrategy, ResourceType,
    SpotFleetRequestConfigData, TagSpecification,
};
use serde_json::{Value, json};

use super::create::CreateRequest;
use super::ec2_fleet::pools;
use super::errors::classify;
use super::template::FleetType;
use super::{AwsProvider, tag};
use crate::domain::ProviderError;

fn allocation(name: &str) -> AllocationStrategy {
    match name {
        "capacityOptimized" => AllocationStrategy::CapacityOptimized,
        "capacityOptimizedPrioritized" => AllocationStrategy::CapacityOptimizedPrioritized,
        "diversified" => AllocationStrategy::Diversified,
        "priceCapacityOptimized" => AllocationStrategy::PriceCapacityOptimized,
        _ => AllocationStrategy::LowestPrice,
    }
}

impl AwsProvider {
    pub(super) async fn request_spot_fleet(
        &self,
        req: &CreateRequest,
    ) -> Result<Value, ProviderError> {
        let t = &req.template;
        let lt = self.launch_template_for(t, &req.tags).await?;
        let overrides = pools(t)
            .into_iter()
            .map(|(vm, subnet, weight, priority)| {
                LaunchTemplateOverrides::builder()
                    .instance_type(vm.as_str().into())
                    .set_subnet_id(subnet)
                    .weighted_capacity(weight)
                    .set_priority(priority)
                    .build()
            })
            .collect();
        let valid_until = chrono::Utc::now().timestamp()
            + (t.spot_fleet_request_expiry_minutes * 60.0).round() as i64;
        let on_demand = t.on_demand_units(req.count);
        let config = SpotFleetRequestConfigData::builder()
            .iam_fleet_role(t.fleet_role.clone().unwrap_or_default())
            .target_capacity(req.count)
            .on_demand_target_capacity(on_demand)
            .r#type(if t.fleet_type == FleetType::Maintain {
                SdkFleetType::Maintain
            } else {
                SdkFleetType::Request
            })
            .valid_until(DateTime::from_secs(valid_until))
            .set_spot_price(t.max_spot_price.clone())
            .set_allocation_strategy(t.allocation_strategy.as_deref().map(allocation))
            .set_on_demand_allocation_strategy(t.allocation_strategy_on_demand.as_deref().map(
                |s| {
                    if s == "prioritized" {
                        OnDemandAllocationStrategy::Prioritized
                    } else {
                        OnDemandAllocationStrategy::LowestPrice
                    }
                },
            ))
            .set_instance_pools_to_use_count(t.pools_count)
            .replace_unhealthy_instances(false)
            .launch_template_configs(
                LaunchTemplateConfig::builder()
                    .launch_template_specification(
                        FleetLaunchTemplateSpecification::builder()
                            .launch_template_id(&lt.id)
                            .version(&lt.version)
                            .build(),
                    )
                    .set_overrides(Some(overrides))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SpotFleetRequest)
                    .set_tags(Some(req.tags.iter().map(|(k, v)| tag(k, v)).collect()))
                    .build(),
            )
            .build();
        let out = self
            .clients
            .ec2
            .request_spot_fleet()
            .spot_fleet_request_config(config)
            .send()
            .await
            .map_err(|e| classify("RequestSpotFleet", e))?;
        let id = out.spot_fleet_request_id.unwrap_or_default();
        Ok(json!({
            "instance_ids": [],
            "count": 0,
            "instances": [],
            "resource_id": id,
            "provider_api": "SpotFleet",
            "valid_until": valid_until,
        }))
    }

    /// Cancels a spot fleet request and terminates what is left of it; `false` (logged) when
    /// that failed.
    pub(super) async fn cancel_spot_fleet(&self, request_id: &str) -> bool {
        let cancelled = self
            .clients
            .ec2
            .cancel_spot_fleet_requests()
            .spot_fleet_request_ids(request_id)
            .terminate_instances(true)
            .send()
            .await;
        match cancelled {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(spot_fleet_request = request_id, error = %classify("CancelSpotFleetRequests", e), "spot fleet not cancelled");
                false
            }
        }
    }
}

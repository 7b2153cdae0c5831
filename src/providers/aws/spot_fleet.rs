//! The SpotFleet API: a `request` (or `maintain`) spot fleet from our launch template,
//! valid for the spec's request expiry, at most its max price.

use aws_sdk_ec2::primitives::DateTime;
use aws_sdk_ec2::types::{
    AllocationStrategy as SdkAllocationStrategy, FleetLaunchTemplateSpecification,
    FleetType as SdkFleetType, LaunchTemplateConfig, LaunchTemplateOverrides,
    OnDemandAllocationStrategy, ResourceType, SpotFleetRequestConfigData, TagSpecification,
};
use serde_json::json;

use super::create::LaunchOrder;
use super::errors::classify;
use super::launch_template::LaunchTemplateRef;
use super::{AwsProvider, tag};
use crate::domain::{
    AllocationStrategy, FleetType, OnDemandAllocation, ProviderError, ProvisioningApi,
};
use crate::providers::Created;

fn allocation(strategy: AllocationStrategy) -> SdkAllocationStrategy {
    match strategy {
        AllocationStrategy::CapacityOptimized => SdkAllocationStrategy::CapacityOptimized,
        AllocationStrategy::CapacityOptimizedPrioritized => {
            SdkAllocationStrategy::CapacityOptimizedPrioritized
        }
        AllocationStrategy::Diversified => SdkAllocationStrategy::Diversified,
        AllocationStrategy::LowestPrice => SdkAllocationStrategy::LowestPrice,
        AllocationStrategy::PriceCapacityOptimized => SdkAllocationStrategy::PriceCapacityOptimized,
    }
}

fn on_demand_allocation(strategy: OnDemandAllocation) -> OnDemandAllocationStrategy {
    match strategy {
        OnDemandAllocation::LowestPrice => OnDemandAllocationStrategy::LowestPrice,
        OnDemandAllocation::Prioritized => OnDemandAllocationStrategy::Prioritized,
    }
}

/// The request's configuration, valid until `valid_until` (epoch seconds). It always names
/// both allocation strategies (the spec's or the defaults).
/// When a spot fleet request of `order` made now expires (epoch seconds).
pub(super) fn valid_until(order: &LaunchOrder) -> i64 {
    chrono::Utc::now().timestamp() + (order.spec.request_expiry_minutes() * 60.0).round() as i64
}

pub(super) fn request_config(
    order: &LaunchOrder,
    lt: &LaunchTemplateRef,
    valid_until: i64,
) -> SpotFleetRequestConfigData {
    let t = &order.spec;
    let overrides = t
        .pools()
        .into_iter()
        .map(|pool| {
            LaunchTemplateOverrides::builder()
                .instance_type(pool.instance_type.as_str().into())
                .set_subnet_id(pool.subnet)
                .weighted_capacity(pool.weight)
                .set_priority(pool.priority)
                .build()
        })
        .collect();
    SpotFleetRequestConfigData::builder()
        .iam_fleet_role(t.spec.fleet.fleet_role.clone().unwrap_or_default())
        .target_capacity(order.units)
        .on_demand_target_capacity(order.on_demand_units())
        .r#type(if t.fleet_type == FleetType::Maintain {
            SdkFleetType::Maintain
        } else {
            SdkFleetType::Request
        })
        .valid_until(DateTime::from_secs(valid_until))
        .set_spot_price(t.spec.max_price.clone())
        .allocation_strategy(allocation(t.spot_allocation()))
        .on_demand_allocation_strategy(on_demand_allocation(t.on_demand_allocation()))
        .set_instance_pools_to_use_count(t.spec.fleet.pools_count.map(|n| n as i32))
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
                .set_tags(Some(order.tags.iter().map(|(k, v)| tag(k, v)).collect()))
                .build(),
        )
        .build()
}

impl AwsProvider {
    pub(super) async fn request_spot_fleet(
        &self,
        order: &LaunchOrder,
    ) -> Result<Created, ProviderError> {
        let lt = self.launch_template_for(&order.spec, &order.tags).await?;
        let valid_until = valid_until(order);
        let sent = self
            .clients
            .ec2
            .request_spot_fleet()
            .spot_fleet_request_config(request_config(order, &lt, valid_until))
            .send()
            .await
            .map_err(|e| classify("RequestSpotFleet", e));
        let target = json!({
            "spot_fleet_request_id": sent.as_ref().ok().and_then(|o| o.spot_fleet_request_id()),
            "count": order.units,
        });
        self.audit("RequestSpotFleet", target, &sent).await;
        let out = sent?;
        Ok(Created {
            resource_id: Some(out.spot_fleet_request_id.unwrap_or_default()),
            provider_api: Some(ProvisioningApi::SpotFleet),
            ..Created::default()
        })
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
            .await
            .map_err(|e| classify("CancelSpotFleetRequests", e));
        let target = json!({"spot_fleet_request_id": request_id});
        self.audit("CancelSpotFleetRequests", target, &cancelled)
            .await;
        match cancelled {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(spot_fleet_request = request_id, %error, "spot fleet not cancelled");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FleetOptions, LaunchSpec, PriceType, WeightedType};
    use crate::providers::aws::AwsConfig;
    use crate::providers::aws::spec::ResolvedSpec;
    use serde_json::json;

    fn order(fleet: FleetOptions) -> LaunchOrder {
        let spec = LaunchSpec {
            provisioning_api: Some(ProvisioningApi::SpotFleet),
            price_type: PriceType::Spot,
            instance_types: vec![WeightedType {
                instance_type: "t3.micro".into(),
                weight: 1,
            }],
            fleet: FleetOptions {
                fleet_role: Some("arn:aws:iam::123456789012:role/fleet".into()),
                ..fleet
            },
            ..LaunchSpec::named("spot")
        };
        let cfg = AwsConfig::from_spec(json!({"region": "us-east-1"}).as_object().unwrap());
        LaunchOrder {
            spec: ResolvedSpec::new(&spec, &cfg.unwrap()),
            units: 4,
            tags: Vec::new(),
        }
    }

    fn lt() -> LaunchTemplateRef {
        LaunchTemplateRef {
            id: "lt-1".into(),
            version: "1".into(),
        }
    }

    #[test]
    fn a_request_without_an_allocation_strategy_gets_the_default() {
        let config = request_config(&order(FleetOptions::default()), &lt(), 0);
        assert_eq!(
            config.allocation_strategy(),
            Some(&SdkAllocationStrategy::PriceCapacityOptimized)
        );
        assert_eq!(
            config.on_demand_allocation_strategy(),
            Some(&OnDemandAllocationStrategy::LowestPrice)
        );
        assert_eq!(config.r#type(), Some(&SdkFleetType::Request));
        assert_eq!(config.on_demand_target_capacity(), Some(0));
        let chosen = FleetOptions {
            allocation_strategy: Some(AllocationStrategy::CapacityOptimized),
            fleet_type: Some(FleetType::Maintain),
            percent_on_demand: 50.0,
            ..FleetOptions::default()
        };
        let config = request_config(&order(chosen), &lt(), 0);
        assert_eq!(
            config.allocation_strategy(),
            Some(&SdkAllocationStrategy::CapacityOptimized)
        );
        assert_eq!(config.r#type(), Some(&SdkFleetType::Maintain));
        assert_eq!(config.on_demand_target_capacity(), Some(2));
    }
}

//! CREATE_INSTANCES: resolves the spec, tags, then hands the order to the spec's API.

use super::spec::ResolvedSpec;
use super::{AwsProvider, TAG_PROVIDER_API, TAG_REQUEST_ID, TAG_TEMPLATE_ID};
use crate::domain::{ProviderError, ProviderErrorKind, ProvisioningApi};
use crate::providers::{CreateRequest, Created};

/// Most capacity units one creation may ask for.
const MAX_UNITS: u32 = 10_000;

/// One creation, resolved and checked: what to start, how many units, with which tags.
pub struct LaunchOrder {
    pub spec: ResolvedSpec,
    pub units: i32,
    /// Every tag the instances get: ohfp's own first, then the spec's, then the caller's.
    pub tags: Vec<(String, String)>,
}

/// ohfp's tags (request id, template id, provider API), then the spec's, then the caller's.
fn tags_of(spec: &ResolvedSpec, req: &CreateRequest) -> Vec<(String, String)> {
    let own = [
        req.request_id
            .as_ref()
            .map(|r| (TAG_REQUEST_ID.to_string(), r.clone())),
        Some((TAG_TEMPLATE_ID.to_string(), spec.spec.template_id.clone())),
        Some((TAG_PROVIDER_API.to_string(), spec.api.as_str().to_string())),
    ];
    own.into_iter()
        .flatten()
        .chain(spec.spec.tags.iter().cloned())
        .chain(req.tags.iter().cloned())
        .collect()
}

impl LaunchOrder {
    /// How many of the units go on demand.
    pub fn on_demand_units(&self) -> i32 {
        self.spec.spec.on_demand_units(self.units.unsigned_abs()) as i32
    }

    pub(super) fn new(req: &CreateRequest, spec: ResolvedSpec) -> Result<Self, ProviderError> {
        if !(1..=MAX_UNITS).contains(&req.units) {
            return Err(ProviderError::validation(format!(
                "count must be from 1 to {MAX_UNITS}, got {}",
                req.units
            )));
        }
        Ok(Self {
            units: req.units as i32,
            tags: tags_of(&spec, req),
            spec,
        })
    }
}

impl AwsProvider {
    /// The order of `req`: its spec resolved against the strategy, parked pools noted, the
    /// count checked.
    pub(super) fn order(&self, req: &CreateRequest) -> Result<LaunchOrder, ProviderError> {
        let mut spec = ResolvedSpec::complete(&req.spec, &self.cfg)?;
        // Fleets get no override for a parked pool; RunInstances skips them itself.
        spec.parked = self.parked_pools_of(&spec.spec);
        if spec.api != ProvisioningApi::RunInstances && spec.pools().is_empty() {
            return Err(ProviderError::new(
                ProviderErrorKind::Capacity,
                "POOLS_PARKED",
                format!(
                    "every pool of the template is parked after a capacity error (for {} s)",
                    self.cfg.capacity_cooldown_seconds
                ),
            ));
        }
        LaunchOrder::new(req, spec)
    }

    pub(super) async fn launch(&self, req: &CreateRequest) -> Result<Created, ProviderError> {
        let order = self.order(req)?;
        tracing::info!(
            strategy = %self.strategy,
            template_id = %order.spec.spec.template_id,
            provider_api = order.spec.api.as_str(),
            units = order.units,
            request_id = req.request_id.as_deref().unwrap_or(""),
            "creating instances"
        );
        match order.spec.api {
            ProvisioningApi::RunInstances => self.run_over_pools(&order).await,
            ProvisioningApi::Ec2Fleet => self.create_ec2_fleet(&order).await,
            ProvisioningApi::SpotFleet => self.request_spot_fleet(&order).await,
            ProvisioningApi::Asg => self.grow_group(&order).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LaunchSpec, WeightedType};
    use crate::providers::aws::AwsConfig;
    use serde_json::json;

    fn request(units: u32, request_id: Option<&str>) -> CreateRequest {
        CreateRequest {
            spec: LaunchSpec {
                instance_types: vec![WeightedType {
                    instance_type: "t3.micro".into(),
                    weight: 1,
                }],
                image: Some("ami-1".into()),
                tags: vec![("owner".into(), "gridops".into())],
                provisioning_api: Some(ProvisioningApi::RunInstances),
                ..LaunchSpec::named("web")
            },
            units,
            request_id: request_id.map(str::to_string),
            tags: vec![("team".into(), "hpc".into())],
        }
    }

    fn resolve(req: &CreateRequest) -> ResolvedSpec {
        let cfg = AwsConfig::from_spec(json!({"region": "us-east-1"}).as_object().unwrap());
        ResolvedSpec::complete(&req.spec, &cfg.unwrap()).unwrap()
    }

    #[test]
    fn ohfp_tags_come_first_then_the_spec_then_the_caller() {
        let req = request(2, Some("req-1"));
        let order = LaunchOrder::new(&req, resolve(&req)).unwrap();
        let keys: Vec<&str> = order.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                TAG_REQUEST_ID,
                TAG_TEMPLATE_ID,
                TAG_PROVIDER_API,
                "owner",
                "team"
            ]
        );
        assert_eq!(order.tags[1].1, "web");
        assert_eq!(order.tags[2].1, "RunInstances");
        let anonymous = request(2, None);
        let order = LaunchOrder::new(&anonymous, resolve(&anonymous)).unwrap();
        assert_eq!(order.tags[0].0, TAG_TEMPLATE_ID);
    }

    #[test]
    fn units_are_bounded() {
        for units in [0, MAX_UNITS + 1] {
            let req = request(units, None);
            let err = LaunchOrder::new(&req, resolve(&req)).err().unwrap();
            assert_eq!(err.kind, crate::domain::ProviderErrorKind::Validation);
        }
        let req = request(MAX_UNITS, None);
        assert_eq!(LaunchOrder::new(&req, resolve(&req)).unwrap().units, 10_000);
    }
}

//! A launch spec as this provider runs it: the strategy's image, subnets and security groups
//! where the spec has none, the provisioning API and the fleet type settled, allocation
//! strategies defaulted, and the parts it cannot start without checked.

use super::config::AwsConfig;
use super::pools::PoolKey;
use crate::domain::{
    AllocationStrategy, FleetType, LaunchSpec, OnDemandAllocation, ProviderError,
    ProviderErrorKind, ProvisioningApi, SpecField,
};
use crate::providers::SpecProblem;

/// The API of a spec that names none.
pub const DEFAULT_API: ProvisioningApi = ProvisioningApi::Ec2Fleet;

/// Where a fleet puts spot capacity when the spec does not say: price-capacity-optimized, which
/// AWS recommends for EC2 Fleet and Spot Fleet (the cheapest of the pools least likely to be
/// interrupted). Fleets always get one: Spot Fleet requires it, and an emulator fails without.
pub const DEFAULT_SPOT_ALLOCATION: AllocationStrategy = AllocationStrategy::PriceCapacityOptimized;

/// How a fleet orders on-demand capacity when the spec does not say: lowest price first, the
/// APIs' own default (prioritized only means something with priorities).
pub const DEFAULT_ON_DEMAND_ALLOCATION: OnDemandAllocation = OnDemandAllocation::LowestPrice;

/// How long a spot fleet request stays valid when the spec does not say.
const DEFAULT_REQUEST_EXPIRY_MINUTES: f64 = 30.0;

/// One instance pool of a fleet: an instance type in a subnet, with its weight and priority.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub instance_type: String,
    pub subnet: Option<String>,
    pub weight: f64,
    pub priority: Option<f64>,
}

/// A launch spec resolved against the strategy's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSpec {
    /// The caller's spec with the strategy's image, subnets and security groups filled in.
    pub spec: LaunchSpec,
    pub api: ProvisioningApi,
    pub fleet_type: FleetType,
    /// Pools left out of fleet overrides because they are parked (see `pools.rs`).
    pub parked: Vec<PoolKey>,
}

/// One problem as the Validation error a creation fails with.
pub fn invalid(problem: SpecProblem) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Validation,
        "INVALID_TEMPLATE",
        problem.to_string(),
    )
}

impl ResolvedSpec {
    /// `spec` with the strategy's defaults where it has none; whatever is still missing is
    /// listed by [`ResolvedSpec::problems`].
    pub fn new(spec: &LaunchSpec, cfg: &AwsConfig) -> Self {
        let mut spec = spec.clone();
        if spec.image.is_none() {
            spec.image = cfg.image_id.clone();
        }
        if spec.subnets.is_empty() {
            spec.subnets = cfg.subnet_ids.clone();
        }
        if spec.security_groups.is_empty() {
            spec.security_groups = cfg.security_group_ids.clone();
        }
        let api = spec.provisioning_api.unwrap_or(DEFAULT_API);
        let fleet_type = spec.fleet.fleet_type.unwrap_or(match api {
            ProvisioningApi::Ec2Fleet => FleetType::Instant,
            _ => FleetType::Request,
        });
        Self {
            spec,
            api,
            fleet_type,
            parked: Vec::new(),
        }
    }

    /// Resolved and complete, or a Validation error naming every problem.
    pub fn complete(spec: &LaunchSpec, cfg: &AwsConfig) -> Result<Self, ProviderError> {
        let resolved = Self::new(spec, cfg);
        crate::providers::ValidationReport::from_problems(resolved.problems()).into_result()?;
        Ok(resolved)
    }

    /// What this provider cannot start the spec without.
    pub fn problems(&self) -> Vec<SpecProblem> {
        let mut problems = Vec::new();
        let mut problem = |field, message: &str| {
            problems.push(SpecProblem {
                field,
                message: message.to_string(),
            })
        };
        if self.spec.template_id.is_empty() {
            problem(
                SpecField::TemplateId,
                "a template id is required: it names the instances' tags, launch template and group",
            );
        }
        if self.spec.instance_types.is_empty() {
            problem(
                SpecField::InstanceTypes,
                "at least one instance type is required",
            );
        }
        if self.spec.image.is_none() && self.spec.launch_template_id.is_none() {
            problem(
                SpecField::Image,
                "an image is required (or a launch template, or the strategy's image_id)",
            );
        }
        if self.api == ProvisioningApi::SpotFleet && self.spec.fleet.fleet_role.is_none() {
            problem(
                SpecField::FleetRole,
                "a fleet role is required for SpotFleet",
            );
        }
        if self.fleet_type == FleetType::Instant && self.api != ProvisioningApi::Ec2Fleet {
            problem(
                SpecField::FleetType,
                &format!("instant is valid only for EC2Fleet, not {}", self.api),
            );
        }
        problems
    }

    pub fn is_spot(&self) -> bool {
        self.spec.price_type.is_spot()
    }

    /// The version of the user's launch template to launch from.
    pub fn launch_template_version(&self) -> &str {
        self.spec
            .launch_template_version
            .as_deref()
            .unwrap_or("$Default")
    }

    /// The preferred instance type (empty only in a spec `problems` rejects).
    pub fn primary_type(&self) -> &str {
        self.spec.primary_type().unwrap_or_default()
    }

    pub fn spot_allocation(&self) -> AllocationStrategy {
        self.spec
            .fleet
            .allocation_strategy
            .unwrap_or(DEFAULT_SPOT_ALLOCATION)
    }

    pub fn on_demand_allocation(&self) -> OnDemandAllocation {
        self.spec
            .fleet
            .on_demand_allocation
            .unwrap_or(DEFAULT_ON_DEMAND_ALLOCATION)
    }

    pub fn request_expiry_minutes(&self) -> f64 {
        self.spec
            .fleet
            .request_expiry_minutes
            .unwrap_or(DEFAULT_REQUEST_EXPIRY_MINUTES)
    }

    /// Every pool the spec allows but the parked ones: each instance type in each subnet (in
    /// no particular subnet when it names none), weighted by the units one instance counts for.
    pub fn pools(&self) -> Vec<Pool> {
        let subnets: Vec<Option<String>> = if self.spec.subnets.is_empty() {
            vec![None]
        } else {
            self.spec.subnets.iter().cloned().map(Some).collect()
        };
        self.spec
            .instance_types
            .iter()
            .flat_map(|t| {
                let instance_type = t.instance_type.as_str();
                subnets
                    .iter()
                    .filter(move |subnet| {
                        !self
                            .parked
                            .iter()
                            .any(|p| p.instance_type == instance_type && p.subnet == **subnet)
                    })
                    .map(move |subnet| Pool {
                        instance_type: instance_type.to_string(),
                        subnet: subnet.clone(),
                        weight: self.spec.units_of(Some(instance_type)) as f64,
                        priority: self
                            .spec
                            .fleet
                            .priorities
                            .get(instance_type)
                            .map(|p| f64::from(*p)),
                    })
            })
            .collect()
    }

    /// The content of the user data file, base64-encoded as EC2 takes it; read without
    /// blocking.
    pub async fn user_data(&self) -> Result<Option<String>, SpecProblem> {
        let Some(path) = &self.spec.user_data_path else {
            return Ok(None);
        };
        match tokio::fs::read(path).await {
            Ok(script) => Ok(Some(aws_smithy_types::base64::encode(script))),
            Err(e) => Err(SpecProblem {
                field: SpecField::UserData,
                message: format!("'{path}' cannot be read: {e}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FleetOptions, PriceType, WeightedType};
    use serde_json::json;

    fn cfg() -> AwsConfig {
        AwsConfig::from_spec(
            json!({"region": "us-east-1", "image_id": "ami-default",
                   "subnet_ids": ["subnet-default"], "security_group_ids": ["sg-default"]})
            .as_object()
            .unwrap(),
        )
        .unwrap()
    }

    fn types(list: &[(&str, u32)]) -> Vec<WeightedType> {
        list.iter()
            .map(|(t, weight)| WeightedType {
                instance_type: t.to_string(),
                weight: *weight,
            })
            .collect()
    }

    fn spec() -> LaunchSpec {
        LaunchSpec {
            instance_types: types(&[("t3.micro", 1)]),
            ..LaunchSpec::named("web")
        }
    }

    #[test]
    fn the_strategy_fills_in_what_the_spec_leaves_out() {
        let resolved = ResolvedSpec::new(&spec(), &cfg());
        assert_eq!(resolved.spec.image.as_deref(), Some("ami-default"));
        assert_eq!(resolved.spec.subnets, ["subnet-default"]);
        assert_eq!(resolved.spec.security_groups, ["sg-default"]);
        assert_eq!(resolved.api, ProvisioningApi::Ec2Fleet);
        assert_eq!(resolved.fleet_type, FleetType::Instant);
        assert!(resolved.problems().is_empty());

        let own = LaunchSpec {
            image: Some("ami-own".into()),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            provisioning_api: Some(ProvisioningApi::Asg),
            ..spec()
        };
        let resolved = ResolvedSpec::new(&own, &cfg());
        assert_eq!(resolved.spec.image.as_deref(), Some("ami-own"));
        assert_eq!(resolved.spec.subnets, ["subnet-a", "subnet-b"]);
        assert_eq!(resolved.fleet_type, FleetType::Request);
    }

    #[test]
    fn every_missing_part_is_named_as_the_file_names_it() {
        let bare =
            AwsConfig::from_spec(json!({"region": "us-east-1"}).as_object().unwrap()).unwrap();
        let empty = LaunchSpec {
            provisioning_api: Some(ProvisioningApi::SpotFleet),
            fleet: FleetOptions {
                fleet_type: Some(FleetType::Instant),
                ..FleetOptions::default()
            },
            ..LaunchSpec::default()
        };
        let err = ResolvedSpec::complete(&empty, &bare).unwrap_err();
        assert_eq!(err.kind, ProviderErrorKind::Validation);
        assert_eq!(err.code, "INVALID_TEMPLATE");
        for field in [
            SpecField::TemplateId,
            SpecField::InstanceTypes,
            SpecField::Image,
            SpecField::FleetRole,
            SpecField::FleetType,
        ] {
            let needle = format!("{field}: ");
            assert!(err.message.contains(&needle), "{needle}: {}", err.message);
        }
        let with_launch_template = LaunchSpec {
            launch_template_id: Some("lt-1".into()),
            ..spec()
        };
        assert!(ResolvedSpec::complete(&with_launch_template, &bare).is_ok());
    }

    #[test]
    fn pools_cross_types_and_subnets_with_weights_only_in_weighted_specs() {
        let mut weighted = LaunchSpec {
            instance_types: types(&[("t3.micro", 1), ("t3.small", 2)]),
            weighted: true,
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            ..spec()
        };
        weighted.fleet.priorities.insert("t3.small".into(), 1);
        let pools = ResolvedSpec::new(&weighted, &cfg()).pools();
        assert_eq!(pools.len(), 4);
        let small: Vec<&Pool> = pools
            .iter()
            .filter(|p| p.instance_type == "t3.small")
            .collect();
        assert!(
            small
                .iter()
                .all(|p| p.weight == 2.0 && p.priority == Some(1.0))
        );
        assert_eq!(small[1].subnet.as_deref(), Some("subnet-b"));
        weighted.weighted = false;
        let mut resolved = ResolvedSpec::new(&weighted, &cfg());
        let pools = resolved.pools();
        assert!(pools.iter().all(|p| p.weight == 1.0), "{pools:?}");
        // A parked pool gets no override; the type stays in its other subnet.
        resolved.parked = vec![PoolKey {
            instance_type: "t3.small".into(),
            subnet: Some("subnet-a".into()),
        }];
        let pools = resolved.pools();
        assert_eq!(pools.len(), 3);
        assert!(
            !pools
                .iter()
                .any(|p| p.instance_type == "t3.small" && p.subnet.as_deref() == Some("subnet-a"))
        );
    }

    #[test]
    fn fleets_get_an_allocation_strategy_whether_or_not_the_spec_has_one() {
        let resolved = ResolvedSpec::new(&spec(), &cfg());
        assert_eq!(
            resolved.spot_allocation(),
            AllocationStrategy::PriceCapacityOptimized
        );
        assert_eq!(
            resolved.on_demand_allocation(),
            OnDemandAllocation::LowestPrice
        );
        assert_eq!(resolved.request_expiry_minutes(), 30.0);
        let chosen = LaunchSpec {
            price_type: PriceType::Spot,
            fleet: FleetOptions {
                allocation_strategy: Some(AllocationStrategy::CapacityOptimized),
                on_demand_allocation: Some(OnDemandAllocation::Prioritized),
                ..FleetOptions::default()
            },
            ..spec()
        };
        let resolved = ResolvedSpec::new(&chosen, &cfg());
        assert!(resolved.is_spot());
        assert_eq!(
            resolved.spot_allocation(),
            AllocationStrategy::CapacityOptimized
        );
        assert_eq!(
            resolved.on_demand_allocation(),
            OnDemandAllocation::Prioritized
        );
    }

    #[tokio::test]
    async fn user_data_is_sent_base64_and_an_unreadable_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot.sh");
        std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
        let with = |path: String| LaunchSpec {
            user_data_path: Some(path),
            ..spec()
        };
        let resolved = ResolvedSpec::new(&with(path.display().to_string()), &cfg());
        assert_eq!(
            resolved.user_data().await.unwrap().as_deref(),
            Some("IyEvYmluL3NoCmVjaG8gaGkK")
        );
        let missing = dir.path().join("missing.sh").display().to_string();
        let problem = ResolvedSpec::new(&with(missing.clone()), &cfg())
            .user_data()
            .await
            .unwrap_err();
        let err = invalid(problem);
        assert_eq!(err.kind, ProviderErrorKind::Validation);
        assert!(
            err.message
                .starts_with(&format!("{}: '{missing}'", SpecField::UserData)),
            "{}",
            err.message
        );
        assert_eq!(
            ResolvedSpec::new(&spec(), &cfg()).user_data().await,
            Ok(None)
        );
    }
}

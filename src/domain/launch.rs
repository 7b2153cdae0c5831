//! The launch model: what to start, independent of any cloud's API and of the file it came
//! from. HostFactory templates are read into it once (`crate::hostfactory::templates`); every
//! provider takes it as it is.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::names::named_enum;

named_enum! {
    /// How a cloud is asked for instances. Accepted in a template exactly when a provider
    /// handles it: the same parse serves template validation and provisioning.
    pub enum ProvisioningApi ("provisioning API") {
        RunInstances => "RunInstances",
        Ec2Fleet => "EC2Fleet",
        SpotFleet => "SpotFleet",
        Asg => "ASG" | "autoscalinggroup" | "autoscaling",
    }
}

named_enum! {
    /// On demand, spot, or both (`heterogeneous`: spot with a share on demand).
    #[derive(Default)]
    pub enum PriceType ("price type") {
        #[default]
        OnDemand => "ondemand",
        Spot => "spot",
        Heterogeneous => "heterogeneous",
    }
}

impl PriceType {
    /// Spot capacity is the default kind (spot or heterogeneous).
    pub fn is_spot(self) -> bool {
        self != PriceType::OnDemand
    }
}

named_enum! {
    /// How long a fleet keeps working for its target: `instant` answers once, `request`
    /// places asynchronously, `maintain` also replaces lost capacity.
    pub enum FleetType ("fleet type") {
        Instant => "instant",
        Request => "request",
        Maintain => "maintain",
    }
}

named_enum! {
    /// Where a fleet puts its spot capacity.
    pub enum AllocationStrategy ("allocation strategy") {
        CapacityOptimized => "capacityOptimized",
        CapacityOptimizedPrioritized => "capacityOptimizedPrioritized",
        Diversified => "diversified",
        LowestPrice => "lowestPrice",
        PriceCapacityOptimized => "priceCapacityOptimized",
    }
}

named_enum! {
    /// How a fleet orders its on-demand capacity.
    pub enum OnDemandAllocation ("on-demand allocation strategy") {
        LowestPrice => "lowestPrice",
        Prioritized => "prioritized",
    }
}

named_enum! {
    /// EBS volume types a root volume may have.
    pub enum VolumeType ("volume type") {
        Gp2 => "gp2",
        Gp3 => "gp3",
        Io1 => "io1",
        Io2 => "io2",
        Standard => "standard",
    }
}

named_enum! {
    /// Whether instances share hardware (`default`), get their own (`dedicated`) or run on a
    /// Dedicated Host (`host`).
    pub enum Tenancy ("tenancy") {
        Default => "default",
        Dedicated => "dedicated",
        Host => "host",
    }
}

named_enum! {
    /// The kind of the network interfaces a template asks for: EFA with ENA (`efa`), EFA
    /// alone beside a primary ENA interface (`efa-only`), or plain ENA (`interface`).
    pub enum InterfaceType ("interface type") {
        Efa => "efa",
        EfaOnly => "efa-only",
        Interface => "interface",
    }
}

/// Network interfaces of one kind, one per network card (IBM's `efaCount` and
/// `interfaceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInterfaces {
    pub count: u32,
    pub interface_type: InterfaceType,
}

/// Which capacity reservations instances use: any open one that matches (`open`, EC2's
/// default), none, or the one named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "preference")]
pub enum CapacityReservation {
    Open,
    None,
    Targeted { id: String },
}

/// Where and how instances are placed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Placement {
    /// A placement group the instances join.
    pub group_name: Option<String>,
    pub tenancy: Option<Tenancy>,
    /// `None`: EC2's default (open).
    pub capacity_reservation: Option<CapacityReservation>,
}

/// An instance type and the capacity units one instance of it counts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WeightedType {
    pub instance_type: String,
    pub weight: u32,
}

/// The root volume of each instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RootVolume {
    pub size_gib: Option<u32>,
    pub volume_type: Option<VolumeType>,
    pub iops: Option<u32>,
}

/// Options of fleet and group APIs; providers without fleets ignore them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetOptions {
    /// The API's own default when absent (instant for EC2 Fleet, request for Spot Fleet).
    pub fleet_type: Option<FleetType>,
    /// An IAM role the fleet acts as (Spot Fleet).
    pub fleet_role: Option<String>,
    /// How long a fleet request stays valid, in minutes (30 when absent).
    pub request_expiry_minutes: Option<f64>,
    /// Share of the units (0–100) placed on demand when the price type is spot-based.
    pub percent_on_demand: f64,
    /// Spot pools to spread over (lowestPrice).
    pub pools_count: Option<u32>,
    pub allocation_strategy: Option<AllocationStrategy>,
    pub on_demand_allocation: Option<OnDemandAllocation>,
    /// Instance type → priority (lower first) for prioritized strategies.
    pub priorities: BTreeMap<String, u32>,
}

/// Everything a provider needs to start instances of one kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LaunchSpec {
    /// The template this spec was read from (tags, launch template names).
    pub template_id: String,
    /// `None`: the provider's default API.
    pub provisioning_api: Option<ProvisioningApi>,
    /// In preference order. Empty only in a spec that validation is about to reject.
    pub instance_types: Vec<WeightedType>,
    /// Counts are capacity units (each instance counts its type's weight) rather than machines.
    pub weighted: bool,
    pub price_type: PriceType,
    /// Highest spot price per instance-hour, as the decimal text the cloud takes.
    pub max_price: Option<String>,
    /// An image id, or a parameter path the provider resolves (`/aws/service/…`).
    pub image: Option<String>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub key_name: Option<String>,
    /// Tags every instance gets, beside the service's own.
    pub tags: Vec<(String, String)>,
    /// A file whose content the instances get as user data.
    pub user_data_path: Option<String>,
    pub instance_profile: Option<String>,
    pub root_volume: RootVolume,
    /// A launch template of the user's, used as it is.
    pub launch_template_id: Option<String>,
    /// The version of the user's launch template (`$Default` when absent).
    pub launch_template_version: Option<String>,
    pub placement: Placement,
    /// `None`: the cloud's default single interface.
    pub network_interfaces: Option<NetworkInterfaces>,
    /// Launch into a Capacity Block (reserved GPU capacity for a time), which
    /// `placement.capacity_reservation` targets.
    pub capacity_block: bool,
    pub fleet: FleetOptions,
}

impl LaunchSpec {
    /// A spec that names a template and nothing else (providers that need more reject it
    /// in validation).
    pub fn named(template_id: impl Into<String>) -> Self {
        Self {
            template_id: template_id.into(),
            ..Self::default()
        }
    }

    /// A spec of these instance types, each of weight 1, and nothing else (tests).
    #[cfg(test)]
    pub fn of_types(types: &[&str]) -> Self {
        Self {
            instance_types: types
                .iter()
                .map(|t| WeightedType {
                    instance_type: t.to_string(),
                    weight: 1,
                })
                .collect(),
            ..Self::default()
        }
    }

    /// The capacity units one machine of `instance_type` counts for: its weight in a weighted
    /// spec, else 1. The one place machine weights are computed.
    pub fn units_of(&self, instance_type: Option<&str>) -> i64 {
        if !self.weighted {
            return 1;
        }
        instance_type
            .and_then(|t| self.instance_types.iter().find(|w| w.instance_type == t))
            .map_or(1, |w| i64::from(w.weight.max(1)))
    }

    /// The first (preferred) instance type.
    pub fn primary_type(&self) -> Option<&str> {
        self.instance_types
            .first()
            .map(|w| w.instance_type.as_str())
    }

    /// Narrows the spec to one instance type, keeping its weight when the spec lists it.
    pub fn narrow_to(&mut self, instance_type: &str) {
        let weight = self
            .instance_types
            .iter()
            .find(|w| w.instance_type == instance_type)
            .map_or(1, |w| w.weight);
        self.instance_types = vec![WeightedType {
            instance_type: instance_type.to_string(),
            weight,
        }];
    }

    /// How many of `units` go on demand: all for on-demand specs, else `percent_on_demand`
    /// of them, rounded up.
    pub fn on_demand_units(&self, units: u32) -> u32 {
        if !self.price_type.is_spot() {
            return units;
        }
        ((f64::from(units)) * self.fleet.percent_on_demand / 100.0).ceil() as u32
    }
}

/// A part of a launch spec, for problems found in it. Named as in the templates file, where
/// every launch spec an admin writes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SpecField {
    TemplateId,
    ProvisioningApi,
    InstanceTypes,
    PriceType,
    MaxPrice,
    Image,
    Subnets,
    SecurityGroups,
    KeyName,
    Tags,
    UserData,
    InstanceProfile,
    RootVolume,
    LaunchTemplate,
    FleetType,
    FleetRole,
    AllocationStrategy,
}

impl SpecField {
    /// The templates-file key an admin edits to fix it.
    pub fn file_key(self) -> &'static str {
        match self {
            SpecField::TemplateId => "templateId",
            SpecField::ProvisioningApi => "providerApi",
            SpecField::InstanceTypes => "vmTypes",
            SpecField::PriceType => "priceType",
            SpecField::MaxPrice => "maxSpotPrice",
            SpecField::Image => "imageId",
            SpecField::Subnets => "subnetId",
            SpecField::SecurityGroups => "securityGroupIds",
            SpecField::KeyName => "keyName",
            SpecField::Tags => "instanceTags",
            SpecField::UserData => "userDataScript",
            SpecField::InstanceProfile => "instanceProfile",
            SpecField::RootVolume => "rootDeviceVolumeSize",
            SpecField::LaunchTemplate => "launchTemplateId",
            SpecField::FleetType => "fleetType",
            SpecField::FleetRole => "fleetRole",
            SpecField::AllocationStrategy => "allocationStrategy",
        }
    }
}

impl fmt::Display for SpecField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighted() -> LaunchSpec {
        LaunchSpec {
            instance_types: vec![
                WeightedType {
                    instance_type: "t3.micro".into(),
                    weight: 1,
                },
                WeightedType {
                    instance_type: "t3.small".into(),
                    weight: 2,
                },
            ],
            weighted: true,
            price_type: PriceType::Spot,
            fleet: FleetOptions {
                percent_on_demand: 25.0,
                ..FleetOptions::default()
            },
            ..LaunchSpec::named("t")
        }
    }

    #[test]
    fn weights_count_only_in_weighted_specs() {
        let spec = weighted();
        assert_eq!(spec.units_of(Some("t3.small")), 2);
        assert_eq!(spec.units_of(Some("m5.large")), 1);
        assert_eq!(spec.units_of(None), 1);
        let plain = LaunchSpec {
            weighted: false,
            ..weighted()
        };
        assert_eq!(plain.units_of(Some("t3.small")), 1);
    }

    #[test]
    fn narrowing_keeps_the_weight_and_on_demand_share_rounds_up() {
        let mut spec = weighted();
        assert_eq!(spec.on_demand_units(4), 1);
        assert_eq!(spec.on_demand_units(5), 2);
        spec.narrow_to("t3.small");
        assert_eq!(spec.instance_types.len(), 1);
        assert_eq!(spec.instance_types[0].weight, 2);
        spec.price_type = PriceType::OnDemand;
        assert_eq!(spec.on_demand_units(5), 5);
    }

    #[test]
    fn provisioning_apis_parse_one_way_everywhere() {
        for (text, api) in [
            ("RunInstances", ProvisioningApi::RunInstances),
            ("ec2fleet", ProvisioningApi::Ec2Fleet),
            ("SPOTFLEET", ProvisioningApi::SpotFleet),
            ("autoscaling", ProvisioningApi::Asg),
            ("AutoScalingGroup", ProvisioningApi::Asg),
        ] {
            assert_eq!(text.parse::<ProvisioningApi>().unwrap(), api);
        }
        let err = "Lambda".parse::<ProvisioningApi>().unwrap_err();
        assert!(
            err.contains("RunInstances, EC2Fleet, SpotFleet, ASG"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_value(ProvisioningApi::Ec2Fleet).unwrap(),
            "EC2Fleet"
        );
    }
}

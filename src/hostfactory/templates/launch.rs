//! A template object (`awsprov_templates.json` keys) read into the provider-neutral
//! [`LaunchSpec`]: every key a provider acts on is type-checked here, once. Whether the
//! template is complete (an instance type, an image) is left to the providers' validation,
//! so that VALIDATE_TEMPLATE can report it; the templates file adds HostFactory's own rules.

use serde_json::{Map, Value};

use crate::domain::{
    AllocationStrategy, CapacityReservation, FleetOptions, FleetType, InterfaceType, LaunchSpec,
    NetworkInterfaces, OnDemandAllocation, Placement, PriceType, ProvisioningApi, RootVolume,
    Tenancy, VolumeType, WeightedType, named_enum,
};

named_enum! {
    /// `capacityReservationPreference` as written in the file.
    enum ReservationPreference ("capacity reservation preference") {
        Open => "open",
        None => "none",
        Targeted => "targeted",
    }
}

named_enum! {
    /// `marketType` as written in the file: on demand and spot are `priceType`'s.
    enum MarketKey ("market type") {
        CapacityBlock => "capacity-block",
    }
}

/// Most network cards an instance type has (one interface each).
const MAX_NETWORK_CARDS: u32 = 32;

/// A problem with one key: (key, message).
pub type KeyProblem = (String, String);

/// `"k=v;k2=v2"` into pairs; `Err` names the bad part.
pub fn parse_instance_tags(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("'{pair}' is not key=value")),
        })
        .collect()
}

/// A number or a numeric string as text ("4096", "0.5"), as the reference's files write them.
pub(super) fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.trim().parse::<f64>().is_ok() => Some(s.trim().to_string()),
        _ => None,
    }
}

struct Reader<'a> {
    raw: &'a Map<String, Value>,
    problems: Vec<KeyProblem>,
}

impl<'a> Reader<'a> {
    fn bad(&mut self, key: &str, message: String) {
        self.problems.push((key.to_string(), message));
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.raw.get(key).filter(|v| !v.is_null())
    }

    /// A non-empty string.
    fn text(&mut self, key: &str) -> Option<String> {
        match self.present(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            other => {
                let message = format!("must be a non-empty string, got {other}");
                self.bad(key, message);
                None
            }
        }
    }

    /// One of an enum's names (any case).
    fn named<T: std::str::FromStr<Err = String>>(&mut self, key: &str) -> Option<T> {
        match self.present(key)? {
            Value::String(s) => match s.parse() {
                Ok(v) => Some(v),
                Err(message) => {
                    self.bad(key, message);
                    None
                }
            },
            other => {
                self.bad(key, format!("must be a string, got {other}"));
                None
            }
        }
    }

    /// A number (also written as a numeric string) from `lo` to `hi`.
    fn number(&mut self, key: &str, lo: f64, hi: f64) -> Option<f64> {
        let v = self.present(key)?;
        match number_text(v).and_then(|t| t.parse::<f64>().ok()) {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                self.bad(key, format!("must be a number from {lo} to {hi}, got {v}"));
                None
            }
        }
    }

    /// A whole number from `lo` to `hi`.
    fn whole(&mut self, key: &str, lo: u32, hi: u32) -> Option<u32> {
        let n = self.number(key, f64::from(lo), f64::from(hi))?;
        if n.fract() != 0.0 {
            self.bad(key, format!("must be a whole number, got {n}"));
            return None;
        }
        Some(n as u32)
    }

    /// A list of strings: a JSON array, or one string with commas.
    fn list(&mut self, key: &str) -> Vec<String> {
        match self.present(key) {
            None => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(_) => {
                self.bad(
                    key,
                    "must be a string, a comma-separated string or a list of strings".into(),
                );
                Vec::new()
            }
        }
    }

    /// `{"instance type": whole number}` in file order; `positive` excludes 0.
    fn type_numbers(&mut self, key: &str, positive: bool) -> Vec<(String, u32)> {
        match self.present(key) {
            None => Vec::new(),
            Some(Value::Object(types)) if !types.is_empty() => {
                let mut out = Vec::new();
                for (t, w) in types {
                    match w.as_u64().and_then(|w| u32::try_from(w).ok()) {
                        Some(w) if w > 0 || !positive => out.push((t.clone(), w)),
                        _ => self.bad(
                            &format!("{key}.{t}"),
                            format!(
                                "must be a {} whole number, got {w}",
                                if positive { "positive" } else { "non-negative" }
                            ),
                        ),
                    }
                }
                out
            }
            Some(_) => {
                self.bad(
                    key,
                    "must be an object of instance type to whole number".into(),
                );
                Vec::new()
            }
        }
    }
}

/// `launchTemplateVersion`: `$Latest`, `$Default` or a version number; only with the user's
/// `launchTemplateId` (ohfp's own launch templates get a version per request).
fn launch_template_version(r: &mut Reader, launch_template_id: bool) -> Option<String> {
    const KEY: &str = "launchTemplateVersion";
    let v = r.present(KEY)?;
    let version = match v {
        Value::String(s) if matches!(s.trim(), "$Latest" | "$Default") => s.trim().to_string(),
        _ => match number_text(v).and_then(|t| t.parse::<u64>().ok()) {
            Some(n) if n >= 1 => n.to_string(),
            _ => {
                let message = format!("must be $Latest, $Default or a version number, got {v}");
                r.bad(KEY, message);
                return None;
            }
        },
    };
    if !launch_template_id {
        r.bad(
            KEY,
            "needs launchTemplateId (a launch template of yours)".into(),
        );
        return None;
    }
    Some(version)
}

/// `placementGroupName`, `tenancy`, `capacityReservationId` and
/// `capacityReservationPreference` (an id alone means targeted; targeted needs an id).
fn placement(r: &mut Reader) -> Placement {
    let group_name = r.text("placementGroupName");
    if let Some(name) = &group_name
        && name.len() > 255
    {
        r.bad(
            "placementGroupName",
            "must be at most 255 characters".into(),
        );
    }
    let tenancy: Option<Tenancy> = r.named("tenancy");
    let id = r.text("capacityReservationId");
    if let Some(id) = &id
        && !id.starts_with("cr-")
    {
        let message = format!("must be a capacity reservation id (cr-…), got \"{id}\"");
        r.bad("capacityReservationId", message);
    }
    let preference: Option<ReservationPreference> = r.named("capacityReservationPreference");
    let capacity_reservation = match (preference, id) {
        (None, None) => None,
        (Some(ReservationPreference::Open), None) => Some(CapacityReservation::Open),
        (Some(ReservationPreference::None), None) => Some(CapacityReservation::None),
        (None | Some(ReservationPreference::Targeted), Some(id)) => {
            Some(CapacityReservation::Targeted { id })
        }
        (Some(ReservationPreference::Targeted), None) => {
            r.bad(
                "capacityReservationPreference",
                "targeted needs capacityReservationId".into(),
            );
            None
        }
        (Some(p), Some(_)) => {
            r.bad(
                "capacityReservationId",
                format!("goes with capacityReservationPreference targeted, not {p}"),
            );
            None
        }
    };
    Placement {
        group_name,
        tenancy,
        capacity_reservation,
    }
}

/// `efaCount` and `interfaceType`: a count alone means EFA interfaces, a type alone one
/// interface of it.
fn network_interfaces(r: &mut Reader) -> Option<NetworkInterfaces> {
    let count = r.whole("efaCount", 1, MAX_NETWORK_CARDS);
    let interface_type: Option<InterfaceType> = r.named("interfaceType");
    if count.is_none() && interface_type.is_none() {
        return None;
    }
    Some(NetworkInterfaces {
        count: count.unwrap_or(1),
        interface_type: interface_type.unwrap_or(InterfaceType::Efa),
    })
}

/// `marketType: capacity-block`: on demand, through RunInstances or an Auto Scaling group's
/// launch template, into the Capacity Block `capacityReservationId` names.
fn capacity_block(
    r: &mut Reader,
    api: Option<ProvisioningApi>,
    price_type: PriceType,
    placement: &Placement,
) -> bool {
    let Some(MarketKey::CapacityBlock) = r.named::<MarketKey>("marketType") else {
        return false;
    };
    if !matches!(
        api,
        Some(ProvisioningApi::RunInstances | ProvisioningApi::Asg)
    ) {
        let message = "capacity-block needs providerApi RunInstances or ASG".into();
        r.bad("marketType", message);
    }
    if price_type != PriceType::OnDemand {
        let message = format!("capacity-block is on-demand capacity, not priceType {price_type}");
        r.bad("marketType", message);
    }
    if !matches!(
        placement.capacity_reservation,
        Some(CapacityReservation::Targeted { .. })
    ) {
        let message = "capacity-block needs capacityReservationId (the Capacity Block)".into();
        r.bad("marketType", message);
    }
    true
}

/// Reads the launch keys of a template object. Every problem is reported, each naming its key.
pub fn launch_spec(raw: &Map<String, Value>) -> Result<LaunchSpec, Vec<KeyProblem>> {
    let mut r = Reader {
        raw,
        problems: Vec::new(),
    };
    let template_id = match r.present("templateId") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            let message = format!("must be a string, got {other}");
            r.bad("templateId", message);
            String::new()
        }
    };
    let provisioning_api: Option<ProvisioningApi> = r.named("providerApi");
    let fleet_type: Option<FleetType> = r.named("fleetType");
    if fleet_type == Some(FleetType::Instant)
        && provisioning_api.is_some_and(|api| api != ProvisioningApi::Ec2Fleet)
    {
        r.bad(
            "fleetType",
            "instant is valid for EC2Fleet only (SpotFleet and ASG place instances later)".into(),
        );
    }
    let price_type: PriceType = r.named("priceType").unwrap_or_default();
    let weighted_types = r.type_numbers("vmTypes", true);
    let weighted = r.present("vmTypes").is_some();
    let mut instance_types: Vec<WeightedType> = weighted_types
        .into_iter()
        .map(|(instance_type, weight)| WeightedType {
            instance_type,
            weight,
        })
        .collect();
    if let Some(t) = r.text("vmType")
        && !instance_types.iter().any(|w| w.instance_type == t)
    {
        instance_types.insert(
            0,
            WeightedType {
                instance_type: t,
                weight: 1,
            },
        );
    }
    let priorities = r
        .type_numbers("vmTypesPriority", false)
        .into_iter()
        .collect();
    // Accepted and checked for the reference's files; on-demand types are chosen by the
    // fleet's on-demand allocation, so nothing reads them.
    r.type_numbers("vmTypesOnDemand", false);
    let image = r.text("imageId");
    if let Some(id) = &image
        && !(id.starts_with("ami-") || id.starts_with('/') || id.starts_with("resolve:ssm:"))
    {
        r.bad(
            "imageId",
            format!(
                "must be an AMI id (ami-…) or an SSM parameter path (/aws/service/…), got \"{id}\""
            ),
        );
    }
    let mut subnets = r.list("subnetId");
    subnets.extend(r.list("subnetIds"));
    let security_groups = r.list("securityGroupIds");
    let tags = match r.present("instanceTags") {
        None => Vec::new(),
        Some(Value::String(s)) => match parse_instance_tags(s) {
            Ok(tags) => tags,
            Err(m) => {
                r.bad(
                    "instanceTags",
                    format!("{m}; write \"key=value;key2=value2\""),
                );
                Vec::new()
            }
        },
        Some(_) => {
            r.bad(
                "instanceTags",
                "must be a string \"key=value;key2=value2\"".into(),
            );
            Vec::new()
        }
    };
    let max_price = r.present("maxSpotPrice").cloned().and_then(|v| {
        match number_text(&v).filter(|t| t.parse::<f64>().is_ok_and(|p| p > 0.0)) {
            Some(text) => Some(text),
            None => {
                r.bad("maxSpotPrice", format!("must be a positive price, got {v}"));
                None
            }
        }
    });
    let root_volume = RootVolume {
        size_gib: r.whole("rootDeviceVolumeSize", 1, 16_384),
        volume_type: r.named::<VolumeType>("volumeType"),
        iops: r.whole("iops", 100, 64_000),
    };
    let fleet = FleetOptions {
        fleet_type,
        fleet_role: r.text("fleetRole"),
        request_expiry_minutes: r.number("spotFleetRequestExpiry", 1.0, 525_600.0),
        percent_on_demand: r.number("percentOnDemand", 0.0, 100.0).unwrap_or(0.0),
        pools_count: r.whole("poolsCount", 1, 1000),
        allocation_strategy: r.named::<AllocationStrategy>("allocationStrategy"),
        on_demand_allocation: r.named::<OnDemandAllocation>("allocationStrategyOnDemand"),
        priorities,
    };
    let launch_template_id = r.text("launchTemplateId");
    let launch_template_version = launch_template_version(&mut r, launch_template_id.is_some());
    let placement = placement(&mut r);
    let network_interfaces = network_interfaces(&mut r);
    let capacity_block = capacity_block(&mut r, provisioning_api, price_type, &placement);
    let spec = LaunchSpec {
        template_id,
        provisioning_api,
        instance_types,
        weighted,
        price_type,
        max_price,
        image,
        subnets,
        security_groups,
        key_name: r.text("keyName"),
        tags,
        user_data_path: r.text("userDataScript"),
        instance_profile: r.text("instanceProfile"),
        root_volume,
        launch_template_version,
        placement,
        network_interfaces,
        capacity_block,
        launch_template_id,
        fleet,
    };
    if r.problems.is_empty() {
        Ok(spec)
    } else {
        Err(r.problems)
    }
}

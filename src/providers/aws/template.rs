//! The HostFactory template (`awsprov_templates.json`, camelCase keys) as this provider reads it.
//! Keys it does not use (attributes, maxNumber's meaning for HostFactory, ...) are the
//! HostFactory layer's business and are ignored here; keys it uses are type-checked.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::AwsConfig;
use crate::domain::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderApi {
    RunInstances,
    Ec2Fleet,
    SpotFleet,
    Asg,
}

impl ProviderApi {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderApi::RunInstances => "RunInstances",
            ProviderApi::Ec2Fleet => "EC2Fleet",
            ProviderApi::SpotFleet => "SpotFleet",
            ProviderApi::Asg => "ASG",
        }
    }

    /// The template's spelling, plus the aliases the reference plugins accept.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "runinstances" => Some(ProviderApi::RunInstances),
            "ec2fleet" => Some(ProviderApi::Ec2Fleet),
            "spotfleet" => Some(ProviderApi::SpotFleet),
            "asg" | "autoscalinggroup" => Some(ProviderApi::Asg),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetType {
    Instant,
    Request,
    Maintain,
}

/// One template, resolved against the strategy's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsTemplate {
    pub template_id: String,
    pub provider_api: ProviderApi,
    pub fleet_type: FleetType,
    pub spot: bool,
    pub image_id: Option<String>,
    pub subnet_ids: Vec<String>,
    /// Instance type → weight, in the template's order (`vmType` is weight 1).
    pub vm_types: Vec<(String, f64)>,
    pub vm_types_priority: BTreeMap<String, f64>,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub instance_tags: Vec<(String, String)>,
    pub instance_profile: Option<String>,
    pub root_device_volume_size: Option<i32>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub user_data_script: Option<String>,
    pub launch_template_id: Option<String>,
    pub fleet_role: Option<String>,
    pub max_spot_price: Option<String>,
    pub spot_fleet_request_expiry_minutes: f64,
    pub allocation_strategy: Option<String>,
    pub allocation_strategy_on_demand: Option<String>,
    pub percent_on_demand: f64,
    pub pools_count: Option<i32>,
    pub max_number: Option<i64>,
}

struct Reader<'a> {
    t: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl Reader<'_> {
    fn text(&mut self, key: &str) -> Option<String> {
        match self.t.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.errors.push(format!("template.{key} must be a string"));
                None
            }
        }
    }

    /// A number, also written as a string (`"25"`), as the reference files do.
    fn number(&mut self, key: &str) -> Option<f64> {
        let n = match self.t.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        if n.is_none() {
            self.errors.push(format!("template.{key} must be a number"));
        }
        n
    }

    /// A list of strings: a JSON array, or one string with commas.
    fn list(&mut self, key: &str) -> Vec<String> {
        match self.t.get(key) {
            None | Some(Value::Null) => Vec::new(),
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
                self.errors.push(format!(
                    "template.{key} must be a string or a list of strings"
                ));
                Vec::new()
            }
        }
    }

    /// `{"type": number}`.
    fn weights(&mut self, key: &str) -> Vec<(String, f64)> {
        match self.t.get(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match v
                        .as_f64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    {
                        Some(w) if w > 0.0 => out.push((k.clone(), w)),
                        _ => self
                            .errors
                            .push(format!("template.{key}.{k} must be a positive number")),
                    }
                }
                out
            }
            Some(_) => {
                self.errors.push(format!(
                    "template.{key} must be an object of instance type to number"
                ));
                Vec::new()
            }
        }
    }
}

/// `"k=v;k2=v2"` as IBM writes instance tags.
fn parse_tags(s: &str, errors: &mut Vec<String>) -> Vec<(String, String)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .filter_map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Some((k.trim().into(), v.trim().into())),
            _ => {
                errors.push(format!(
                    "template.instanceTags: '{pair}' is not key=value (pairs are separated by ';')"
                ));
                None
            }
        })
        .collect()
}

impl AwsTemplate {
    /// Reads `template`, with the strategy's image, subnets and security groups where the
    /// template has none. Every problem is named in one Validation error.
    pub fn parse(template: &Map<String, Value>, cfg: &AwsConfig) -> Result<Self, ProviderError> {
        let mut r = Reader {
            t: template,
            errors: Vec::new(),
        };
        let template_id = r
            .text("templateId")
            .or_else(|| r.text("template_id"))
            .unwrap_or_default();
        if template_id.is_empty() {
            r.errors.push("template.templateId is required".into());
        } else if template_id.len() > 64
            || !template_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            r.errors
                .push("template.templateId must be 1 to 64 characters of [0-9A-Za-z_-]".into());
        }
        let provider_api = match r.text("providerApi") {
            None => ProviderApi::Ec2Fleet,
            Some(s) => ProviderApi::parse(&s).unwrap_or_else(|| {
                r.errors.push(format!(
                    "template.providerApi '{s}' is not one of RunInstances, EC2Fleet, SpotFleet, ASG"
                ));
                ProviderApi::Ec2Fleet
            }),
        };
        let fleet_type = match r.text("fleetType").map(|s| s.to_ascii_lowercase()) {
            None => match provider_api {
                ProviderApi::Ec2Fleet => FleetType::Instant,
                _ => FleetType::Request,
            },
            Some(s) if s == "instant" && provider_api == ProviderApi::Ec2Fleet => {
                FleetType::Instant
            }
            Some(s) if s == "request" => FleetType::Request,
            Some(s) if s == "maintain" => FleetType::Maintain,
            Some(s) => {
                r.errors.push(format!(
                    "template.fleetType '{s}' is not valid for {}",
                    provider_api.as_str()
                ));
                FleetType::Request
            }
        };
        let spot = match r.text("priceType").as_deref() {
            None | Some("ondemand") => false,
            Some("spot") | Some("heterogeneous") => true,
            Some(other) => {
                r.errors.push(format!(
                    "template.priceType '{other}' is not one of ondemand, spot, heterogeneous"
                ));
                false
            }
        };
        let mut vm_types = r.weights("vmTypes");
        if let Some(t) = r.text("vmType")
            && !vm_types.iter().any(|(name, _)| name == &t)
        {
            vm_types.insert(0, (t, 1.0));
        }
        if vm_types.is_empty() {
            r.errors
                .push("template.vmType or template.vmTypes is required".into());
        }
        let vm_types_priority = r.weights("vmTypesPriority").into_iter().collect();
        let image_id = r.text("imageId").or_else(|| cfg.image_id.clone());
        let launch_template_id = r.text("launchTemplateId");
        if image_id.is_none() && launch_template_id.is_none() {
            r.errors.push(
                "template.imageId is required (or launchTemplateId, or the strategy's image_id)"
                    .into(),
            );
        }
        let mut subnet_ids = r.list("subnetId");
        subnet_ids.extend(r.list("subnetIds"));
        if subnet_ids.is_empty() {
            subnet_ids = cfg.subnet_ids.clone();
        }
        let mut security_group_ids = r.list("securityGroupIds");
        if security_group_ids.is_empty() {
            security_group_ids = cfg.security_group_ids.clone();
        }
        let instance_tags = match r.text("instanceTags") {
            Some(s) => parse_tags(&s, &mut r.errors),
            None => Vec::new(),
        };
        let percent_on_demand = r.number("percentOnDemand").unwrap_or(0.0);
        if !(0.0..=100.0).contains(&percent_on_demand) {
            r.errors
                .push("template.percentOnDemand must be from 0 to 100".into());
        }
        let fleet_role = r.text("fleetRole");
        if provider_api == ProviderApi::SpotFleet && fleet_role.is_none() {
            r.errors
                .push("template.fleetRole is required for providerApi SpotFleet".into());
        }
        let expiry = r.number("spotFleetRequestExpiry").unwrap_or(30.0);
        if !(expiry.is_finite() && expiry > 0.0) {
            r.errors.push(
                "template.spotFleetRequestExpiry must be a positive number of minutes".into(),
            );
        }
        let max_spot_price = match template.get("maxSpotPrice") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => Some(s.trim().into()),
            Some(_) => {
                r.errors
                    .push("template.maxSpotPrice must be a number".into());
                None
            }
        };
        let int = |r: &mut Reader, key: &str, lo: f64, hi: f64| -> Option<i32> {
            let n = r.number(key)?;
            if n.fract() != 0.0 || n < lo || n > hi {
                r.errors.push(format!(
                    "template.{key} must be an integer from {lo} to {hi}"
                ));
                return None;
            }
            Some(n as i32)
        };
        let root_device_volume_size = int(&mut r, "rootDeviceVolumeSize", 1.0, 16384.0);
        let iops = int(&mut r, "iops", 100.0, 64000.0);
        let pools_count = int(&mut r, "poolsCount", 1.0, 1000.0);
        let max_number = r.number("maxNumber").map(|n| n as i64);
        let parsed = AwsTemplate {
            template_id,
            provider_api,
            fleet_type,
            spot,
            image_id,
            subnet_ids,
            vm_types,
            vm_types_priority,
            security_group_ids,
            key_name: r.text("keyName"),
            instance_tags,
            instance_profile: r.text("instanceProfile"),
            root_device_volume_size,
            volume_type: r.text("volumeType"),
            iops,
            user_data_script: r.text("userDataScript"),
            launch_template_id,
            fleet_role,
            max_spot_price,
            spot_fleet_request_expiry_minutes: expiry,
            allocation_strategy: r.text("allocationStrategy"),
            allocation_strategy_on_demand: r.text("allocationStrategyOnDemand"),
            percent_on_demand,
            pools_count,
            max_number,
        };
        if r.errors.is_empty() {
            Ok(parsed)
        } else {
            Err(ProviderError::new(
                crate::domain::ProviderErrorKind::Validation,
                "INVALID_TEMPLATE",
                r.errors.join("; "),
            ))
        }
    }

    /// `userDataScript` is a path; its content goes to the instances base64-encoded.
    pub fn user_data(&self) -> Result<Option<String>, ProviderError> {
        let Some(path) = &self.user_data_script else {
            return Ok(None);
        };
        let script = std::fs::read(path).map_err(|e| {
            ProviderError::new(
                crate::domain::ProviderErrorKind::Validation,
                "INVALID_TEMPLATE",
                format!("template.userDataScript '{path}' cannot be read: {e}"),
            )
        })?;
        Ok(Some(aws_smithy_types::base64::encode(script)))
    }

    /// The first (or only) instance type.
    pub fn primary_vm_type(&self) -> &str {
        &self.vm_types[0].0
    }

    /// Weight of an instance type in this template (1 when it is not listed).
    pub fn weight_of(&self, instance_type: &str) -> f64 {
        self.vm_types
            .iter()
            .find(|(t, _)| t == instance_type)
            .map_or(1.0, |(_, w)| *w)
    }

    /// How many of `count` units go on demand (`percentOnDemand`, rounded up).
    pub fn on_demand_units(&self, count: i32) -> i32 {
        if !self.spot {
            return count;
        }
        ((count as f64) * self.percent_on_demand / 100.0).ceil() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> AwsConfig {
        AwsConfig::from_spec(json!({"region": "us-east-1"}).as_object().unwrap()).unwrap()
    }

    #[test]
    fn the_shipped_template_shapes_parse() {
        let file: Value = serde_json::from_str(include_str!(
            "../../../tests/api/support/awsprov_templates.json"
        ))
        .unwrap();
        for t in file["templates"].as_array().unwrap() {
            let parsed = AwsTemplate::parse(t.as_object().unwrap(), &cfg())
                .unwrap_or_else(|e| panic!("{}: {e}", t["templateId"]));
            assert!(!parsed.vm_types.is_empty());
        }
        let fleet = file["templates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["templateId"] == "Fleet-Instant")
            .unwrap();
        let fleet = AwsTemplate::parse(fleet.as_object().unwrap(), &cfg()).unwrap();
        assert_eq!(fleet.weight_of("t3.small"), 2.0);
        assert_eq!(fleet.on_demand_units(4), 1);
        let split = json!({"templateId": "t", "imageId": "ami-1", "vmType": "t3.micro",
                           "subnetId": "subnet-a, subnet-b", "securityGroupIds": ["sg-1"]});
        let split = AwsTemplate::parse(split.as_object().unwrap(), &cfg()).unwrap();
        assert_eq!(split.subnet_ids, ["subnet-a", "subnet-b"]);
    }

    #[test]
    fn every_problem_is_named() {
        let err = AwsTemplate::parse(
            json!({"templateId": "bad id!", "providerApi": "Lambda", "priceType": "cheap",
                   "percentOnDemand": 120, "instanceTags": "novalue"})
            .as_object()
            .unwrap(),
            &cfg(),
        )
        .unwrap_err();
        for needle in [
            "templateId",
            "providerApi",
            "priceType",
            "vmType",
            "imageId",
            "percentOnDemand",
            "instanceTags",
        ] {
            assert!(err.message.contains(needle), "{needle}: {}", err.message);
        }
    }
}

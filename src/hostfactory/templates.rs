//! HostFactory templates (`awsprov_templates.json`): parsing, validation with messages that
//! name the template and the field, and the attributes in HostFactory's typed-array form.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

/// One template as the admin wrote it, with the fields the service acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub id: String,
    /// -1 unlimited, 0 disabled.
    pub max_number: i64,
    /// A strategy name; otherwise the strategy layer chooses.
    pub provider_name: Option<String>,
    /// RunInstances, EC2Fleet, SpotFleet or ASG, when the template says.
    pub provider_api: Option<String>,
    pub price_type: String,
    pub vm_type: Option<String>,
    /// `(name, [type, value])` in file order, values as strings.
    pub attributes: Vec<(String, [String; 2])>,
    /// The object as written, handed to providers and passed back to HostFactory.
    pub raw: Map<String, Value>,
}

const PROVIDER_APIS: [(&str, &str); 6] = [
    ("runinstances", "RunInstances"),
    ("ec2fleet", "EC2Fleet"),
    ("spotfleet", "SpotFleet"),
    ("asg", "ASG"),
    ("autoscalinggroup", "ASG"),
    ("autoscaling", "ASG"),
];

fn is_template_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A number or a numeric string as HostFactory's attribute text ("4096", "0.5").
fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if s.trim().parse::<f64>().is_ok() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// One attribute in typed form: `["Numeric","4096"]` stays, `4096` and `["4096"]` become
/// `["Numeric","4096"]`, `"X86_64"` becomes `["String","X86_64"]`.
fn typed_attribute(name: &str, v: &Value) -> Result<[String; 2], String> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            let kind = items[0]
                .as_str()
                .ok_or("the type (first item) must be a string")?;
            let value = match &items[1] {
                Value::String(s) => s.clone(),
                other => number_text(other)
                    .ok_or("the value (second item) must be a string or number")?,
            };
            match kind {
                "Numeric" if value.trim().parse::<f64>().is_err() => {
                    Err(format!("'{value}' is not numeric"))
                }
                "Numeric" | "String" => Ok([kind.to_string(), value]),
                other => Err(format!(
                    "type '{other}' is neither \"String\" nor \"Numeric\""
                )),
            }
        }
        Value::Array(items) if items.len() == 1 => typed_attribute(name, &items[0]),
        Value::Number(_) => Ok(["Numeric".into(), number_text(v).expect("a number")]),
        Value::String(s) if name != "type" && s.trim().parse::<f64>().is_ok() => {
            Ok(["Numeric".into(), s.trim().to_string()])
        }
        Value::String(s) => Ok(["String".into(), s.clone()]),
        _ => Err("must be [\"String\"|\"Numeric\", \"value\"], a number or a string".into()),
    }
}

/// Capacity units of one machine. HostFactory counts weighted templates (`vmTypes`) in units:
/// a machine weighs what its instance type weighs there; otherwise every machine is 1.
pub fn units_of(template: Option<&Value>, instance_type: Option<&str>) -> i64 {
    template
        .and_then(|t| t.get("vmTypes"))
        .and_then(|types| types.get(instance_type?))
        .and_then(Value::as_i64)
        .filter(|w| *w > 0)
        .unwrap_or(1)
}

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

/// Checks one template object; every problem as "field: message".
fn check(raw: &Map<String, Value>) -> Result<Template, Vec<String>> {
    let mut errors = Vec::new();
    let mut bad = |field: &str, msg: String| errors.push(format!("{field}: {msg}"));
    let id = match raw.get("templateId") {
        Some(Value::String(s)) if is_template_id(s) => s.clone(),
        Some(Value::String(s)) => {
            bad(
                "templateId",
                format!("'{s}' must be 1-64 characters of letters, digits, '_' or '-'"),
            );
            s.clone()
        }
        Some(_) => {
            bad("templateId", "must be a string".into());
            String::new()
        }
        None => {
            bad("templateId", "is required".into());
            String::new()
        }
    };
    let max_number = match raw.get("maxNumber") {
        Some(v) => match v.as_i64() {
            Some(n) if (-1..=10_000).contains(&n) => n,
            _ => {
                bad(
                    "maxNumber",
                    format!("must be an integer from -1 (unlimited) to 10000, got {v}"),
                );
                0
            }
        },
        None => {
            bad(
                "maxNumber",
                "is required (-1 for unlimited, 0 to disable)".into(),
            );
            0
        }
    };
    let mut attributes = Vec::new();
    match raw.get("attributes") {
        Some(Value::Object(attrs)) => {
            for (name, v) in attrs {
                match typed_attribute(name, v) {
                    Ok(t) => attributes.push((name.clone(), t)),
                    Err(m) => bad(&format!("attributes.{name}"), m),
                }
            }
            for required in ["type", "ncpus", "nram"] {
                if !attrs.contains_key(required) {
                    bad(&format!("attributes.{required}"), "is required".into());
                }
            }
            for numeric in ["ncpus", "nram", "ncores"] {
                if let Some((_, [kind, value])) = attributes.iter().find(|(n, _)| n == numeric)
                    && (kind != "Numeric" || value.parse::<f64>().map_or(true, |n| n <= 0.0))
                {
                    bad(
                        &format!("attributes.{numeric}"),
                        format!("must be a positive number, got '{value}'"),
                    );
                }
            }
        }
        Some(_) => bad("attributes", "must be an object".into()),
        None => bad("attributes", "is required (type, ncpus, nram)".into()),
    }
    let price_type = match raw.get("priceType") {
        None => "ondemand".to_string(),
        Some(Value::String(p)) if ["ondemand", "spot", "heterogeneous"].contains(&p.as_str()) => {
            p.clone()
        }
        Some(v) => {
            bad(
                "priceType",
                format!("must be ondemand, spot or heterogeneous, got {v}"),
            );
            "ondemand".into()
        }
    };
    let provider_api = match raw.get("providerApi") {
        None => None,
        Some(Value::String(api)) => match PROVIDER_APIS
            .iter()
            .find(|(k, _)| *k == api.to_ascii_lowercase())
        {
            Some((_, canonical)) => Some(canonical.to_string()),
            None => {
                bad(
                    "providerApi",
                    format!("'{api}' is not one of RunInstances, EC2Fleet, SpotFleet, ASG"),
                );
                None
            }
        },
        Some(_) => {
            bad("providerApi", "must be a string".into());
            None
        }
    };
    let vm_type = raw
        .get("vmType")
        .and_then(Value::as_str)
        .map(str::to_string);
    if raw
        .get("vmType")
        .is_some_and(|v| v.as_str().is_none_or(str::is_empty))
    {
        bad("vmType", "must be a non-empty string".into());
    }
    match raw.get("vmTypes") {
        None => {}
        Some(Value::Object(types)) if !types.is_empty() => {
            for (t, w) in types {
                if w.as_u64().is_none_or(|w| w == 0) {
                    bad(
                        &format!("vmTypes.{t}"),
                        format!("the weight must be a positive integer, got {w}"),
                    );
                }
            }
        }
        Some(_) => bad(
            "vmTypes",
            "must be an object of instance type to positive weight".into(),
        ),
    }
    if vm_type.is_none() && raw.get("vmTypes").is_none() {
        bad(
            "vmType",
            "a vmType (or vmTypes with weights) is required".into(),
        );
    }
    if let Some(v) = raw.get("instanceTags") {
        match v.as_str().map(parse_instance_tags) {
            Some(Ok(_)) => {}
            Some(Err(m)) => bad(
                "instanceTags",
                format!("{m}; write \"key=value;key2=value2\""),
            ),
            None => bad(
                "instanceTags",
                "must be a string \"key=value;key2=value2\"".into(),
            ),
        }
    }
    match raw.get("subnetId") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => bad(
            "subnetId",
            "must be a string, a comma-separated string or a list of strings".into(),
        ),
    }
    if let Some(v) = raw.get("securityGroupIds")
        && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        bad("securityGroupIds", "must be a list of strings".into());
    }
    match raw.get("imageId") {
        None => {}
        Some(Value::String(id))
            if id.starts_with("ami-") || id.starts_with('/') || id.starts_with("resolve:ssm:") => {}
        Some(v) => bad(
            "imageId",
            format!("must be an AMI id (ami-…) or an SSM parameter path (/aws/service/…), got {v}"),
        ),
    }
    for field in [
        "keyName",
        "instanceProfile",
        "userDataScript",
        "launchTemplateId",
        "fleetRole",
    ] {
        if let Some(v) = raw.get(field)
            && v.as_str().is_none_or(|s| s.trim().is_empty())
        {
            bad(field, format!("must be a non-empty string, got {v}"));
        }
    }
    if let Some(v) = raw.get("maxSpotPrice")
        && !number_text(v)
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(|p| p > 0.0)
    {
        bad("maxSpotPrice", format!("must be a positive price, got {v}"));
    }
    for field in ["vmTypesOnDemand", "vmTypesPriority"] {
        match raw.get(field) {
            None => {}
            Some(Value::Object(types)) => {
                for (t, w) in types {
                    if w.as_u64().is_none() {
                        bad(
                            &format!("{field}.{t}"),
                            format!("must be a whole number, got {w}"),
                        );
                    }
                }
            }
            Some(_) => bad(field, "must be an object of instance type to number".into()),
        }
    }
    let ranges: [(&str, f64, f64); 5] = [
        ("percentOnDemand", 0.0, 100.0),
        ("rootDeviceVolumeSize", 1.0, 16384.0),
        ("iops", 100.0, 64000.0),
        ("spotFleetRequestExpiry", 1.0, 525_600.0),
        ("poolsCount", 1.0, 1000.0),
    ];
    for (field, lo, hi) in ranges {
        if let Some(v) = raw.get(field)
            && !v.as_f64().is_some_and(|n| (lo..=hi).contains(&n))
        {
            bad(
                field,
                format!("must be a number from {lo} to {hi}, got {v}"),
            );
        }
    }
    let enums: [(&str, &[&str]); 4] = [
        ("volumeType", &["gp2", "gp3", "io1", "io2", "standard"]),
        (
            "allocationStrategy",
            &[
                "capacityOptimized",
                "capacityOptimizedPrioritized",
                "diversified",
                "lowestPrice",
                "priceCapacityOptimized",
            ],
        ),
        (
            "allocationStrategyOnDemand",
            &["lowestPrice", "prioritized"],
        ),
        ("fleetType", &["instant", "request", "maintain"]),
    ];
    for (field, allowed) in enums {
        if let Some(v) = raw.get(field)
            && !v.as_str().is_some_and(|s| allowed.contains(&s))
        {
            bad(
                field,
                format!("must be one of {}, got {v}", allowed.join(", ")),
            );
        }
    }
    if provider_api.as_deref() == Some("SpotFleet")
        && !raw.get("fleetRole").is_some_and(Value::is_string)
    {
        bad(
            "fleetRole",
            "is required for SpotFleet templates (an IAM role ARN)".into(),
        );
    }
    let provider_name = match raw.get("providerName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            bad("providerName", "must be a strategy name".into());
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Template {
        id,
        max_number,
        provider_name,
        provider_api,
        price_type,
        vm_type,
        attributes,
        raw: raw.clone(),
    })
}

/// Parses a templates file: `{"templates": [...]}` or a bare array. Every problem is reported,
/// each naming the template and the field.
pub fn parse(text: &str) -> Result<Vec<Template>, Vec<String>> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        vec![format!(
            "not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        )]
    })?;
    let list = match &doc {
        Value::Array(items) => items,
        Value::Object(o) => match o.get("templates") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(vec![
                    "expected {\"templates\": [...]} or a list of templates".into(),
                ]);
            }
        },
        _ => {
            return Err(vec![
                "expected {\"templates\": [...]} or a list of templates".into(),
            ]);
        }
    };
    let mut errors = Vec::new();
    let mut templates: Vec<Template> = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            errors.push(format!("templates[{i}]: must be an object"));
            continue;
        };
        let label = match obj.get("templateId").and_then(Value::as_str) {
            Some(id) => format!("template '{id}' (templates[{i}])"),
            None => format!("templates[{i}]"),
        };
        match check(obj) {
            Ok(t) if templates.iter().any(|o| o.id == t.id) => {
                errors.push(format!(
                    "{label}: templateId: duplicate of an earlier template"
                ));
            }
            Ok(t) => templates.push(t),
            Err(problems) => errors.extend(problems.into_iter().map(|p| format!("{label}: {p}"))),
        }
    }
    if errors.is_empty() {
        Ok(templates)
    } else {
        Err(errors)
    }
}

impl Template {
    /// The attributes object in typed-array form.
    pub fn attributes_json(&self) -> Value {
        Value::Object(
            self.attributes
                .iter()
                .map(|(k, [t, v])| (k.clone(), json!([t, v])))
                .collect(),
        )
    }

    pub fn is_disabled(&self) -> bool {
        self.max_number == 0
    }
}

/// The templates file, re-read when it changes on disk (a broken edit keeps the last good set).
pub struct TemplateCatalog {
    path: Option<PathBuf>,
    cache: RwLock<(Option<SystemTime>, Arc<Vec<Template>>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl TemplateCatalog {
    /// Loads `path`; a file that exists but is invalid is an error naming every problem.
    pub fn load(path: Option<PathBuf>) -> Result<Self, String> {
        let (stamp, templates) = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read templates file {}: {e}", p.display()))?;
                let templates = parse(&text).map_err(|errs| {
                    format!(
                        "invalid templates file {}:\n  - {}",
                        p.display(),
                        errs.join("\n  - ")
                    )
                })?;
                (modified(p), templates)
            }
            None => (None, Vec::new()),
        };
        Ok(Self {
            path,
            cache: RwLock::new((stamp, Arc::new(templates))),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn all(&self) -> Arc<Vec<Template>> {
        if let Some(path) = &self.path {
            let now = modified(path);
            let stale = self.cache.read().expect("catalog lock").0 != now;
            if stale {
                match std::fs::read_to_string(path)
                    .map_err(|e| vec![e.to_string()])
                    .and_then(|t| parse(&t))
                {
                    Ok(templates) => {
                        tracing::info!(path = %path.display(), count = templates.len(), "templates reloaded");
                        *self.cache.write().expect("catalog lock") = (now, Arc::new(templates));
                    }
                    Err(errs) => {
                        tracing::error!(path = %path.display(), errors = %errs.join("; "), "templates file changed but is invalid; keeping the previous templates");
                        self.cache.write().expect("catalog lock").0 = now;
                    }
                }
            }
        }
        Arc::clone(&self.cache.read().expect("catalog lock").1)
    }

    pub fn get(&self, id: &str) -> Option<Template> {
        self.all().iter().find(|t| t.id == id).cloned()
    }
}

#[cfg(test)]
mod tests;

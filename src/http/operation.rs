//! executeProviderOperation's `parameters` object read into a typed [`Operation`], once, at
//! the edge. Every problem names its field (`parameters.count`); keys an operation does not
//! take are refused rather than ignored, so a typo is not silently dropped.

use serde_json::{Map, Value};

use crate::app::FieldError;
use crate::domain::{LaunchSpec, OperationType, PriceType, ProvisioningApi};
use crate::hostfactory::HostFactory;
use crate::hostfactory::templates::launch_spec;
use crate::providers::{
    CreateRequest, MachineRef, Operation, ResourceRef, StatusQuery, TerminateRequest,
};

/// Most capacity units one CREATE_INSTANCES may ask for.
pub const MAX_UNITS_PER_CREATE: u64 = 10_000;

struct Params<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Params<'a> {
    fn bad(&mut self, key: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(format!("parameters.{key}"), message));
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Refuses keys outside `allowed`.
    fn only(&mut self, op: OperationType, allowed: &[&str]) {
        let unknown: Vec<String> = self
            .map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            let takes = if allowed.is_empty() {
                "no parameters".to_string()
            } else {
                allowed.join(", ")
            };
            self.bad(
                &key,
                format!("{op} does not take this parameter (it takes {takes})"),
            );
        }
    }

    fn text(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => {
                self.bad(key, "must be a non-empty string");
                None
            }
        }
    }

    /// A list of non-empty strings, duplicates dropped.
    fn strings(&mut self, key: &str) -> Vec<String> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.bad(key, "must be a list of strings");
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str().filter(|s| !s.is_empty()) {
                Some(s) if !out.iter().any(|seen| seen == s) => out.push(s.to_string()),
                Some(_) => {}
                None => self.bad(&format!("{key}[{i}]"), "must be a non-empty string"),
            }
        }
        out
    }

    fn api(&mut self, key: &str, value: Option<&Value>) -> Option<ProvisioningApi> {
        match value.filter(|v| !v.is_null())? {
            Value::String(s) => match s.parse() {
                Ok(api) => Some(api),
                Err(message) => {
                    self.bad(key, message);
                    None
                }
            },
            _ => {
                self.bad(key, "must be a string");
                None
            }
        }
    }

    fn objects(&mut self, key: &str) -> Vec<(usize, &'a Map<String, Value>)> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.bad(key, "must be a list of objects");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.as_object() {
                Some(o) => out.push((i, o)),
                None => self.bad(&format!("{key}[{i}]"), "must be an object"),
            }
        }
        out
    }

    /// The launch spec: a whole template object, else a template of the templates file by
    /// id, else a spec that only names the template (providers that need more say so).
    /// `template_config` is the guide's name for the template object (its provider example
    /// reads `parameters['template_config']`).
    fn spec(&mut self, hostfactory: &HostFactory) -> LaunchSpec {
        let given = ["template", "template_config"]
            .into_iter()
            .find_map(|key| self.get(key).map(|v| (key, v)));
        if let Some((key, template)) = given {
            let Some(raw) = template.as_object() else {
                self.bad(key, "must be a template object");
                return LaunchSpec::default();
            };
            return match launch_spec(raw) {
                Ok(spec) => spec,
                Err(problems) => {
                    for (field, message) in problems {
                        self.bad(&format!("{key}.{field}"), message);
                    }
                    LaunchSpec::default()
                }
            };
        }
        match self.text("template_id") {
            Some(id) => match hostfactory.template(&id) {
                Ok(t) => t.launch,
                Err(_) => LaunchSpec::named(id),
            },
            None => LaunchSpec::default(),
        }
    }

    fn create(&mut self, hostfactory: &HostFactory) -> Option<Operation> {
        self.only(
            OperationType::CreateInstances,
            &[
                "count",
                "machine_count",
                "template",
                "template_config",
                "template_id",
                "request_id",
                "instance_type",
                "price_type",
                "tags",
            ],
        );
        let key = if self.map.contains_key("count") {
            "count"
        } else {
            "machine_count"
        };
        let units = match self.get(key).map(Value::as_u64) {
            Some(Some(n)) if (1..=MAX_UNITS_PER_CREATE).contains(&n) => Some(n as u32),
            Some(_) => {
                self.bad(
                    key,
                    format!("must be a whole number from 1 to {MAX_UNITS_PER_CREATE}"),
                );
                None
            }
            None => {
                self.bad(
                    "count",
                    "is required (the number of machines or capacity units)",
                );
                None
            }
        };
        let mut spec = self.spec(hostfactory);
        if let Some(t) = self.text("instance_type") {
            spec.narrow_to(&t);
        }
        if let Some(p) = self.get("price_type") {
            match p.as_str().map(str::parse::<PriceType>) {
                Some(Ok(p)) => spec.price_type = p,
                Some(Err(message)) => self.bad("price_type", message),
                None => self.bad("price_type", "must be a string"),
            }
        }
        let request_id = self.text("request_id");
        let mut tags = Vec::new();
        match self.get("tags") {
            None => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(v) => tags.push((k.clone(), v.to_string())),
                        None => self.bad(&format!("tags.{k}"), "must be a string"),
                    }
                }
            }
            Some(_) => self.bad("tags", "must be an object of strings"),
        }
        Some(Operation::Create(CreateRequest {
            spec,
            units: units?,
            request_id,
            tags,
        }))
    }

    fn status(&mut self) -> Option<Operation> {
        self.only(
            OperationType::GetInstanceStatus,
            &["instance_ids", "request_ids", "resources"],
        );
        let mut query = StatusQuery {
            instance_ids: self.strings("instance_ids"),
            request_ids: self.strings("request_ids"),
            resources: Vec::new(),
        };
        for (i, r) in self.objects("resources") {
            let at = format!("resources[{i}]");
            let id = r.get("resource_id").and_then(Value::as_str);
            let api = self.api(&format!("{at}.provider_api"), r.get("provider_api"));
            match (id, api) {
                (Some(id), Some(api)) if !id.is_empty() => query.resources.push(ResourceRef {
                    resource_id: id.to_string(),
                    provider_api: api,
                }),
                (None, _) | (Some(""), _) => {
                    self.bad(&format!("{at}.resource_id"), "must be a non-empty string")
                }
                _ => self.bad(&format!("{at}.provider_api"), "is required"),
            }
        }
        if query.is_empty() && self.errors.is_empty() {
            self.bad(
                "instance_ids",
                "instance_ids, request_ids or resources is required",
            );
        }
        Some(Operation::Status(query))
    }

    fn terminate(&mut self) -> Option<Operation> {
        self.only(
            OperationType::TerminateInstances,
            &["instance_ids", "machines", "simulate_reclaim"],
        );
        let mut machines: Vec<MachineRef> = Vec::new();
        for (i, m) in self.objects("machines") {
            let at = format!("machines[{i}]");
            let Some(id) = m
                .get("instance_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            else {
                self.bad(&format!("{at}.instance_id"), "must be a non-empty string");
                continue;
            };
            let resource_id = m
                .get("resource_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            let provider_api = self.api(&format!("{at}.provider_api"), m.get("provider_api"));
            if !machines.iter().any(|x| x.instance_id == id) {
                machines.push(MachineRef {
                    instance_id: id.to_string(),
                    resource_id,
                    provider_api,
                });
            }
        }
        for id in self.strings("instance_ids") {
            if !machines.iter().any(|m| m.instance_id == id) {
                machines.push(MachineRef::bare(id));
            }
        }
        let simulate_reclaim = match self.get("simulate_reclaim") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.bad("simulate_reclaim", "must be true or false");
                false
            }
        };
        if machines.is_empty() && self.errors.is_empty() {
            self.bad(
                "instance_ids",
                "is required (a non-empty list of instance ids)",
            );
        }
        Some(Operation::Terminate(TerminateRequest {
            machines,
            simulate_reclaim,
        }))
    }
}

/// Reads `parameters` for `op`; `Err` lists every bad field.
pub fn operation_from_parameters(
    op: OperationType,
    parameters: &Map<String, Value>,
    hostfactory: &HostFactory,
) -> Result<Operation, Vec<FieldError>> {
    let mut p = Params {
        map: parameters,
        errors: Vec::new(),
    };
    let operation = match op {
        OperationType::CreateInstances => p.create(hostfactory),
        OperationType::GetInstanceStatus => p.status(),
        OperationType::TerminateInstances => p.terminate(),
        OperationType::ValidateTemplate => {
            p.only(op, &["template", "template_config", "template_id"]);
            Some(Operation::Validate(p.spec(hostfactory)))
        }
        OperationType::GetAvailableTemplates => {
            p.only(op, &[]);
            Some(Operation::Templates)
        }
        OperationType::HealthCheck => {
            p.only(op, &[]);
            Some(Operation::Health)
        }
    };
    match operation {
        Some(operation) if p.errors.is_empty() => Ok(operation),
        _ => Err(p.errors),
    }
}

//! HostFactory's JSON, exactly: input parsing that accepts what HostFactory and the IBM spec
//! write (arrays or single objects, cJSON tabs), and the camelCase answers.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::status::{MachineResult, RequestStatus};

/// A rejected HostFactory call: the message goes back as `{"message": …}`.
pub type WireResult<T> = Result<T, String>;

fn parse_object(body: &[u8]) -> WireResult<serde_json::Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the input must be a JSON object".into()),
        Err(e) => Err(format!(
            "the input is not valid JSON (line {} column {}): {e}",
            e.line(),
            e.column()
        )),
    }
}

/// `key` as a list: an array, or one object standing for a list of one (IBM's spec text).
fn list_of<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> WireResult<Vec<&'a serde_json::Map<String, Value>>> {
    match obj.get(key) {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        None | Some(Value::Null) => Err(format!("'{key}' is required")),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_object()
                    .ok_or_else(|| format!("{key}[{i}] must be an object"))
            })
            .collect(),
        Some(Value::Object(one)) => Ok(vec![one]),
        Some(_) => Err(format!("'{key}' must be a list of objects")),
    }
}

fn text_field(
    obj: &serde_json::Map<String, Value>,
    key: &str,
    at: &str,
) -> WireResult<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) if s.contains('\0') => {
            Err(format!("{at}.{key} {}", crate::objects_only::NUL_MESSAGE))
        }
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(format!("{at}.{key} must be a string")),
    }
}

/// requestMachines: `{"template": {"templateId", "machineCount"}}`; the flat form is accepted too.
pub fn parse_request_machines(body: &[u8]) -> WireResult<(String, i64)> {
    let obj = parse_object(body)?;
    let (t, at) = match obj.get("template") {
        Some(Value::Object(t)) => (t, "template"),
        Some(_) => {
            return Err("'template' must be an object with templateId and machineCount".into());
        }
        None => (&obj, "input"),
    };
    let template_id =
        text_field(t, "templateId", at)?.ok_or_else(|| format!("{at}.templateId is required"))?;
    let count = match t.get("machineCount") {
        None | Some(Value::Null) => return Err(format!("{at}.machineCount is required")),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("{at}.machineCount must be a whole number, got {v}"))?,
    };
    Ok((template_id, count))
}

/// getRequestStatus: `{"requests": [{"requestId"}]}` or `{"requests": {"requestId"}}`.
pub fn parse_request_ids(body: &[u8]) -> WireResult<Vec<String>> {
    let obj = parse_object(body)?;
    list_of(&obj, "requests", true)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            text_field(r, "requestId", &format!("requests[{i}]"))?
                .ok_or_else(|| format!("requests[{i}].requestId is required"))
        })
        .collect()
}

/// A host as HostFactory names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: Option<String>,
    pub machine_id: Option<String>,
}

/// requestReturnMachines and getReturnRequests: `{"machines": [{"name", "machineId"}]}`.
/// Either key is enough to find a machine.
pub fn parse_hosts(body: &[u8], required: bool) -> WireResult<Vec<Host>> {
    let obj = parse_object(body)?;
    list_of(&obj, "machines", required)?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("machines[{i}]");
            let host = Host {
                name: text_field(m, "name", &at)?,
                machine_id: text_field(m, "machineId", &at)?,
            };
            if host.name.is_none() && host.machine_id.is_none() {
                return Err(format!("{at} needs a name or a machineId"));
            }
            Ok(host)
        })
        .collect()
}

/// Checks that the getAvailableTemplates input is a JSON object (usually `{}`).
pub fn parse_empty(body: &[u8]) -> WireResult<()> {
    parse_object(body).map(|_| ())
}

/// One machine in a getRequestStatus answer. Every key is always present.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireMachine {
    pub machine_id: String,
    /// The host name: private DNS name, else private IP, else the instance id.
    pub name: String,
    pub result: MachineResult,
    /// Cloud state: running, stopped, terminated, shutting-down, stopping, pending.
    pub status: String,
    pub private_ip_address: Option<String>,
    pub public_ip_address: Option<String>,
    /// Epoch seconds (UTC); 0 when not known yet.
    pub launchtime: i64,
    /// Empty unless there is something to say; never empty when `result` is `fail`.
    pub message: String,
    pub instance_type: Option<String>,
    pub price_type: Option<String>,
    pub cloud_host_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireRequest {
    pub request_id: String,
    pub status: RequestStatus,
    pub message: String,
    pub machines: Vec<WireMachine>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"requests": [{"requestId": "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713", "status": "complete",
    "message": "1 machine(s) ready.", "machines": [{"machineId": "i-0b7e3c91d5a2f4068",
    "name": "ip-10-20-3-41.eu-central-1.compute.internal", "result": "succeed", "status": "running",
    "privateIpAddress": "10.20.3.41", "publicIpAddress": null, "launchtime": 1795305690, "message": "",
    "instanceType": "c5.large", "priceType": "ondemand", "cloudHostId": null}]}]}))]
pub struct WireStatusAnswer {
    pub requests: Vec<WireRequest>,
}

/// requestMachines and requestReturnMachines answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"requestId": "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713",
    "message": "Request VM success from ohfp: 3 machine(s) of template OnDemand-C5Large."}))]
pub struct WireRequestId {
    pub request_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireReturn {
    /// The host name as HostFactory sent it.
    pub machine: String,
    /// Seconds until the host goes; 0 when it is already gone.
    pub grace_period: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"status": "complete", "message": "Instances marked for termination retrieved successfully.",
    "requests": [{"machine": "ip-10-20-9-77.eu-central-1.compute.internal", "gracePeriod": 0}]}))]
pub struct WireReturnsAnswer {
    pub status: String,
    pub message: String,
    pub requests: Vec<WireReturn>,
}

/// One template in a getAvailableTemplates answer: the admin's attributes in typed-array form
/// and the fields HostFactory shows, as written in the templates file.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireTemplate {
    pub template_id: String,
    /// -1 unlimited, 0 disabled.
    pub max_number: i64,
    /// How many more machines the template may get now; left out when unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_number: Option<i64>,
    #[schema(value_type = Object, example = json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "4096"]}))]
    pub attributes: Value,
    pub price_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub vm_types: Option<Value>,
    /// `key=value;key2=value2`, as in the templates file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_tags: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"message": "Get available templates success.", "templates": [{"templateId": "OnDemand-C5Large",
    "maxNumber": 10, "availableNumber": 10, "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"],
    "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]}, "priceType": "ondemand", "vmType": "c5.large",
    "instanceTags": "owner=gridops;costcenter=cc-4411"}]}))]
pub struct WireTemplatesAnswer {
    pub message: String,
    pub templates: Vec<WireTemplate>,
}

/// Any rejected call, and the shape of every failure HostFactory reads.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"message": "Template 'Spot-Template-VM-Retired' is not defined. Known templates: OnDemand-C5Large."}))]
pub struct WireMessage {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn request_machines_forms() {
        let tabbed = b"{\n\t\"template\":\t{\n\t\t\"templateId\":\t\"OnDemand-C5Large\",\n\t\t\"machineCount\":\t3\n\t}\n}";
        assert_eq!(
            parse_request_machines(tabbed).unwrap(),
            ("OnDemand-C5Large".into(), 3)
        );
        assert_eq!(
            parse_request_machines(br#"{"templateId": "t", "machineCount": 2}"#).unwrap(),
            ("t".into(), 2)
        );
        assert_eq!(
            parse_request_machines(br#"{"template": {"templateId": "t", "machineCount": 2.0}}"#)
                .unwrap()
                .1,
            2
        );
        assert!(
            parse_request_machines(br#"{"template": {"templateId": "t"}}"#)
                .unwrap_err()
                .contains("machineCount is required")
        );
        assert!(
            parse_request_machines(br#"{"template": {"templateId": "t", "machineCount": "3"}}"#)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            parse_request_machines(br#"{"template": {"machineCount": 1}}"#)
                .unwrap_err()
                .contains("templateId is required")
        );
        assert!(parse_request_machines(b"[1]").is_err());
        assert!(
            parse_request_machines(b"{")
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn requests_and_machines_as_array_or_object() {
        assert_eq!(
            parse_request_ids(br#"{"requests": [{"requestId": "a"}, {"requestId": "b"}]}"#)
                .unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            parse_request_ids(br#"{"requests": {"requestId": "a"}}"#).unwrap(),
            ["a"]
        );
        assert!(
            parse_request_ids(br#"{"requests": [{}]}"#)
                .unwrap_err()
                .contains("requests[0].requestId")
        );
        assert!(parse_request_ids(b"{}").is_err());
        let hosts = parse_hosts(br#"{"machines": {"name": "h1"}}"#, true).unwrap();
        assert_eq!(
            hosts,
            [Host {
                name: Some("h1".into()),
                machine_id: None
            }]
        );
        assert!(parse_hosts(b"{}", false).unwrap().is_empty());
        assert!(
            parse_hosts(br#"{"machines": [{}]}"#, true)
                .unwrap_err()
                .contains("needs a name or a machineId")
        );
        assert!(parse_empty(b"{\n}").is_ok() && parse_empty(b"").is_ok());
    }

    proptest! {
        /// Whatever bytes arrive, parsing answers (never panics), and a valid request id list
        /// round-trips in both forms.
        #[test]
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_request_machines(&bytes);
            let _ = parse_request_ids(&bytes);
            let _ = parse_hosts(&bytes, true);
        }

        #[test]
        fn ids_round_trip(ids in prop::collection::vec("[a-z0-9-]{1,20}", 1..5), as_object in any::<bool>()) {
            let body = if as_object && ids.len() == 1 {
                serde_json::json!({"requests": {"requestId": ids[0]}})
            } else {
                serde_json::json!({"requests": ids.iter().map(|i| serde_json::json!({"requestId": i})).collect::<Vec<_>>()})
            };
            prop_assert_eq!(parse_request_ids(body.to_string().as_bytes()).unwrap(), ids);
        }
    }
}

/// What the OpenAPI document promises for the inputs of the five calls. The parsers above
/// read the bodies themselves (leniently, as HostFactory writes them); these types only
/// describe them.
pub mod inputs {
    use serde::Deserialize;
    use utoipa::ToSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};

    /// Not blank: the parsers trim what they read (Unicode white space, U+0085 too) and take
    /// a blank value for a missing one.
    const NOT_BLANK: &str = r"[^\s\u0085]";

    /// The template asked for and how many machines.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = HfTemplateAsk)]
    #[allow(dead_code)]
    pub struct TemplateAsk {
        /// A template of getAvailableTemplates.
        #[schema(pattern = r"[^\s\u0085]")]
        pub template_id: String,
        #[schema(minimum = 1, maximum = 10000)]
        pub machine_count: i64,
    }

    /// requestMachines (the same two keys at the top level are accepted too).
    #[derive(Deserialize, ToSchema)]
    #[schema(as = HfRequestMachinesInput)]
    #[allow(dead_code)]
    pub struct RequestMachinesInput {
        pub template: TemplateAsk,
    }

    /// One request asked about.
    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = HfRequestRef)]
    #[allow(dead_code)]
    pub struct RequestRef {
        #[schema(pattern = r"[^\s\u0085]")]
        pub request_id: String,
    }

    /// A list of requests, or a single one.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    #[schema(as = HfRequestRefs)]
    #[allow(dead_code)]
    pub enum RequestRefs {
        Many(Vec<RequestRef>),
        One(RequestRef),
    }

    /// getRequestStatus.
    #[derive(Deserialize, ToSchema)]
    #[schema(as = HfRequestStatusInput)]
    #[allow(dead_code)]
    pub struct RequestStatusInput {
        pub requests: RequestRefs,
    }

    /// A host as HostFactory names it: by `name`, `machineId` or both. Its schema, written
    /// out below, says "at least one of them" (`anyOf`), which the derive cannot.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    pub struct HostRef {
        pub name: Option<String>,
        pub machine_id: Option<String>,
    }

    impl utoipa::PartialSchema for HostRef {
        fn schema() -> RefOr<Schema> {
            let with = |required: &str| {
                let text = || {
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(NOT_BLANK))
                };
                ObjectBuilder::new()
                    .property("name", text())
                    .property("machineId", text())
                    .required(required)
            };
            AnyOfBuilder::new()
                .item(with("name"))
                .item(with("machineId"))
                .description(Some(
                    "A host as HostFactory names it: by `name`, `machineId` or both",
                ))
                .into()
        }
    }

    impl ToSchema for HostRef {
        fn name() -> std::borrow::Cow<'static, str> {
            "HfHost".into()
        }
    }

    /// requestReturnMachines.
    #[derive(Deserialize, ToSchema)]
    #[schema(as = HfHostsInput)]
    #[allow(dead_code)]
    pub struct HostsInput {
        pub machines: Vec<HostRef>,
    }

    /// getReturnRequests: the hosts HostFactory holds (none, or no body, is fine).
    #[derive(Deserialize, ToSchema)]
    #[schema(as = HfHeldHostsInput)]
    #[allow(dead_code)]
    pub struct HeldHostsInput {
        #[serde(default)]
        pub machines: Vec<HostRef>,
    }

    /// getAvailableTemplates: any object (usually `{}`), or no body.
    #[derive(Deserialize, ToSchema)]
    #[schema(as = HfTemplatesInput)]
    #[allow(dead_code)]
    pub struct TemplatesInput {}
}

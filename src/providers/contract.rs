//! The provider contract as typed values: what each operation takes and answers. JSON exists
//! only where an operation enters from outside (executeProviderOperation) and where an answer
//! leaves; in between, providers, composites, the engine and the HostFactory lifecycle pass
//! these types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{
    HealthState, LaunchSpec, Machine, OperationType, ProviderError, ProviderErrorKind,
    ProvisioningApi, SpecField,
};
use crate::strategy::CircuitState;

/// CREATE_INSTANCES: start instances of `spec` covering `units` capacity units (machines, or
/// weight units in a weighted spec; a fleet may place more than asked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateRequest {
    pub spec: LaunchSpec,
    pub units: u32,
    /// The HostFactory request the instances are for: tagged on each of them, and the
    /// idempotency key that finds them again after a restart.
    pub request_id: Option<String>,
    /// Tags besides the spec's and the service's own.
    pub tags: Vec<(String, String)>,
}

/// What CREATE_INSTANCES made. APIs that place instances later (request fleets, groups)
/// answer with a `resource_id` and no instances yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub instance_ids: Vec<String>,
    pub instances: Vec<Machine>,
    /// The fleet, group or reservation that holds them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_api: Option<ProvisioningApi>,
    /// Instances placed so far.
    pub count: usize,
    /// What the holding resource now aims at in all, this request included, when requests
    /// share it (an Auto Scaling group's desired capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_capacity: Option<u32>,
}

/// Where a machine came from, so that it is given back the same way (fleet capacity, group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceRef {
    pub resource_id: String,
    pub provider_api: ProvisioningApi,
}

/// GET_INSTANCE_STATUS: machines by id, by the request they were made for, and by the
/// resource holding them; the provider batches as its API allows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusQuery {
    #[serde(default)]
    pub instance_ids: Vec<String>,
    #[serde(default)]
    pub request_ids: Vec<String>,
    #[serde(default)]
    pub resources: Vec<ResourceRef>,
}

impl StatusQuery {
    pub fn is_empty(&self) -> bool {
        self.instance_ids.is_empty() && self.request_ids.is_empty() && self.resources.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    pub machines: Vec<Machine>,
    /// Asked-for instance ids the provider does not know.
    pub not_found: Vec<String>,
}

/// The cloud said it is taking a machine back, ahead of any status call (a provider's notice
/// queue). Applied to the machine as a status answer's `reclaim_notice` would be.
#[derive(Debug, Clone, PartialEq)]
pub struct ReclaimNotice {
    pub instance_id: String,
    /// Why, as `Machine::reclaim_notice` says it.
    pub notice: String,
    /// When the cloud takes it (epoch ms), when it says.
    pub deadline: Option<crate::domain::EpochMillis>,
}

/// One machine to give back and how it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MachineRef {
    pub instance_id: String,
    #[serde(default)]
    pub resource_id: Option<String>,
    #[serde(default)]
    pub provider_api: Option<ProvisioningApi>,
}

impl MachineRef {
    pub fn bare(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            resource_id: None,
            provider_api: None,
        }
    }
}

/// TERMINATE_INSTANCES.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TerminateRequest {
    pub machines: Vec<MachineRef>,
    /// Play a cloud reclaim instead of a return (simulators only; real clouds ignore it).
    #[serde(default)]
    pub simulate_reclaim: bool,
}

impl TerminateRequest {
    pub fn instance_ids(&self) -> Vec<String> {
        self.machines
            .iter()
            .map(|m| m.instance_id.clone())
            .collect()
    }
}

/// Machines that could not be given back while others were, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TerminateFailure {
    pub instance_ids: Vec<String>,
    pub error_code: String,
    pub error_message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TerminateReport {
    pub terminating: Vec<String>,
    pub already_terminating: Vec<String>,
    pub not_found: Vec<String>,
    /// `Err` is the answer when nothing could be given back; this lists partial failures, so
    /// that the caller retries only those.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<TerminateFailure>,
}

/// One problem a provider found with a launch spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SpecProblem {
    pub field: SpecField,
    pub message: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// VALIDATE_TEMPLATE's answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    pub errors: Vec<SpecProblem>,
}

impl ValidationReport {
    pub fn from_problems(errors: Vec<SpecProblem>) -> Self {
        Self {
            valid: errors.is_empty(),
            errors,
        }
    }

    /// An invalid spec as the error callers see: every problem, each naming its field.
    pub fn into_result(self) -> Result<Self, ProviderError> {
        if self.valid {
            return Ok(self);
        }
        let text: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        Err(ProviderError::new(
            ProviderErrorKind::Validation,
            "INVALID_TEMPLATE",
            text.join("; "),
        ))
    }
}

/// A template a provider offers of itself (simulators); clouds run the templates file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OfferedTemplate {
    pub template_id: String,
    pub instance_type: Option<String>,
    pub region: Option<String>,
}

/// GET_AVAILABLE_TEMPLATES' answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplatesReport {
    pub templates: Vec<OfferedTemplate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_apis: Vec<ProvisioningApi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Set by a fallback's graceful degradation: nothing could be asked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub degraded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A member of a composite strategy as its health answer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberHealth {
    pub strategy: String,
    pub usable: bool,
    pub registered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_state: Option<CircuitState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// HEALTH_CHECK's answer; an unhealthy provider answers `Err` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    /// Always true in an answer (an unhealthy provider fails the call); kept for readers of
    /// the reference's shape.
    pub is_healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub availability_zones: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_instances: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberHealth>,
}

impl HealthReport {
    pub fn healthy(status_message: impl Into<String>) -> Self {
        Self {
            is_healthy: true,
            status_message: Some(status_message.into()),
            region: None,
            availability_zones: Vec::new(),
            live_instances: None,
            capacity: None,
            members: Vec::new(),
        }
    }
}

/// One operation with its typed input.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Create(CreateRequest),
    Status(StatusQuery),
    Terminate(TerminateRequest),
    Validate(LaunchSpec),
    Templates,
    Health,
}

impl Operation {
    pub fn kind(&self) -> OperationType {
        match self {
            Operation::Create(_) => OperationType::CreateInstances,
            Operation::Status(_) => OperationType::GetInstanceStatus,
            Operation::Terminate(_) => OperationType::TerminateInstances,
            Operation::Validate(_) => OperationType::ValidateTemplate,
            Operation::Templates => OperationType::GetAvailableTemplates,
            Operation::Health => OperationType::HealthCheck,
        }
    }

    /// The key a hash-based balancer places this operation by: its request id, else its
    /// template.
    pub fn affinity_key(&self) -> Option<&str> {
        match self {
            Operation::Create(c) => c
                .request_id
                .as_deref()
                .or(Some(c.spec.template_id.as_str()).filter(|t| !t.is_empty())),
            Operation::Validate(spec) => Some(spec.template_id.as_str()).filter(|t| !t.is_empty()),
            _ => None,
        }
    }
}

/// One operation's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OperationOutput {
    Created(Created),
    Status(StatusReport),
    Terminated(TerminateReport),
    Validated(ValidationReport),
    Templates(TemplatesReport),
    Health(HealthReport),
}

fn mismatch(expected: &str, got: &OperationOutput) -> ProviderError {
    ProviderError::new(
        ProviderErrorKind::Internal,
        "UNEXPECTED_ANSWER",
        format!("expected {expected}, the provider answered {got:?}"),
    )
}

macro_rules! output_accessor {
    ($fn:ident, $variant:ident, $ty:ty, $what:literal) => {
        pub fn $fn(self) -> Result<$ty, ProviderError> {
            match self {
                OperationOutput::$variant(v) => Ok(v),
                other => Err(mismatch($what, &other)),
            }
        }
    };
}

impl OperationOutput {
    output_accessor!(into_created, Created, Created, "created instances");
    output_accessor!(into_status, Status, StatusReport, "a status report");
    output_accessor!(
        into_terminated,
        Terminated,
        TerminateReport,
        "a termination report"
    );
    output_accessor!(
        into_validated,
        Validated,
        ValidationReport,
        "a validation report"
    );
    output_accessor!(into_templates, Templates, TemplatesReport, "templates");
    output_accessor!(into_health, Health, HealthReport, "a health report");

    /// The answer as JSON, for the API edge.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({"error": format!("answer not serializable: {e}")}),
        )
    }
}

/// Ids in `a` that are not in `b`, in order, without repeats.
fn unseen(ids: impl IntoIterator<Item = String>, seen: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if !seen.contains(&id.as_str()) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

impl crate::strategy::composition::Merge for OperationOutput {
    /// MERGE_ALL over typed answers: lists joined in member order, counts added, the first
    /// member's value kept for single values. An id counts as not found only when no member
    /// knew it.
    fn merge(&mut self, other: &Self) {
        use OperationOutput as O;
        match (self, other) {
            (O::Created(a), O::Created(b)) => {
                a.instance_ids.extend(b.instance_ids.iter().cloned());
                a.instances.extend(b.instances.iter().cloned());
                a.count += b.count;
                a.resource_id = a.resource_id.take().or_else(|| b.resource_id.clone());
                a.provider_api = a.provider_api.or(b.provider_api);
                a.desired_capacity = a.desired_capacity.or(b.desired_capacity);
            }
            (O::Status(a), O::Status(b)) => {
                for m in &b.machines {
                    if !a.machines.iter().any(|x| x.instance_id == m.instance_id) {
                        a.machines.push(m.clone());
                    }
                }
                let known: Vec<&str> = a.machines.iter().map(|m| m.instance_id.as_str()).collect();
                a.not_found = unseen(
                    a.not_found.drain(..).chain(b.not_found.iter().cloned()),
                    &known,
                );
            }
            (O::Terminated(a), O::Terminated(b)) => {
                a.terminating.extend(b.terminating.iter().cloned());
                a.already_terminating
                    .extend(b.already_terminating.iter().cloned());
                a.failed.extend(b.failed.iter().cloned());
                let known: Vec<&str> = a
                    .terminating
                    .iter()
                    .chain(&a.already_terminating)
                    .map(String::as_str)
                    .collect();
                a.not_found = unseen(
                    a.not_found.drain(..).chain(b.not_found.iter().cloned()),
                    &known,
                );
            }
            (O::Validated(a), O::Validated(b)) => {
                a.valid &= b.valid;
                a.errors.extend(b.errors.iter().cloned());
            }
            (O::Templates(a), O::Templates(b)) => {
                a.templates.extend(b.templates.iter().cloned());
                for api in &b.provider_apis {
                    if !a.provider_apis.contains(api) {
                        a.provider_apis.push(*api);
                    }
                }
                a.region = a.region.take().or_else(|| b.region.clone());
                a.degraded |= b.degraded;
                a.message = a.message.take().or_else(|| b.message.clone());
            }
            (O::Health(a), O::Health(b)) => {
                a.members.extend(b.members.iter().cloned());
                a.live_instances = match (a.live_instances, b.live_instances) {
                    (Some(x), Some(y)) => Some(x + y),
                    (x, y) => x.or(y),
                };
            }
            // Members answer the operation they were given; answers of different kinds cannot
            // meet here. The earlier member's is kept.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MachineState;
    use crate::strategy::composition::Merge;

    fn machine(id: &str) -> Machine {
        Machine {
            instance_id: id.into(),
            state: MachineState::Running,
            private_ip: None,
            public_ip: None,
            private_dns: None,
            instance_type: None,
            launch_time: None,
            region: None,
            price_type: None,
            reclaim_notice: None,
            reclaim_deadline: None,
            request_id: None,
            resource_id: None,
            provider_api: None,
        }
    }

    #[test]
    fn merged_status_reports_call_an_id_missing_only_when_no_member_knew_it() {
        let mut a = OperationOutput::Status(StatusReport {
            machines: vec![machine("i-1")],
            not_found: vec!["i-2".into(), "i-3".into()],
        });
        let b = OperationOutput::Status(StatusReport {
            machines: vec![machine("i-2"), machine("i-1")],
            not_found: vec!["i-3".into()],
        });
        a.merge(&b);
        let OperationOutput::Status(r) = a else {
            unreachable!()
        };
        let ids: Vec<&str> = r.machines.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2"]);
        assert_eq!(r.not_found, ["i-3"]);
    }

    #[test]
    fn merged_creations_add_up_in_member_order() {
        let made = |ids: &[&str]| {
            OperationOutput::Created(Created {
                instance_ids: ids.iter().map(|s| s.to_string()).collect(),
                instances: ids.iter().map(|s| machine(s)).collect(),
                count: ids.len(),
                ..Created::default()
            })
        };
        let mut a = made(&["i-a"]);
        a.merge(&made(&["i-b", "i-c"]));
        let c = a.into_created().unwrap();
        assert_eq!(c.count, 3);
        assert_eq!(c.instance_ids, ["i-a", "i-b", "i-c"]);
        let wrong = OperationOutput::Templates(TemplatesReport::default());
        assert_eq!(
            wrong.into_created().unwrap_err().kind,
            ProviderErrorKind::Internal
        );
    }

    #[test]
    fn an_invalid_report_names_each_field_as_the_file_does() {
        let report = ValidationReport::from_problems(vec![
            SpecProblem {
                field: SpecField::Image,
                message: "ami-1 does not exist".into(),
            },
            SpecProblem {
                field: SpecField::InstanceTypes,
                message: "t9.mega is not offered".into(),
            },
        ]);
        let err = report.into_result().unwrap_err();
        assert_eq!(err.code, "INVALID_TEMPLATE");
        assert_eq!(
            err.message,
            format!(
                "{}: ami-1 does not exist; {}: t9.mega is not offered",
                SpecField::Image.file_key(),
                SpecField::InstanceTypes.file_key()
            )
        );
        assert!(
            ValidationReport::from_problems(vec![])
                .into_result()
                .is_ok()
        );
    }
}

//! The operator routes' shapes (snake_case) and the HostFactory answers built from templates.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use std::collections::BTreeMap;

use super::model::{RequestKind, RequestState};
use super::service::{HfResult, HostFactory, host_name};
use super::status::{MachineResult, RequestStatus};
use super::templates::Template;
use super::wire::{WireMachine, WireTemplate};
use crate::domain::now_millis;
use crate::store::HostFactoryRepo;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateView {
    pub template_id: String,
    pub max_number: i64,
    pub available_number: Option<i64>,
    pub disabled: bool,
    #[schema(value_type = Object)]
    pub attributes: Value,
    pub provider_name: Option<String>,
    pub provider_api: Option<String>,
    pub price_type: String,
    pub vm_type: Option<String>,
    /// The template as written in the templates file.
    #[schema(value_type = Object)]
    pub definition: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"templates": [{"template_id": "OnDemand-Standard", "max_number": 20, "available_number": 18,
    "disabled": false, "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]},
    "provider_name": null, "provider_api": "RunInstances", "price_type": "ondemand", "vm_type": "m5.large",
    "definition": {"templateId": "OnDemand-Standard", "maxNumber": 20}}], "count": 1,
    "source": "config/hostfactory/awsprov_templates.json"}))]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
    pub count: usize,
    /// The templates file, if any.
    pub source: Option<String>,
}

/// requestMachines for operators.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"template_id": "OnDemand-Standard", "machine_count": 2}))]
pub struct RequestMachinesCommand {
    pub template_id: String,
    /// 1 to 10000; a whole number, `3.0` too (JSON Schema's `integer` admits it, as
    /// requestMachines does).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "whole_number")]
    pub machine_count: i64,
}

/// A JSON number without a fraction, written `3` or `3.0`.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("must be a whole number, got {n}")))
}

/// requestReturnMachines for operators: instance ids or host names.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"machine_ids": ["i-0a1b2c3d4e5f60718", "ip-10-0-3-41.sim-east-1.compute.internal"]}))]
pub struct ReturnMachinesCommand {
    pub machine_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"request_id": "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713",
    "message": "Request VM success from ohfp: 2 machine(s) of template OnDemand-Standard."}))]
pub struct RequestAccepted {
    pub request_id: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachineView {
    pub machine_id: String,
    pub name: String,
    pub result: MachineResult,
    pub status: String,
    pub private_ip_address: Option<String>,
    pub public_ip_address: Option<String>,
    pub launch_time: i64,
    pub message: String,
    pub instance_type: Option<String>,
    pub price_type: Option<String>,
}

impl From<WireMachine> for MachineView {
    fn from(m: WireMachine) -> Self {
        Self {
            machine_id: m.machine_id,
            name: m.name,
            result: m.result,
            status: m.status,
            private_ip_address: m.private_ip_address,
            public_ip_address: m.public_ip_address,
            launch_time: m.launchtime,
            message: m.message,
            instance_type: m.instance_type,
            price_type: m.price_type,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"request_id": "ret-3a8c1e52-0f4d-4b7e-9a61-5c2d8e7f1b30", "status": "running",
    "message": "1 of 2 machine(s) terminated.", "machines": [{"machine_id": "i-0b7e3c91d5a2f4068",
    "name": "ip-10-20-3-41.eu-central-1.compute.internal", "result": "succeed", "status": "terminated",
    "private_ip_address": "10.20.3.41", "public_ip_address": null, "launch_time": 1795305690, "message": "",
    "instance_type": "c5.large", "price_type": "ondemand"}]}))]
pub struct RequestView {
    pub request_id: String,
    pub status: RequestStatus,
    pub message: String,
    pub machines: Vec<MachineView>,
}

/// A request HostFactory still sees `running`, in the status snapshot.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"request_id": "req-5b1f0c2e-7d3a-4e9b-a1c6-2f8e90d4b713", "kind": "acquire",
    "template_id": "OnDemand-C5Large", "state": "in_progress", "message": "1 of 2 machine(s) ready.",
    "machines": 2, "machines_by_state": {"pending": 1, "running": 1},
    "created_at": "2026-11-30T16:05:00.000Z"}))]
pub struct RequestInFlight {
    pub request_id: String,
    pub kind: RequestKind,
    /// Null for return requests.
    pub template_id: Option<String>,
    /// Where the lifecycle has it: `done` once every machine is known, while some still boot.
    pub state: RequestState,
    /// As getRequestStatus says it.
    pub message: String,
    /// The machines it holds (acquire) or returns (return).
    pub machines: u64,
    /// Those machines by cloud state (`pending`, `running`, `shutting-down`, …).
    pub machines_by_state: BTreeMap<String, u64>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReclaimView {
    pub machine_id: String,
    pub name: String,
    /// Seconds until the host goes; 0 when already gone.
    pub grace_period: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"requests": [{"machine_id": "i-07a3f9e2b8c41d650",
    "name": "ip-10-20-9-77.eu-central-1.compute.internal", "grace_period": 0,
    "reason": "terminated outside HostFactory"}]}))]
pub struct ReclaimList {
    pub requests: Vec<ReclaimView>,
}

impl HostFactory {
    pub async fn wire_templates(&self) -> HfResult<Vec<WireTemplate>> {
        let mut out = Vec::new();
        for t in self.templates().iter() {
            let raw = |k: &str| t.raw.get(k).cloned();
            out.push(WireTemplate {
                template_id: t.id.clone(),
                max_number: t.max_number,
                available_number: self.available(t).await?,
                attributes: t.attributes_json(),
                price_type: t.launch.price_type.as_str().to_string(),
                vm_type: raw("vmType").and_then(|v| v.as_str().map(str::to_string)),
                vm_types: raw("vmTypes"),
                instance_tags: raw("instanceTags").and_then(|v| v.as_str().map(str::to_string)),
            });
        }
        Ok(out)
    }

    pub async fn template_list(&self) -> HfResult<TemplateList> {
        let templates = self.templates();
        let mut views = Vec::with_capacity(templates.len());
        for t in templates.iter() {
            views.push(template_view(t, self.available(t).await?));
        }
        Ok(TemplateList {
            count: views.len(),
            templates: views,
            source: self.catalog.path().map(|p| p.display().to_string()),
        })
    }

    /// Every machine the cloud took back that HostFactory has not returned.
    pub async fn reclaim_list(&self) -> HfResult<ReclaimList> {
        let machines = self.store.hf_machines_not_returned().await?;
        let now = now_millis();
        Ok(ReclaimList {
            requests: machines
                .iter()
                .filter_map(|m| {
                    let at = m.reclaimed_at?;
                    Some(ReclaimView {
                        machine_id: m.machine_id.clone(),
                        name: host_name(m),
                        grace_period: self.grace_period(m, at, now),
                        reason: m.reclaim_notice.clone(),
                    })
                })
                .collect(),
        })
    }
}

fn template_view(t: &Template, available: Option<i64>) -> TemplateView {
    TemplateView {
        template_id: t.id.clone(),
        max_number: t.max_number,
        available_number: available,
        disabled: t.is_disabled(),
        attributes: t.attributes_json(),
        provider_name: t.provider_name.clone(),
        provider_api: t.launch.provisioning_api.map(|a| a.as_str().to_string()),
        price_type: t.launch.price_type.as_str().to_string(),
        vm_type: t
            .raw
            .get("vmType")
            .and_then(|v| v.as_str().map(str::to_string)),
        definition: t.raw.clone(),
    }
}

//! Plan mode: the request a creation would send, and the cloud's own DryRun check where the API
//! has one (RunInstances, CreateFleet). Nothing is launched and nothing is made: a launch
//! template or group the creation would make first is named in the notes instead. The request
//! is the one the SDK serialized, captured by an interceptor just before it would be signed
//! and sent, so the plan shows what AWS would get, not a description of it.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use serde_json::{Map, Value};

use super::AwsProvider;
use super::asg::GroupCall;
use super::create::LaunchOrder;
use super::ec2_fleet::create_fleet_call;
use super::launch_template::LaunchTemplateRef;
use super::pools::failover_order;
use super::spot_fleet::{request_config, valid_until};
use crate::domain::{ProviderError, ProviderErrorKind, ProvisioningApi, now_millis};
use crate::providers::{CreateRequest, DryRunCheck, LaunchPlan, PlannedPool};

/// Keeps the serialized body of the call it is attached to; with `stop`, fails the call there,
/// so that it is never sent (the APIs without a dry run).
#[derive(Debug, Clone, Default)]
struct Capture {
    body: Arc<Mutex<Option<String>>>,
    stop: bool,
}

/// The error `Capture` stops a call with.
const NOT_SENT: &str = "planned only: not sent";

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "ohfp-plan-capture"
    }

    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let body = context
            .request()
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        *self.body.lock().expect("capture lock") = body;
        if self.stop {
            return Err(NOT_SENT.into());
        }
        Ok(())
    }
}

impl Capture {
    fn stopping() -> Self {
        Self {
            stop: true,
            ..Self::default()
        }
    }

    /// The captured request as its parameters; an error when the SDK never serialized it.
    fn request(&self, action: &str) -> Result<Value, ProviderError> {
        let body = self.body.lock().expect("capture lock").clone();
        body.map(|b| query_parameters(&b)).ok_or_else(|| {
            ProviderError::new(
                ProviderErrorKind::Transient,
                "PLAN_NOT_SERIALIZED",
                format!("{action}: the SDK did not serialize the request"),
            )
        })
    }
}

/// `a=1&b=x%20y` as `{"a": "1", "b": "x y"}`, in the order sent (the AWS query protocol that
/// EC2 and Auto Scaling speak).
fn query_parameters(body: &str) -> Value {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let params: Map<String, Value> = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), Value::String(decode(v)))
        })
        .collect();
    Value::Object(params)
}

/// The cloud's answer to a DryRun call: `DryRunOperation` means it would succeed.
fn dry_run_answer<T, E: ProvideErrorMetadata, R>(answer: Result<T, SdkError<E, R>>) -> DryRunCheck {
    match answer {
        // A dry run that succeeded would have launched: EC2 never answers one so.
        Ok(_) => DryRunCheck {
            would_succeed: true,
            code: "OK".into(),
            message: "the cloud accepted the request".into(),
        },
        Err(e) => {
            let code = e.code().unwrap_or("NO_ANSWER").to_string();
            let message = e.message().map_or_else(|| e.to_string(), str::to_string);
            DryRunCheck {
                would_succeed: code == "DryRunOperation",
                code,
                message,
            }
        }
    }
}

/// Sends `call` with DryRun=true, its request captured: (action, request, the cloud's check).
macro_rules! dry_run {
    ($call:expr, $action:literal) => {{
        let capture = Capture::default();
        let answer = $call
            .dry_run(true)
            .customize()
            .interceptor(capture.clone())
            .send()
            .await;
        (
            $action,
            capture.request($action)?,
            Some(dry_run_answer(answer)),
        )
    }};
}

/// Serializes `call` and stops it before it is sent (an API without a dry run): its request.
macro_rules! not_sent {
    ($call:expr, $action:expr) => {{
        let capture = Capture::stopping();
        let _ = $call.customize().interceptor(capture.clone()).send().await;
        capture.request($action)?
    }};
}

impl AwsProvider {
    pub(super) async fn plan_launch(
        &self,
        req: &CreateRequest,
    ) -> Result<LaunchPlan, ProviderError> {
        let order = self.order(req)?;
        let t = &order.spec;
        let now = now_millis();
        let pools: Vec<PlannedPool> = failover_order(&t.spec)
            .into_iter()
            .map(|p| PlannedPool {
                parked: self.parking.is_parked(&p, now),
                instance_type: p.instance_type,
                subnet: p.subnet,
            })
            .collect();
        let mut notes = Vec::new();
        let (action, request, dry_run) = match t.api {
            ProvisioningApi::RunInstances => {
                let Some(first) = pools.iter().find(|p| !p.parked) else {
                    return Err(ProviderError::new(
                        ProviderErrorKind::Capacity,
                        "POOLS_PARKED",
                        "every pool of the template is parked after a capacity error",
                    ));
                };
                let pool = super::PoolKey {
                    instance_type: first.instance_type.clone(),
                    subnet: first.subnet.clone(),
                };
                dry_run!(
                    self.run_instances_call(&order, &pool).await?,
                    "RunInstances"
                )
            }
            ProvisioningApi::Ec2Fleet => {
                let (lt, exists) = self.planned_launch_template(&order, &mut notes).await?;
                let call = create_fleet_call(&self.clients.ec2, &order, &lt);
                if exists {
                    dry_run!(call, "CreateFleet")
                } else {
                    notes
                        .push("no dry run: the launch template it names does not exist yet".into());
                    ("CreateFleet", not_sent!(call, "CreateFleet"), None)
                }
            }
            ProvisioningApi::SpotFleet => {
                let (lt, _) = self.planned_launch_template(&order, &mut notes).await?;
                let call = self
                    .clients
                    .ec2
                    .request_spot_fleet()
                    .spot_fleet_request_config(request_config(&order, &lt, valid_until(&order)));
                (
                    "RequestSpotFleet",
                    not_sent!(call, "RequestSpotFleet"),
                    None,
                )
            }
            ProvisioningApi::Asg => {
                let (lt, _) = self.planned_launch_template(&order, &mut notes).await?;
                let change = self.group_change(&order, &lt).await?;
                let (action, would, request) = match change.call {
                    GroupCall::Create(call) => {
                        let action = "CreateAutoScalingGroup";
                        (action, "be made with", not_sent!(call, action))
                    }
                    GroupCall::Update(call) => {
                        let action = "UpdateAutoScalingGroup";
                        (action, "grow to", not_sent!(call, action))
                    }
                };
                notes.push(format!(
                    "the group {} would {would} desired capacity {}",
                    change.name, change.desired
                ));
                (action, request, None)
            }
        };
        Ok(LaunchPlan {
            provider_api: Some(t.api),
            instance_types: t
                .spec
                .instance_types
                .iter()
                .map(|w| w.instance_type.clone())
                .collect(),
            subnets: t.spec.subnets.clone(),
            pools,
            action: action.to_string(),
            request,
            dry_run,
            notes,
        })
    }

    /// The launch template a fleet or group of `order` would launch from, without making or
    /// changing one: the user's; ours at its latest version; or ours as it would be made (its
    /// name in place of the id), said in `notes`. `true` when it exists.
    async fn planned_launch_template(
        &self,
        order: &LaunchOrder,
        notes: &mut Vec<String>,
    ) -> Result<(LaunchTemplateRef, bool), ProviderError> {
        let t = &order.spec;
        if let Some(id) = &t.spec.launch_template_id {
            let lt = LaunchTemplateRef {
                id: id.clone(),
                version: t.launch_template_version().to_string(),
            };
            return Ok((lt, true));
        }
        let name = self.launch_template_name(&t.spec.template_id);
        match self.our_launch_template_id(&t.spec.template_id).await? {
            Some(id) => {
                notes.push(format!(
                    "a new version of the launch template {name} ({id}) would be made with this request's tags"
                ));
                let lt = LaunchTemplateRef {
                    id,
                    version: "$Latest".into(),
                };
                Ok((lt, true))
            }
            None => {
                notes.push(format!(
                    "the launch template {name} would be made first; its id stands as its name here"
                ));
                let lt = LaunchTemplateRef {
                    id: name,
                    version: "1".into(),
                };
                Ok((lt, false))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_bodies_read_as_parameters() {
        let v = query_parameters(
            "Action=RunInstances&TagSpecification.1.Tag.1.Value=a%20b%2Bc&DryRun=true&Empty=",
        );
        assert_eq!(
            v,
            serde_json::json!({
                "Action": "RunInstances",
                "TagSpecification.1.Tag.1.Value": "a b+c",
                "DryRun": "true",
                "Empty": "",
            })
        );
        assert_eq!(
            query_parameters("Bad=%zz&Cut=%4"),
            serde_json::json!({"Bad": "%zz", "Cut": "%4"})
        );
    }
}

//! The AWS provider: EC2 (RunInstances, EC2 Fleet, Spot Fleet) and Auto Scaling groups through
//! the AWS SDK, one set of clients per strategy.

mod asg;
mod checks;
mod client;
mod config;
mod create;
mod ec2_fleet;
mod errors;
mod launch_template;
mod run_instances;
mod spot_fleet;
mod status;
mod template;
mod terminate;

use async_trait::async_trait;
use aws_sdk_ec2::types::Tag;
use serde_json::{Map, Value, json};

pub use config::AwsConfig;

use super::Provider;
use crate::domain::{Capabilities, OperationType, ProviderError, ProviderOperation};
use client::AwsClients;

/// Tags ohfp puts on every instance (and on its fleets, groups and launch templates).
pub const TAG_REQUEST_ID: &str = "ohfp:request-id";
pub const TAG_TEMPLATE_ID: &str = "ohfp:template-id";
pub const TAG_PROVIDER_API: &str = "ohfp:provider-api";
/// Put on an instance just before ohfp terminates it, so that an instance terminated by anyone
/// else can be told apart (reported as reclaimed).
pub const TAG_RETURNED: &str = "ohfp:returned";

pub(crate) fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

pub struct AwsProvider {
    strategy: String,
    cfg: AwsConfig,
    clients: AwsClients,
    /// Serialises growing an Auto Scaling group (read desired, write desired + n).
    asg_lock: tokio::sync::Mutex<()>,
}

impl AwsProvider {
    pub async fn new(strategy: &str, cfg: AwsConfig) -> Self {
        let clients = AwsClients::new(&cfg).await;
        Self {
            strategy: strategy.to_string(),
            cfg,
            clients,
            asg_lock: tokio::sync::Mutex::new(()),
        }
    }
}

/// `parameters.template` as an object.
fn template_param(params: &Map<String, Value>) -> Result<&Map<String, Value>, ProviderError> {
    params
        .get("template")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ProviderError::validation(
                "parameters.template is required (the HostFactory template object)",
            )
        })
}

#[async_trait]
impl Provider for AwsProvider {
    fn capabilities(&self) -> Capabilities {
        let features = json!({
            "instances": true,
            "region": self.cfg.region,
            "provider_apis": ["RunInstances", "EC2Fleet", "SpotFleet", "ASG"],
            "spot": true,
        });
        let limitations = json!({
            "max_instance_ids_per_describe": status::DESCRIBE_BATCH,
        });
        Capabilities {
            provider_type: "aws".into(),
            supported_operations: OperationType::ALL.to_vec(),
            features: features.as_object().cloned().unwrap_or_default(),
            limitations: limitations.as_object().cloned().unwrap_or_default(),
            performance_metrics: None,
        }
    }

    async fn execute(&self, op: &ProviderOperation) -> Result<Value, ProviderError> {
        let p = &op.parameters;
        let result = match op.operation_type {
            OperationType::CreateInstances => self.create(p).await,
            OperationType::TerminateInstances => self.terminate(p).await,
            OperationType::GetInstanceStatus => self.status(p).await,
            OperationType::ValidateTemplate => self.validate_template(template_param(p)?).await,
            OperationType::GetAvailableTemplates => self.available_templates().await,
            OperationType::HealthCheck => self.health().await,
        };
        if let Err(e) = &result {
            tracing::debug!(strategy = %self.strategy, operation = %op.operation_type, kind = ?e.kind, code = %e.code, "aws operation failed");
        }
        result
    }
}

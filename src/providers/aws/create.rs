//! CREATE_INSTANCES: reads the request, then hands it to the template's `providerApi`.

use serde_json::{Map, Value};

use super::template::{AwsTemplate, ProviderApi};
use super::{AwsProvider, TAG_PROVIDER_API, TAG_REQUEST_ID, TAG_TEMPLATE_ID, template_param};
use crate::domain::ProviderError;

/// One request, read and checked.
pub struct CreateRequest {
    pub count: i32,
    pub template: AwsTemplate,
    pub request_id: Option<String>,
    /// Every tag the instances get: ours first, then the template's and the caller's.
    pub tags: Vec<(String, String)>,
}

impl AwsProvider {
    fn create_request(&self, params: &Map<String, Value>) -> Result<CreateRequest, ProviderError> {
        let count = params
            .get("count")
            .or_else(|| params.get("machine_count"))
            .and_then(Value::as_u64)
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                ProviderError::validation("parameters.count must be an integer from 1 to 10000")
            })? as i32;
        let mut template = AwsTemplate::parse(template_param(params)?, &self.cfg)?;
        // A caller may narrow the template to one instance type or price type.
        if let Some(t) = params.get("instance_type").and_then(Value::as_str) {
            let weight = template.weight_of(t);
            template.vm_types = vec![(t.to_string(), weight)];
        }
        match params.get("price_type").and_then(Value::as_str) {
            Some("spot") => template.spot = true,
            Some("ondemand") => template.spot = false,
            _ => {}
        }
        let request_id = match params.get("request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(ProviderError::validation(
                    "parameters.request_id must be a non-empty string",
                ));
            }
        };
        let mut tags = vec![
            (TAG_TEMPLATE_ID.to_string(), template.template_id.clone()),
            (
                TAG_PROVIDER_API.to_string(),
                template.provider_api.as_str().to_string(),
            ),
        ];
        if let Some(r) = &request_id {
            tags.insert(0, (TAG_REQUEST_ID.to_string(), r.clone()));
        }
        tags.extend(template.instance_tags.iter().cloned());
        match params.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(extra)) => {
                for (k, v) in extra {
                    let v = v.as_str().ok_or_else(|| {
                        ProviderError::validation(format!("parameters.tags.{k} must be a string"))
                    })?;
                    tags.push((k.clone(), v.to_string()));
                }
            }
            Some(_) => {
                return Err(ProviderError::validation(
                    "parameters.tags must be an object of strings",
                ));
            }
        }
        Ok(CreateRequest {
            count,
            template,
            request_id,
            tags,
        })
    }

    pub(super) async fn create(&self, params: &Map<String, Value>) -> Result<Value, ProviderError> {
        let req = self.create_request(params)?;
        tracing::info!(
            strategy = %self.strategy,
            template_id = %req.template.template_id,
            provider_api = req.template.provider_api.as_str(),
            count = req.count,
            request_id = req.request_id.as_deref().unwrap_or(""),
            "creating instances"
        );
        match req.template.provider_api {
            ProviderApi::RunInstances => self.run_instances(&req).await,
            ProviderApi::Ec2Fleet => self.create_ec2_fleet(&req).await,
            ProviderApi::SpotFleet => self.request_spot_fleet(&req).await,
            ProviderApi::Asg => self.grow_group(&req).await,
        }
    }
}

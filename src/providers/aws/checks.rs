//! VALIDATE_TEMPLATE, GET_AVAILABLE_TEMPLATES, HEALTH_CHECK, and the image look-ups they share
//! with CREATE_INSTANCES.

use serde_json::{Map, Value, json};

use super::AwsProvider;
use super::errors::classify;
use super::template::AwsTemplate;
use crate::domain::{ProviderError, ProviderErrorKind};

/// An SSM parameter path standing for an AMI id (`/aws/service/...`, or EC2's
/// `resolve:ssm:/...` spelling).
fn ssm_path(image: &str) -> Option<&str> {
    let path = image.strip_prefix("resolve:ssm:").unwrap_or(image);
    path.starts_with('/').then_some(path)
}

/// A failed look-up is a finding about the template when it says "no such thing", else a
/// failure of the call itself (throttling, auth, ...), which is passed on as is.
fn finding(
    e: ProviderError,
    what: String,
    findings: &mut Vec<String>,
) -> Result<(), ProviderError> {
    if e.kind == ProviderErrorKind::Validation {
        findings.push(format!("{what}: {}", e.message));
        Ok(())
    } else {
        Err(e)
    }
}

impl AwsProvider {
    /// The template's AMI id, read from SSM when it is a parameter path.
    pub(super) async fn resolve_image(&self, t: &AwsTemplate) -> Result<String, ProviderError> {
        let image = t
            .image_id
            .clone()
            .ok_or_else(|| ProviderError::validation("template.imageId is required"))?;
        let Some(path) = ssm_path(&image) else {
            return Ok(image);
        };
        let out = self
            .clients
            .ssm
            .get_parameter()
            .name(path)
            .send()
            .await
            .map_err(|e| classify("GetParameter", e))?;
        out.parameter
            .and_then(|p| p.value)
            .ok_or_else(|| ProviderError::validation(format!("SSM parameter {path} has no value")))
    }

    /// The root device name of the template's AMI, for `rootDeviceVolumeSize`.
    pub(super) async fn root_device_name(&self, t: &AwsTemplate) -> Result<String, ProviderError> {
        let image = self.resolve_image(t).await?;
        let out = self
            .clients
            .ec2
            .describe_images()
            .image_ids(&image)
            .send()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        out.images()
            .first()
            .and_then(|i| i.root_device_name())
            .map(str::to_string)
            .ok_or_else(|| {
                ProviderError::new(
                    ProviderErrorKind::Validation,
                    "InvalidAMIID.NotFound",
                    format!("image {image} not found in {}", self.cfg.region),
                )
            })
    }

    /// Checks every reference of the template against the region: the image (or its SSM
    /// path), the instance types, the subnets, the security groups, the launch template.
    pub(super) async fn validate_template(
        &self,
        template: &Map<String, Value>,
    ) -> Result<Value, ProviderError> {
        let t = AwsTemplate::parse(template, &self.cfg)?;
        let ec2 = &self.clients.ec2;
        let mut findings = Vec::new();
        if t.image_id.is_some() {
            match self.resolve_image(&t).await {
                Ok(image) => {
                    let found = ec2.describe_images().image_ids(&image).send().await;
                    match found.map_err(|e| classify("DescribeImages", e)) {
                        Ok(out) if out.images().is_empty() => {
                            findings.push(format!("imageId: {image} does not exist"))
                        }
                        Ok(_) => {}
                        Err(e) => finding(e, format!("imageId {image}"), &mut findings)?,
                    }
                }
                Err(e) => finding(e, "imageId".into(), &mut findings)?,
            }
        }
        let types: Vec<String> = t.vm_types.iter().map(|(vm, _)| vm.clone()).collect();
        let found = ec2
            .describe_instance_types()
            .set_instance_types(Some(types.iter().map(|s| s.as_str().into()).collect()))
            .send()
            .await;
        if let Err(e) = found {
            finding(
                classify("DescribeInstanceTypes", e),
                format!("vmTypes {}", types.join(", ")),
                &mut findings,
            )?;
        }
        if !t.subnet_ids.is_empty() {
            let found = ec2
                .describe_subnets()
                .set_subnet_ids(Some(t.subnet_ids.clone()))
                .send()
                .await;
            if let Err(e) = found {
                finding(
                    classify("DescribeSubnets", e),
                    "subnetId".into(),
                    &mut findings,
                )?;
            }
        }
        if !t.security_group_ids.is_empty() {
            let found = ec2
                .describe_security_groups()
                .set_group_ids(Some(t.security_group_ids.clone()))
                .send()
                .await;
            if let Err(e) = found {
                finding(
                    classify("DescribeSecurityGroups", e),
                    "securityGroupIds".into(),
                    &mut findings,
                )?;
            }
        }
        if let Some(id) = &t.launch_template_id {
            let found = ec2
                .describe_launch_templates()
                .launch_template_ids(id)
                .send()
                .await;
            if let Err(e) = found {
                finding(
                    classify("DescribeLaunchTemplates", e),
                    "launchTemplateId".into(),
                    &mut findings,
                )?;
            }
        }
        if findings.is_empty() {
            Ok(json!({"valid": true, "errors": [], "region": self.cfg.region}))
        } else {
            Err(ProviderError::new(
                ProviderErrorKind::Validation,
                "INVALID_TEMPLATE",
                findings.join("; "),
            ))
        }
    }

    /// Templates are HostFactory's (awsprov_templates.json); this provider has none of its own.
    pub(super) async fn available_templates(&self) -> Result<Value, ProviderError> {
        Ok(json!({
            "templates": [],
            "region": self.cfg.region,
            "provider_apis": ["RunInstances", "EC2Fleet", "SpotFleet", "ASG"],
            "message": "templates come from the HostFactory template file; any of them can run here",
        }))
    }

    /// One cheap real call; the SDK's operation timeout bounds it.
    pub(super) async fn health(&self) -> Result<Value, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| classify("DescribeAvailabilityZones", e))?;
        let zones: Vec<&str> = out
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name())
            .collect();
        Ok(json!({"is_healthy": true, "region": self.cfg.region, "availability_zones": zones}))
    }
}

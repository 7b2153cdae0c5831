//! VALIDATE_TEMPLATE and HEALTH_CHECK, and the image look-ups validation shares with
//! CREATE_INSTANCES.

use super::AwsProvider;
use super::errors::classify;
use super::spec::{ResolvedSpec, invalid};
use crate::domain::{LaunchSpec, ProviderError, ProviderErrorKind, SpecField};
use crate::providers::{HealthReport, SpecProblem, ValidationReport};

/// An SSM parameter path standing for an AMI id (`/aws/service/...`, or EC2's
/// `resolve:ssm:/...` spelling).
fn ssm_path(image: &str) -> Option<&str> {
    let path = image.strip_prefix("resolve:ssm:").unwrap_or(image);
    path.starts_with('/').then_some(path)
}

/// A failed look-up is a problem of the spec when it says "no such thing", else a failure of
/// the call itself (throttling, auth, ...), which is passed on as is.
fn finding(
    e: ProviderError,
    field: SpecField,
    what: &str,
    problems: &mut Vec<SpecProblem>,
) -> Result<(), ProviderError> {
    if e.kind == ProviderErrorKind::Validation {
        problems.push(SpecProblem {
            field,
            message: format!("{what}: {}", e.message),
        });
        Ok(())
    } else {
        Err(e)
    }
}

impl AwsProvider {
    /// The spec's AMI id, read from SSM when it is a parameter path.
    pub(super) async fn resolve_image(&self, t: &ResolvedSpec) -> Result<String, ProviderError> {
        let image = t.spec.image.clone().ok_or_else(|| {
            invalid(SpecProblem {
                field: SpecField::Image,
                message: "an image is required".into(),
            })
        })?;
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

    /// The root device name of the spec's AMI, for its root volume.
    pub(super) async fn root_device_name(&self, t: &ResolvedSpec) -> Result<String, ProviderError> {
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

    /// Checks the spec, resolved against the strategy's defaults: the parts it cannot start
    /// without, the user data file, and every reference against the region (the image or its
    /// SSM path, the instance types, the subnets, the security groups, the launch template).
    pub(super) async fn check_spec(
        &self,
        spec: &LaunchSpec,
    ) -> Result<ValidationReport, ProviderError> {
        let t = ResolvedSpec::new(spec, &self.cfg);
        let ec2 = &self.clients.ec2;
        let mut problems = t.problems();
        if let Err(p) = t.user_data().await {
            problems.push(p);
        }
        if t.spec.image.is_some() {
            match self.resolve_image(&t).await {
                Ok(image) => {
                    let found = ec2.describe_images().image_ids(&image).send().await;
                    match found.map_err(|e| classify("DescribeImages", e)) {
                        Ok(out) if out.images().is_empty() => problems.push(SpecProblem {
                            field: SpecField::Image,
                            message: format!("{image} does not exist"),
                        }),
                        Ok(_) => {}
                        Err(e) => finding(e, SpecField::Image, &image, &mut problems)?,
                    }
                }
                Err(e) => {
                    let image = t.spec.image.as_deref().unwrap_or_default();
                    finding(e, SpecField::Image, image, &mut problems)?
                }
            }
        }
        if !t.spec.instance_types.is_empty() {
            let types: Vec<&str> = t
                .spec
                .instance_types
                .iter()
                .map(|w| w.instance_type.as_str())
                .collect();
            let found = ec2
                .describe_instance_types()
                .set_instance_types(Some(types.iter().map(|&s| s.into()).collect()))
                .send()
                .await;
            if let Err(e) = found {
                let e = classify("DescribeInstanceTypes", e);
                finding(
                    e,
                    SpecField::InstanceTypes,
                    &types.join(", "),
                    &mut problems,
                )?;
            }
        }
        if !t.spec.subnets.is_empty() {
            let found = ec2
                .describe_subnets()
                .set_subnet_ids(Some(t.spec.subnets.clone()))
                .send()
                .await;
            if let Err(e) = found {
                let e = classify("DescribeSubnets", e);
                let subnets = t.spec.subnets.join(", ");
                finding(e, SpecField::Subnets, &subnets, &mut problems)?;
            }
        }
        if !t.spec.security_groups.is_empty() {
            let found = ec2
                .describe_security_groups()
                .set_group_ids(Some(t.spec.security_groups.clone()))
                .send()
                .await;
            if let Err(e) = found {
                let e = classify("DescribeSecurityGroups", e);
                let groups = t.spec.security_groups.join(", ");
                finding(e, SpecField::SecurityGroups, &groups, &mut problems)?;
            }
        }
        if let Some(id) = &t.spec.launch_template_id {
            let found = ec2
                .describe_launch_templates()
                .launch_template_ids(id)
                .send()
                .await;
            if let Err(e) = found {
                let e = classify("DescribeLaunchTemplates", e);
                finding(e, SpecField::LaunchTemplate, id, &mut problems)?;
            }
        }
        Ok(ValidationReport::from_problems(problems))
    }

    /// One cheap real call; the SDK's operation timeout bounds it.
    pub(super) async fn describe_zones(&self) -> Result<HealthReport, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| classify("DescribeAvailabilityZones", e))?;
        let zones: Vec<String> = out
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        let message = format!("{} availability zones answered", zones.len());
        Ok(HealthReport {
            region: Some(self.cfg.region.clone()),
            availability_zones: zones,
            ..HealthReport::healthy(message)
        })
    }
}

//! Launch templates for fleets and Auto Scaling groups.
//!
//! Lifecycle rule: a launch spec without a launch template of the user's gets one launch
//! template, `<prefix>-<template id>`, made at its first fleet or group request and reused after. Each
//! request adds a version whose instance tags carry that request's id (request fleets and Auto
//! Scaling groups tag instances only from the launch template), and the fleet or group uses
//! exactly that version. When ohfp deletes a fleet or group (its last machine was returned),
//! the launch template is deleted too, unless a live instance of the template, an active fleet
//! or an Auto Scaling group still refers to it. A launch template the spec names is the user's
//! and is never modified or deleted.

use aws_sdk_ec2::types::{
    CapacityReservationPreference, CapacityReservationTarget, Filter,
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateCapacityReservationSpecificationRequest,
    LaunchTemplateEbsBlockDeviceRequest, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMarketOptionsRequest, LaunchTemplatePlacementRequest,
    LaunchTemplateTagSpecificationRequest, MarketType, RequestLaunchTemplateData, ResourceType,
    TagSpecification,
};
use serde_json::json;

use super::errors::{classify, code_of};
use super::interfaces::template_interfaces;
use super::spec::{ResolvedSpec, invalid};
use super::{AwsProvider, TAG_TEMPLATE_ID, tag};
use crate::domain::{CapacityReservation, ProviderError};

/// A capacity reservation as EC2 takes it: a preference, or a target (never both).
pub(super) fn reservation_request(
    reservation: &CapacityReservation,
) -> (
    Option<CapacityReservationPreference>,
    Option<CapacityReservationTarget>,
) {
    match reservation {
        CapacityReservation::Open => (Some(CapacityReservationPreference::Open), None),
        CapacityReservation::None => (Some(CapacityReservationPreference::None), None),
        CapacityReservation::Targeted { id } => (
            None,
            Some(
                CapacityReservationTarget::builder()
                    .capacity_reservation_id(id)
                    .build(),
            ),
        ),
    }
}

/// The market of a spec's instances when it is not EC2's default (on demand): spot, or a
/// Capacity Block.
pub(super) fn market_type(t: &ResolvedSpec) -> Option<MarketType> {
    if t.spec.capacity_block {
        Some(MarketType::CapacityBlock)
    } else {
        t.is_spot().then_some(MarketType::Spot)
    }
}

/// A launch template and the version one request uses.
#[derive(Debug, Clone)]
pub struct LaunchTemplateRef {
    pub id: String,
    pub version: String,
}

impl AwsProvider {
    pub(super) fn launch_template_name(&self, template_id: &str) -> String {
        format!("{}-{template_id}", self.cfg.name_prefix)
    }

    async fn launch_template_data(
        &self,
        t: &ResolvedSpec,
        tags: &[(String, String)],
    ) -> Result<RequestLaunchTemplateData, ProviderError> {
        let image = self.resolve_image(t).await?;
        let tag_list: Vec<_> = tags.iter().map(|(k, v)| tag(k, v)).collect();
        let mut data = RequestLaunchTemplateData::builder()
            .image_id(image)
            .instance_type(t.primary_type().into())
            .set_key_name(t.spec.key_name.clone())
            .set_user_data(t.user_data().await.map_err(invalid)?)
            .tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tag_list.clone()))
                    .build(),
            )
            .tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tag_list))
                    .build(),
            );
        data = match &t.spec.network_interfaces {
            Some(n) => {
                data.set_network_interfaces(Some(template_interfaces(n, &t.spec.security_groups)))
            }
            None => data.set_security_group_ids(
                (!t.spec.security_groups.is_empty()).then(|| t.spec.security_groups.clone()),
            ),
        };
        // Fleets choose spot themselves; a Capacity Block is the template's to say (groups).
        if t.spec.capacity_block {
            data = data.instance_market_options(
                LaunchTemplateInstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::CapacityBlock)
                    .build(),
            );
        }
        let p = &t.spec.placement;
        if p.group_name.is_some() || p.tenancy.is_some() {
            data = data.placement(
                LaunchTemplatePlacementRequest::builder()
                    .set_group_name(p.group_name.clone())
                    .set_tenancy(p.tenancy.map(|v| v.as_str().into()))
                    .build(),
            );
        }
        if let Some(reservation) = &p.capacity_reservation {
            let (preference, target) = reservation_request(reservation);
            data = data.capacity_reservation_specification(
                LaunchTemplateCapacityReservationSpecificationRequest::builder()
                    .set_capacity_reservation_preference(preference)
                    .set_capacity_reservation_target(target)
                    .build(),
            );
        }
        if let Some(profile) = &t.spec.instance_profile {
            data = data.iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .arn(profile)
                    .build(),
            );
        }
        let root = &t.spec.root_volume;
        if let Some(size) = root.size_gib {
            let device = self.root_device_name(t).await?;
            data = data.block_device_mappings(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(device)
                    .ebs(
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .volume_size(size as i32)
                            .set_volume_type(root.volume_type.map(|v| v.as_str().into()))
                            .set_iops(root.iops.map(|n| n as i32))
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        Ok(data.build())
    }

    /// The launch template a request launches from: the user's, or ours with a new version
    /// carrying this request's tags.
    pub(super) async fn launch_template_for(
        &self,
        t: &ResolvedSpec,
        tags: &[(String, String)],
    ) -> Result<LaunchTemplateRef, ProviderError> {
        if let Some(id) = &t.spec.launch_template_id {
            return Ok(LaunchTemplateRef {
                id: id.clone(),
                version: t.launch_template_version().to_string(),
            });
        }
        let name = self.launch_template_name(&t.spec.template_id);
        let data = self.launch_template_data(t, tags).await?;
        let created = self
            .clients
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .launch_template_data(data.clone())
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::LaunchTemplate)
                    .tags(tag(TAG_TEMPLATE_ID, &t.spec.template_id))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                let exists = code_of(&e)
                    .is_some_and(|c| c.starts_with("InvalidLaunchTemplateName.AlreadyExists"));
                (exists, classify("CreateLaunchTemplate", e))
            });
        let answer = created.as_ref().map_err(|(_, e)| e.clone());
        let target = json!({
            "launch_template_name": name,
            "launch_template_id": answer.as_ref().ok().and_then(|o| o.launch_template()).and_then(|l| l.launch_template_id()),
        });
        self.audit("CreateLaunchTemplate", target, &answer).await;
        match created {
            Ok(out) => {
                let lt = out.launch_template();
                Ok(LaunchTemplateRef {
                    id: lt
                        .and_then(|l| l.launch_template_id())
                        .unwrap_or_default()
                        .to_string(),
                    version: lt
                        .and_then(|l| l.latest_version_number())
                        .unwrap_or(1)
                        .to_string(),
                })
            }
            Err((true, _)) => {
                let sent = self
                    .clients
                    .ec2
                    .create_launch_template_version()
                    .launch_template_name(&name)
                    .launch_template_data(data)
                    .send()
                    .await
                    .map_err(|e| classify("CreateLaunchTemplateVersion", e));
                let version = sent.as_ref().ok().and_then(|o| o.launch_template_version());
                let target = json!({
                    "launch_template_name": name,
                    "version": version.and_then(|v| v.version_number()),
                });
                self.audit("CreateLaunchTemplateVersion", target, &sent)
                    .await;
                let out = sent?;
                let v = out.launch_template_version();
                Ok(LaunchTemplateRef {
                    id: v
                        .and_then(|v| v.launch_template_id())
                        .unwrap_or_default()
                        .to_string(),
                    version: v.and_then(|v| v.version_number()).unwrap_or(1).to_string(),
                })
            }
            Err((false, e)) => Err(e),
        }
    }

    /// Deletes our launch template of `template_id` once nothing refers to it (see the module
    /// comment). Failures are logged: a leftover template costs nothing and is retried at the
    /// next release.
    pub(super) async fn release_launch_template(&self, template_id: &str) {
        if let Err(e) = self.try_release_launch_template(template_id).await {
            tracing::warn!(template_id, error = %e, "launch template not released");
        }
    }

    /// The id of the launch template ohfp made for `template_id`, if there is one.
    pub(super) async fn our_launch_template_id(
        &self,
        template_id: &str,
    ) -> Result<Option<String>, ProviderError> {
        let name = self.launch_template_name(template_id);
        let found = self
            .clients
            .ec2
            .describe_launch_templates()
            .launch_template_names(&name)
            .send()
            .await;
        match found {
            Ok(out) => Ok(out
                .launch_templates
                .unwrap_or_default()
                .into_iter()
                .find_map(|lt| lt.launch_template_id)),
            Err(e) if code_of(&e).is_some_and(|c| c.contains("NotFound")) => Ok(None),
            Err(e) => Err(classify("DescribeLaunchTemplates", e)),
        }
    }

    async fn try_release_launch_template(&self, template_id: &str) -> Result<(), ProviderError> {
        let Some(lt_id) = self.our_launch_template_id(template_id).await? else {
            return Ok(());
        };
        let live = self
            .clients
            .ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_TEMPLATE_ID}"))
                    .values(template_id)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "stopping", "stopped"]
                            .map(String::from)
                            .to_vec(),
                    ))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        if live
            .reservations()
            .iter()
            .any(|r| !r.instances().is_empty())
        {
            return Ok(());
        }
        if self.fleets_use_launch_template(&lt_id).await? || self.groups_use(&lt_id).await? {
            return Ok(());
        }
        let sent = self
            .clients
            .ec2
            .delete_launch_template()
            .launch_template_id(&lt_id)
            .send()
            .await
            .map_err(|e| classify("DeleteLaunchTemplate", e));
        let target = json!({"launch_template_id": lt_id});
        self.audit("DeleteLaunchTemplate", target, &sent).await;
        sent?;
        tracing::info!(template_id, launch_template = %lt_id, "launch template deleted: no longer used");
        Ok(())
    }

    async fn fleets_use_launch_template(&self, lt_id: &str) -> Result<bool, ProviderError> {
        let fleets = self
            .clients
            .ec2
            .describe_fleets()
            .send()
            .await
            .map_err(|e| classify("DescribeFleets", e))?;
        let in_fleet = fleets.fleets().iter().any(|f| {
            let active = !f
                .fleet_state()
                .is_some_and(|s| s.as_str().starts_with("deleted"));
            active
                && f.r#type().is_some_and(|t| t.as_str() != "instant")
                && f.launch_template_configs().iter().any(|c| {
                    c.launch_template_specification()
                        .and_then(|s| s.launch_template_id())
                        == Some(lt_id)
                })
        });
        if in_fleet {
            return Ok(true);
        }
        let spot = self
            .clients
            .ec2
            .describe_spot_fleet_requests()
            .send()
            .await
            .map_err(|e| classify("DescribeSpotFleetRequests", e))?;
        Ok(spot.spot_fleet_request_configs().iter().any(|c| {
            let active = c
                .spot_fleet_request_state()
                .is_none_or(|s| !s.as_str().starts_with("cancelled"));
            active
                && c.spot_fleet_request_config().is_some_and(|d| {
                    d.launch_template_configs().iter().any(|l| {
                        l.launch_template_specification()
                            .and_then(|s| s.launch_template_id())
                            == Some(lt_id)
                    })
                })
        }))
    }

    async fn groups_use(&self, lt_id: &str) -> Result<bool, ProviderError> {
        let groups = self
            .clients
            .autoscaling
            .describe_auto_scaling_groups()
            .send()
            .await
            .map_err(|e| classify("DescribeAutoScalingGroups", e))?;
        Ok(groups
            .auto_scaling_groups()
            .iter()
            .any(|g| g.launch_template().and_then(|l| l.launch_template_id()) == Some(lt_id)))
    }
}

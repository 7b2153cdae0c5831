//! The ASG API: one Auto Scaling group per template, `<prefix>-<template id>`,
//! created at the first request and grown by later ones. Each request points the group at its
//! own launch template version, so the instances it adds carry its request id.

use aws_sdk_autoscaling::operation::create_auto_scaling_group::builders::CreateAutoScalingGroupFluentBuilder;
use aws_sdk_autoscaling::operation::update_auto_scaling_group::builders::UpdateAutoScalingGroupFluentBuilder;
use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag};
use aws_sdk_ec2::types::Filter;
use serde_json::json;

use super::create::LaunchOrder;
use super::errors::classify;
use super::launch_template::LaunchTemplateRef;
use super::{AwsProvider, TAG_PROVIDER_API, TAG_TEMPLATE_ID};
use crate::domain::{ProviderError, ProvisioningApi};
use crate::providers::Created;

/// What a group holds: its desired capacity and its instance ids.
pub struct GroupView {
    pub desired: i32,
    pub instance_ids: Vec<String>,
}

/// How a creation changes the template's Auto Scaling group.
pub(super) enum GroupCall {
    Create(CreateAutoScalingGroupFluentBuilder),
    Update(UpdateAutoScalingGroupFluentBuilder),
}

/// The group, the call that grows it and the desired capacity it will have.
pub(super) struct GroupChange {
    pub name: String,
    pub call: GroupCall,
    pub desired: i32,
}

impl AwsProvider {
    pub(super) fn group_name(&self, template_id: &str) -> String {
        format!("{}-{template_id}", self.cfg.name_prefix)
    }

    /// The groups among `names` that exist.
    pub(super) async fn describe_groups(
        &self,
        names: &[String],
    ) -> Result<Vec<AutoScalingGroup>, ProviderError> {
        let mut out = Vec::new();
        // DescribeAutoScalingGroups takes up to 100 names a call.
        for chunk in names.chunks(100) {
            let mut pages = self
                .clients
                .autoscaling
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(chunk.to_vec()))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify("DescribeAutoScalingGroups", e))?;
                out.extend(page.auto_scaling_groups.unwrap_or_default());
            }
        }
        Ok(out)
    }

    pub(super) async fn group(&self, name: &str) -> Result<Option<GroupView>, ProviderError> {
        Ok(self
            .describe_groups(&[name.to_string()])
            .await?
            .into_iter()
            .next()
            .map(|g| GroupView {
                desired: g.desired_capacity.unwrap_or(0),
                instance_ids: g
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id.clone())
                    .collect(),
            }))
    }

    /// The default subnets of the region, for a group whose template names none.
    async fn default_subnets(&self) -> Result<Vec<String>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_subnets()
            .filters(
                Filter::builder()
                    .name("default-for-az")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeSubnets", e))?;
        Ok(out
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id.clone())
            .collect())
    }

    /// The call that grows the template's group by the order's units from `lt`: a new group
    /// at the first order, else the group's desired capacity (and maximum) raised.
    pub(super) async fn group_change(
        &self,
        order: &LaunchOrder,
        lt: &LaunchTemplateRef,
    ) -> Result<GroupChange, ProviderError> {
        let t = &order.spec;
        let name = self.group_name(&t.spec.template_id);
        let launch_template = LaunchTemplateSpecification::builder()
            .launch_template_id(&lt.id)
            .version(&lt.version)
            .build();
        let change = match self.group(&name).await? {
            None => {
                let subnets = if t.spec.subnets.is_empty() {
                    self.default_subnets().await?
                } else {
                    t.spec.subnets.clone()
                };
                let group_tag = |k: &str, v: &str| {
                    Tag::builder()
                        .key(k)
                        .value(v)
                        .propagate_at_launch(true)
                        .resource_id(&name)
                        .resource_type("auto-scaling-group")
                        .build()
                };
                let call = self
                    .clients
                    .autoscaling
                    .create_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .launch_template(launch_template)
                    .min_size(0)
                    .max_size(order.units)
                    .desired_capacity(order.units)
                    .vpc_zone_identifier(subnets.join(","))
                    .tags(group_tag(TAG_TEMPLATE_ID, &t.spec.template_id))
                    .tags(group_tag(TAG_PROVIDER_API, ProvisioningApi::Asg.as_str()));
                (GroupCall::Create(call), order.units)
            }
            Some(group) => {
                let desired = group.desired + order.units;
                let call = self
                    .clients
                    .autoscaling
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .launch_template(launch_template)
                    .max_size(desired)
                    .desired_capacity(desired);
                (GroupCall::Update(call), desired)
            }
        };
        Ok(GroupChange {
            name,
            call: change.0,
            desired: change.1,
        })
    }

    /// Grows the template's group by the order's units, making the group at the first order.
    /// The group's maximum follows its desired capacity: it never holds more than was asked.
    pub(super) async fn grow_group(&self, order: &LaunchOrder) -> Result<Created, ProviderError> {
        let lt = self.launch_template_for(&order.spec, &order.tags).await?;
        let _one_at_a_time = self.asg_lock.lock().await;
        let change = self.group_change(order, &lt).await?;
        let (name, desired) = (change.name, change.desired);
        let target = json!({"group": name, "desired_capacity": desired});
        match change.call {
            GroupCall::Create(call) => {
                let sent = call
                    .send()
                    .await
                    .map_err(|e| classify("CreateAutoScalingGroup", e));
                self.audit("CreateAutoScalingGroup", target, &sent).await;
                sent?;
            }
            GroupCall::Update(call) => {
                let sent = call
                    .send()
                    .await
                    .map_err(|e| classify("UpdateAutoScalingGroup", e));
                self.audit("UpdateAutoScalingGroup", target, &sent).await;
                sent?;
            }
        }
        Ok(Created {
            resource_id: Some(name),
            provider_api: Some(ProvisioningApi::Asg),
            desired_capacity: Some(desired.unsigned_abs()),
            ..Created::default()
        })
    }

    /// Takes instances out of a group one by one, lowering its desired capacity, and deletes
    /// the group (and releases its launch template) when nothing is left in it. Instances no
    /// longer in the group are left to the caller (TerminateInstanceInAutoScalingGroup fails
    /// for them; moto even answers 500).
    pub(super) async fn leave_group(
        &self,
        name: &str,
        ids: &[String],
        template_id: Option<&str>,
    ) -> Result<Vec<String>, ProviderError> {
        let _one_at_a_time = self.asg_lock.lock().await;
        let Some(group) = self.group(name).await? else {
            return Ok(ids.to_vec());
        };
        let (members, strays): (Vec<String>, Vec<String>) = ids
            .iter()
            .cloned()
            .partition(|id| group.instance_ids.contains(id));
        for id in &members {
            let sent = self
                .clients
                .autoscaling
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(true)
                .send()
                .await
                .map_err(|e| classify("TerminateInstanceInAutoScalingGroup", e));
            let target = json!({"group": name, "instance_ids": [id]});
            self.audit("TerminateInstanceInAutoScalingGroup", target, &sent)
                .await;
            sent?;
        }
        let left = group.instance_ids.len() - members.len();
        if left == 0 && group.desired <= members.len() as i32 {
            let deleted = self
                .clients
                .autoscaling
                .delete_auto_scaling_group()
                .auto_scaling_group_name(name)
                .force_delete(true)
                .send()
                .await
                .map_err(|e| classify("DeleteAutoScalingGroup", e));
            self.audit("DeleteAutoScalingGroup", json!({"group": name}), &deleted)
                .await;
            match deleted {
                Ok(_) => {
                    tracing::info!(
                        group = name,
                        "Auto Scaling group deleted: its last machine was returned"
                    );
                    if let Some(t) = template_id {
                        self.release_launch_template(t).await;
                    }
                }
                Err(error) => {
                    tracing::warn!(group = name, %error, "group not deleted")
                }
            }
        }
        Ok(strays)
    }
}

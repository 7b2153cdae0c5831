//! providerApi RunInstances: on-demand (or spot through market options) instances in one call,
//! tagged at launch.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, IamInstanceProfileSpecification,
    InstanceMarketOptionsRequest, MarketType, ResourceType, TagSpecification, VolumeType,
};
use serde_json::{Value, json};

use super::create::CreateRequest;
use super::errors::classify;
use super::{AwsProvider, tag};
use crate::domain::{Machine, ProviderError};

impl AwsProvider {
    pub(super) async fn run_instances(&self, req: &CreateRequest) -> Result<Value, ProviderError> {
        let t = &req.template;
        let tags: Vec<_> = req.tags.iter().map(|(k, v)| tag(k, v)).collect();
        let mut call = self
            .clients
            .ec2
            .run_instances()
            .min_count(req.count)
            .max_count(req.count)
            .instance_type(t.primary_vm_type().into())
            .set_subnet_id(t.subnet_ids.first().cloned())
            .set_security_group_ids(
                (!t.security_group_ids.is_empty()).then(|| t.security_group_ids.clone()),
            )
            .set_key_name(t.key_name.clone())
            .set_user_data(t.user_data()?)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        call = match &t.launch_template_id {
            Some(id) => call.launch_template(
                aws_sdk_ec2::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(id)
                    .build(),
            ),
            None => call.image_id(self.resolve_image(t).await?),
        };
        if t.spot {
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        if let Some(profile) = &t.instance_profile {
            call = call.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .arn(profile)
                    .build(),
            );
        }
        if let Some(size) = t.root_device_volume_size {
            call = call.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(self.root_device_name(t).await?)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(size)
                            .set_volume_type(t.volume_type.as_deref().map(VolumeType::from))
                            .set_iops(t.iops)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = call.send().await.map_err(|e| classify("RunInstances", e))?;
        let reservation = out.reservation_id.clone().unwrap_or_default();
        let machines: Vec<Machine> = out
            .instances()
            .iter()
            .map(|i| self.machine_of(i, Some(&reservation), Some("RunInstances")))
            .collect();
        Ok(json!({
            "instance_ids": machines.iter().map(|m| m.instance_id.clone()).collect::<Vec<_>>(),
            "count": machines.len(),
            "instances": machines,
            "resource_id": reservation,
            "provider_api": "RunInstances",
        }))
    }
}

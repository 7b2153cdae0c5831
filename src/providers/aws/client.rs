//! The SDK clients of one strategy, built from its own configuration only (its region, endpoint
//! and credentials never leak into another strategy).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;

use super::config::AwsConfig;

#[derive(Clone)]
pub struct AwsClients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// Region, endpoint, retry and timeouts from the strategy; credentials from the config when
/// given, else the standard chain (env, profile, web identity, container, IMDS).
fn loader(cfg: &AwsConfig) -> ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(cfg.region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs_f64(cfg.operation_timeout_seconds))
                .connect_timeout(Duration::from_secs_f64(cfg.connect_timeout_seconds))
                .build(),
        );
    if let Some(url) = &cfg.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(profile) = &cfg.profile {
        loader = loader.profile_name(profile);
    }
    if let (Some(key), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            key,
            secret,
            cfg.session_token.clone(),
            None,
            "ohfp-strategy-config",
        ));
    }
    loader
}

async fn sdk_config(cfg: &AwsConfig) -> SdkConfig {
    let base = loader(cfg).load().await;
    let Some(role_arn) = &cfg.role_arn else {
        return base;
    };
    let mut role = aws_config::sts::AssumeRoleProvider::builder(role_arn)
        .session_name("ohfp")
        .configure(&base);
    if let Some(id) = &cfg.external_id {
        role = role.external_id(id);
    }
    loader(cfg)
        .credentials_provider(role.build().await)
        .load()
        .await
}

impl AwsClients {
    pub async fn new(cfg: &AwsConfig) -> Self {
        let sdk = sdk_config(cfg).await;
        Self {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(&sdk),
            ssm: aws_sdk_ssm::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
        }
    }
}

//! The SDK clients of one strategy, built from its own configuration only (its region, endpoint
//! and credentials never leak into another strategy).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Connector, tls};

use super::config::AwsConfig;

#[derive(Clone)]
pub struct AwsClients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub quotas: aws_sdk_servicequotas::Client,
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
    if let Some(proxy) = &cfg.https_proxy {
        loader = loader.http_client(proxied_client(proxy));
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

/// The SDK's default HTTPS client (rustls with aws-lc, as the SDK builds it) sending every
/// call through `proxy`; the strategy's connect timeout still applies.
fn proxied_client(proxy: &str) -> SharedHttpClient {
    // Checked when the config was read.
    let proxy = ProxyConfig::all(proxy).expect("https_proxy was validated");
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, _| {
        let mut connector = Connector::builder().proxy_config(proxy.clone());
        connector.set_connector_settings(settings.cloned());
        connector
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
    })
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
            quotas: aws_sdk_servicequotas::Client::new(&sdk),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_strategy_with_https_proxy_sends_its_calls_through_it() {
        // A "proxy" that records what it is asked for and answers 502.
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let asked = tokio::spawn(async move {
            let (mut socket, _) = proxy.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = socket.read(&mut head).await.unwrap();
            let answer = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n";
            let _ = socket.write_all(answer).await;
            String::from_utf8_lossy(&head[..n]).to_string()
        });
        let spec = serde_json::json!({
            "region": "eu-west-1", "endpoint_url": "http://ec2.invalid:8080",
            "https_proxy": proxy_url, "max_attempts": 1,
            "access_key_id": "AKIDTEST", "secret_access_key": "secret",
        });
        let cfg = AwsConfig::from_spec(spec.as_object().unwrap()).unwrap();
        let clients = AwsClients::new(&cfg).await;
        let answer = clients.ec2.describe_availability_zones().send().await;
        assert!(answer.is_err(), "the proxy answers 502");
        let request = asked.await.unwrap();
        assert!(
            request.starts_with("POST http://ec2.invalid:8080/"),
            "{request}"
        );
        assert!(
            ProxyConfig::all("not a url").is_err(),
            "config validation relies on this"
        );
    }
}

//! Quota-aware availability on moto: moto's Service Quotas serves VPC quotas only, so
//! ListServiceQuotas answers a recorded AWS answer for EC2 (a Standard on-demand quota of
//! 6 vCPUs); the instances running and the instance types' vCPUs are moto's own.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws_notices::one_template_config;
use crate::helpers::TestApp;
use crate::hostfactory::shim;
use crate::support::moto::Moto;

const REGION: &str = "eu-central-1";
const PATIENCE: Duration = Duration::from_secs(60);

async fn available(app: &TestApp) -> Value {
    let (code, v) = shim(app, "getAvailableTemplates", "{}").await;
    assert_eq!(code, 0, "{v}");
    v["templates"][0]["availableNumber"].clone()
}

#[tokio::test]
async fn available_number_and_request_machines_keep_within_the_vcpu_quota() {
    let moto = Moto::start().await;
    let recorded: Value =
        serde_json::from_str(include_str!("support/list_service_quotas_ec2.json")).unwrap();
    moto.answer("ListServiceQuotas", recorded).await;
    // One t3.micro (2 vCPUs) already runs in the account: 4 of the 6 vCPUs are left.
    moto.ec2(REGION)
        .await
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("an instance of someone else's");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = one_template_config(&moto, dir.path()).await;
    cfg.providers[0]
        .config
        .insert("quota_refresh_seconds".into(), json!(60));
    let app = TestApp::start(cfg).await;

    // maxNumber 10, but the quota has room for two t3.micro (4 vCPUs / 2).
    let started = Instant::now();
    while available(&app).await != json!(2) {
        assert!(
            started.elapsed() < PATIENCE,
            "availableNumber never capped: {}",
            available(&app).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Three is over the quota: a clear answer now, not a cloud error later.
    moto.reset_calls().await;
    let input = json!({"template": {"templateId": "OnDemand-Run", "machineCount": 3}});
    let (code, v) = shim(&app, "requestMachines", &input.to_string()).await;
    assert_ne!(code, 0, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("vCPU quota") && message.contains("room for 2 more"),
        "{v}"
    );
    assert_eq!(moto.calls().await.get("RunInstances"), None);
    let input = json!({"template": {"templateId": "OnDemand-Run", "machineCount": 2}});
    let (code, v) = shim(&app, "requestMachines", &input.to_string()).await;
    assert_eq!(code, 0, "{v}");
    app.stop().await;
}

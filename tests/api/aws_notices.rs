//! The interruption-notice queue on moto: an EventBridge rule routes EC2's events to an SQS
//! queue that aws-primary long-polls (`interruption_queue_url`); getReturnRequests lists a
//! machine whose spot warning arrived, with the seconds left until the warning's deadline,
//! without any status sweep of running machines.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use ohfp::config::Config;
use serde_json::{Value, json};

use crate::aws_hostfactory::network;
use crate::helpers::TestApp;
use crate::hostfactory::{shim, wait_status};
use crate::support::aws::{production_config, template};
use crate::support::moto::Moto;

const REGION: &str = "eu-central-1";
const PATIENCE: Duration = Duration::from_secs(60);

/// The queue, fed by a rule for the three EC2 events the provider reads; its URL.
async fn notice_queue(moto: &Moto) -> String {
    let sqs = moto.sqs(REGION).await;
    let url = sqs
        .create_queue()
        .queue_name("ohfp-interruptions")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("its url")
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("the queue's arn")
        .clone();
    let pattern = json!({
        "source": ["aws.ec2"],
        "detail-type": [
            "EC2 Spot Instance Interruption Warning",
            "EC2 Instance Rebalance Recommendation",
            "EC2 Instance State-change Notification",
        ],
    });
    moto.eventbridge(
        REGION,
        "PutRule",
        json!({"Name": "ohfp-interruptions", "EventPattern": pattern.to_string()}),
    )
    .await;
    moto.eventbridge(
        REGION,
        "PutTargets",
        json!({"Rule": "ohfp-interruptions", "Targets": [{"Id": "queue", "Arn": arn}]}),
    )
    .await;
    url
}

/// EC2's event about `instance`, sent through EventBridge at `at` (epoch seconds).
async fn ec2_event(moto: &Moto, detail_type: &str, detail: Value, at: i64) {
    let v = moto
        .eventbridge(
            REGION,
            "PutEvents",
            json!({"Entries": [{
                "Source": "aws.ec2",
                "DetailType": detail_type,
                "Detail": detail.to_string(),
                "Time": at,
            }]}),
        )
        .await;
    assert_eq!(v["FailedEntryCount"], 0, "{v}");
}

/// config/aws.json on `moto` (both strategies) with one template, `OnDemand-Run` on
/// aws-primary in the region's default subnet and security group.
pub(crate) async fn one_template_config(moto: &Moto, dir: &Path) -> Config {
    let (subnet, security_group) = network(moto, REGION).await;
    let mut t = template("OnDemand-Run");
    t["providerName"] = json!("aws-primary");
    t["subnetId"] = json!(subnet);
    t["securityGroupIds"] = json!([security_group]);
    let templates = dir.join("awsprov_templates.json");
    std::fs::write(&templates, json!({ "templates": [t] }).to_string()).unwrap();
    let mut cfg = production_config(dir, moto, moto);
    cfg.hostfactory.templates_path = Some(templates.display().to_string());
    cfg
}

async fn queue_depth(moto: &Moto, url: &str) -> (String, String) {
    let attributes = moto
        .sqs(REGION)
        .await
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let get = |name: QueueAttributeName| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

#[tokio::test]
async fn a_spot_warning_on_the_queue_gives_get_return_requests_the_seconds_left() {
    let moto = Moto::start().await;
    let queue_url = notice_queue(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = one_template_config(&moto, dir.path()).await;
    cfg.hostfactory.reconcile_interval_seconds = 0.5;
    // Running machines are not asked about again within the test: only the queue can tell.
    cfg.hostfactory.live_check_interval_seconds = 3600.0;
    let primary = &mut cfg.providers[0].config;
    primary.insert("interruption_queue_url".into(), json!(queue_url));
    primary.insert("rebalance_recommendations".into(), json!("report"));
    let app = TestApp::start(cfg).await;

    let input = json!({"template": {"templateId": "OnDemand-Run", "machineCount": 3}});
    let (code, v) = shim(&app, "requestMachines", &input.to_string()).await;
    assert_eq!(code, 0, "{v}");
    let done = wait_status(&app, v["requestId"].as_str().unwrap(), "complete").await;
    let machines = done["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), 3, "{done}");
    let (warned, rebalanced, healthy) = (&machines[0], &machines[1], &machines[2]);

    // The warning was sent 30 s ago: its instance has 90 s left, not the 120 s a grace period
    // counted from when ohfp noticed would give.
    let sent_at = chrono::Utc::now().timestamp() - 30;
    let deadline_ms = (sent_at + 120) * 1000;
    // The third, another state change, is not a notice.
    for (detail_type, detail) in [
        (
            "EC2 Spot Instance Interruption Warning",
            json!({"instance-id": warned["machineId"], "instance-action": "terminate"}),
        ),
        (
            "EC2 Instance Rebalance Recommendation",
            json!({"instance-id": rebalanced["machineId"]}),
        ),
        (
            "EC2 Instance State-change Notification",
            json!({"instance-id": healthy["machineId"], "state": "running"}),
        ),
    ] {
        ec2_event(&moto, detail_type, detail, sent_at).await;
    }

    let hosts = json!({"machines": machines
        .iter()
        .map(|m| json!({"name": m["name"], "machineId": m["machineId"]}))
        .collect::<Vec<_>>()})
    .to_string();
    let started = Instant::now();
    let (reported, asked_from, asked_to) = loop {
        let asked_from = chrono::Utc::now().timestamp_millis();
        let (code, v) = shim(&app, "getReturnRequests", &hosts).await;
        let asked_to = chrono::Utc::now().timestamp_millis();
        assert_eq!(code, 0, "{v}");
        if v["requests"].as_array().unwrap().len() == 2 {
            break (v, asked_from, asked_to);
        }
        assert!(started.elapsed() < PATIENCE, "notices never listed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let grace_of = |m: &Value| {
        reported["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["machine"] == m["name"])
            .and_then(|r| r["gracePeriod"].as_i64())
            .unwrap_or_else(|| panic!("{} not listed: {reported}", m["name"]))
    };
    // The seconds left until the deadline, at some moment of the call.
    let grace = grace_of(warned);
    let most = ((deadline_ms - asked_from) / 1000).max(0);
    let least = ((deadline_ms - asked_to) / 1000 - 1).max(0);
    assert!(
        (least..=most).contains(&grace) && grace <= 90,
        "gracePeriod {grace} outside {least}..={most}: {reported}"
    );
    // A reported rebalance recommendation has no deadline: the configured grace applies.
    assert!((0..=120).contains(&grace_of(rebalanced)), "{reported}");

    // Every message was deleted once applied.
    let started = Instant::now();
    loop {
        let depth = queue_depth(&moto, &queue_url).await;
        if depth == ("0".to_string(), "0".to_string()) {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "messages left: {depth:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"ohfp_reclaim_notices_applied_total{strategy="aws-primary"} 2"#),
        "{metrics}"
    );
    app.stop().await;
}

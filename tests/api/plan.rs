//! Plan mode (README, "AWS provider"): `POST /api/v1/requests/plan` and `ohfp plan
//! requestMachines` against moto for every providerApi (the request body, the dry run where
//! the API has one, nothing launched, nothing stored), bad input named, and the simulated
//! provider's plan.

use serde_json::{Value, json};

use crate::aws_hostfactory::{PRIMARY_REGION, aws_hf_app, delivered, request};
use crate::cli::ohfp;
use crate::helpers::TestApp;
use crate::hostfactory::hf_app;
use crate::support::moto::Moto;

async fn plan(app: &TestApp, template_id: &str, count: i64) -> Value {
    let (status, v) = app
        .post(
            "/api/v1/requests/plan",
            json!({"template_id": template_id, "machine_count": count}),
        )
        .await;
    assert_eq!(status, 200, "{template_id}: {v}");
    assert_eq!(v["failure"], Value::Null, "{v}");
    v
}

/// What moto holds that a creation would have made.
async fn made(moto: &Moto) -> Value {
    let ec2 = moto.ec2(PRIMARY_REGION).await;
    let asg = moto.autoscaling(PRIMARY_REGION).await;
    let instances: usize = ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    let fleets = ec2.describe_fleets().send().await.unwrap().fleets().len();
    let spot = ec2
        .describe_spot_fleet_requests()
        .send()
        .await
        .unwrap()
        .spot_fleet_request_configs()
        .len();
    let templates = ec2
        .describe_launch_templates()
        .send()
        .await
        .unwrap()
        .launch_templates()
        .len();
    let groups = asg
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()
        .len();
    json!({"instances": instances, "fleets": fleets, "spot_fleets": spot,
           "launch_templates": templates, "groups": groups})
}

#[tokio::test]
async fn every_provider_api_is_planned_on_moto_and_nothing_is_made() {
    let (primary, secondary) = (Moto::start().await, Moto::start().await);
    let hf = aws_hf_app(&primary, &secondary, 0.3).await;
    let nothing = made(&primary).await;

    let run = plan(&hf.app, "OnDemand-Run", 2).await;
    assert_eq!(
        run["selection"]["selected_strategy"], "aws-primary",
        "{run}"
    );
    let p = &run["plan"];
    assert_eq!(p["provider_api"], "RunInstances", "{run}");
    assert_eq!(p["action"], "RunInstances");
    let body = &p["request"];
    assert_eq!(body["Action"], "RunInstances", "{body}");
    assert_eq!(
        (&body["MinCount"], &body["MaxCount"]),
        (&json!("2"), &json!("2"))
    );
    assert_eq!(body["DryRun"], "true");
    assert_eq!(body["InstanceType"], p["pools"][0]["instance_type"]);
    assert_eq!(body["SubnetId"], p["pools"][0]["subnet"]);
    assert_eq!(p["pools"][0]["parked"], false);
    assert_eq!(
        (&p["dry_run"]["would_succeed"], &p["dry_run"]["code"]),
        (&json!(true), &json!("DryRunOperation")),
        "{p}"
    );

    let fleet = plan(&hf.app, "Fleet-Instant", 2).await;
    let p = &fleet["plan"];
    assert_eq!(
        (&p["provider_api"], &p["action"]),
        (&json!("EC2Fleet"), &json!("CreateFleet")),
        "{p}"
    );
    assert_eq!(p["request"]["Action"], "CreateFleet");
    assert_eq!(p["request"]["Type"], "instant");
    assert_eq!(
        p["request"]["TargetCapacitySpecification.TotalTargetCapacity"],
        "2"
    );
    // Our launch template is not made yet: no dry run, said why.
    assert_eq!(p["dry_run"], Value::Null, "{p}");
    assert!(
        p["notes"].to_string().contains("would be made first"),
        "{p}"
    );

    let spot = plan(&hf.app, "Spot-Fleet", 3).await;
    let p = &spot["plan"];
    assert_eq!(p["action"], "RequestSpotFleet", "{p}");
    assert_eq!(p["request"]["Action"], "RequestSpotFleet");
    assert_eq!(
        p["request"]["SpotFleetRequestConfig.TargetCapacity"], "3",
        "{p}"
    );
    assert_eq!(p["dry_run"], Value::Null);

    let group = plan(&hf.app, "ASG-Micro", 1).await;
    let p = &group["plan"];
    assert_eq!(p["action"], "CreateAutoScalingGroup", "{p}");
    assert_eq!(
        p["request"]["AutoScalingGroupName"], "ohfp-ASG-Micro",
        "{p}"
    );
    assert_eq!(p["request"]["DesiredCapacity"], "1");

    // Nothing launched, made or stored.
    assert_eq!(made(&primary).await, nothing);
    let (_, returns) = hf.app.get("/api/v1/audit").await;
    assert_eq!(returns["count"], 0, "{returns}");
    let (_, status) = hf.app.get("/api/v1/status").await;
    assert!(!status.to_string().contains("req-"), "{status}");

    // Once a fleet request made our launch template, the fleet plan is dry-run by the cloud.
    let ec2 = primary.ec2(PRIMARY_REGION).await;
    let id = request(&hf.app, "Fleet-Instant", 1).await;
    delivered(&hf.app, &ec2, &id, 1).await;
    let before = made(&primary).await;
    let fleet = plan(&hf.app, "Fleet-Instant", 2).await;
    let p = &fleet["plan"];
    assert_eq!(p["request"]["DryRun"], "true", "{p}");
    assert_eq!(p["dry_run"]["code"], "DryRunOperation", "{p}");
    assert_eq!(p["dry_run"]["would_succeed"], true);
    assert_eq!(made(&primary).await, before);

    // The CLI answers the same plan.
    let (code, out, err) = ohfp(&[
        "plan",
        "requestMachines",
        "--template",
        "OnDemand-Run",
        "--count",
        "1",
        "--url",
        &hf.app.url(""),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["plan"]["request"]["MinCount"], "1", "{v}");
    assert_eq!(made(&primary).await, before);
}

#[tokio::test]
async fn a_bad_template_or_count_is_named_and_the_simulated_provider_plans_too() {
    let hf = hf_app(0.2).await;
    let (status, v) = hf
        .app
        .post(
            "/api/v1/requests/plan",
            json!({"template_id": "nope", "machine_count": 1}),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(v.to_string().contains("nope"), "{v}");
    let (status, v) = hf
        .app
        .post(
            "/api/v1/requests/plan",
            json!({"template_id": "OnDemand-C5Large", "machine_count": 0}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("machine_count"), "{v}");

    let v = plan(&hf.app, "OnDemand-C5Large", 2).await;
    assert!(v["selection"]["selected_strategy"].is_string(), "{v}");
    let p = &v["plan"];
    assert_eq!(p["action"], "CREATE_INSTANCES", "{v}");
    assert_eq!(p["request"]["units"], 2, "{v}");
    assert_eq!(p["dry_run"], Value::Null);
    let (_, requests) = hf.app.get("/api/v1/status").await;
    assert!(!requests.to_string().contains("req-"), "{requests}");
}

//! IBM's template fields for EFA network interfaces (`efaCount`, `interfaceType`) and Capacity
//! Blocks (`marketType: capacity-block`) against moto, which keeps neither interface types nor
//! markets on its instances: the RunInstances and CreateLaunchTemplate requests are checked as
//! moto_switch recorded them.

use serde_json::{Value, json};

use crate::aws::{aws_app, aws_strategy, ok, refused_paths, warm_up};
use crate::helpers::TestApp;
use crate::support::aws::template;
use crate::support::moto::Moto;

/// The interfaces of a recorded request under `prefix`: (card, device, type) in order, and
/// whether each names a subnet.
fn interfaces(request: &Value, prefix: &str) -> Vec<(String, String, String, bool)> {
    (1..)
        .map_while(|n| {
            let key = |field: &str| format!("{prefix}NetworkInterface.{n}.{field}");
            let kind = request[key("InterfaceType")].as_str()?;
            Some((
                request[key("NetworkCardIndex")].as_str()?.to_string(),
                request[key("DeviceIndex")].as_str()?.to_string(),
                kind.to_string(),
                request[key("SubnetId")].is_string(),
            ))
        })
        .collect()
}

/// CREATE_INSTANCES of one machine of `template` on aws-a; the recorded `action` request.
async fn created_with(app: &TestApp, moto: &Moto, template: Value, action: &str) -> Value {
    let parameters = json!({"count": 1, "template": template});
    ok(app, "aws-a", "CREATE_INSTANCES", parameters).await;
    moto.last_request(action).await
}

fn slot(card: &str, device: &str, kind: &str, subnet: bool) -> (String, String, String, bool) {
    (card.into(), device.into(), kind.into(), subnet)
}

#[tokio::test]
async fn efa_interfaces_and_capacity_blocks_reach_run_instances_and_launch_templates() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 1)]).await;
    warm_up(&app, "aws-a").await;
    let subnet = moto
        .ec2("us-east-1")
        .await
        .describe_subnets()
        .send()
        .await
        .expect("subnets")
        .subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();

    // Two EFA interfaces: the primary on card 0, the second on card 1 at device index 1, each
    // in the pool's subnet (which then leaves the call's top level).
    let mut efa = template("OnDemand-Run");
    efa["efaCount"] = json!(2);
    efa["interfaceType"] = json!("efa");
    efa["subnetId"] = json!(subnet);
    let run = created_with(&app, &moto, efa, "RunInstances").await;
    assert_eq!(
        interfaces(&run, ""),
        [slot("0", "0", "efa", true), slot("1", "1", "efa", true)],
        "{run}"
    );
    assert_eq!(run["SubnetId"], Value::Null, "{run}");

    // EFA-only beside a plain primary, in the launch template ohfp makes for a fleet.
    let mut fleet = template("Fleet-Instant");
    fleet["efaCount"] = json!(1);
    fleet["interfaceType"] = json!("efa-only");
    let lt = created_with(&app, &moto, fleet, "CreateLaunchTemplate").await;
    assert_eq!(
        interfaces(&lt, "LaunchTemplateData."),
        [
            slot("0", "0", "interface", false),
            slot("0", "1", "efa-only", false)
        ],
        "{lt}"
    );

    // A Capacity Block: its market on RunInstances, aimed at the block's reservation.
    let mut block = template("OnDemand-Run");
    block["marketType"] = json!("capacity-block");
    block["capacityReservationId"] = json!("cr-0123456789abcdef0");
    let run = created_with(&app, &moto, block, "RunInstances").await;
    assert_eq!(
        run["InstanceMarketOptions.MarketType"], "capacity-block",
        "{run}"
    );
    assert_eq!(
        run["CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"],
        "cr-0123456789abcdef0",
        "{run}"
    );

    // Bad values are refused before any strategy runs, each naming its key.
    let mut bad = template("Fleet-Instant");
    bad["efaCount"] = json!(0);
    bad["interfaceType"] = json!("ena");
    bad["marketType"] = json!("capacity-block");
    assert_eq!(
        refused_paths(&app, bad).await,
        [
            "parameters.template.efaCount",
            "parameters.template.interfaceType",
            "parameters.template.marketType",
            "parameters.template.marketType",
            "parameters.template.marketType",
        ]
    );
    app.stop().await;
}

//! The HostFactory calls through the real shims, with config/aws.json pointed at moto:
//! the lifecycle of every providerApi, batched status polls, failover between two regions and
//! a reclaim behind the service's back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually};
use crate::hostfactory::{shim, status_of, wait_status};
use crate::support::aws::{production_config, template};
use crate::support::moto::Moto;

/// The regions config/aws.json gives aws-primary and aws-secondary.
pub(crate) const PRIMARY_REGION: &str = "eu-central-1";
const SECONDARY_REGION: &str = "eu-west-1";

/// Generous deadline for anything the reconciler does in the background.
const PATIENCE: Duration = Duration::from_secs(60);

/// The region's default subnet and security group, as an admin would write them into a
/// template. The first EC2 call also pays moto's cold start.
pub(crate) async fn network(moto: &Moto, region: &str) -> (String, String) {
    let ec2 = moto.ec2(region).await;
    let subnets = ec2.describe_subnets().send().await.expect("subnets");
    let subnet = subnets
        .subnets()
        .iter()
        .find(|s| s.default_for_az() == Some(true))
        .and_then(|s| s.subnet_id())
        .expect("a default subnet");
    let groups = ec2
        .describe_security_groups()
        .group_names("default")
        .send()
        .await
        .expect("default security group");
    (
        subnet.to_string(),
        groups.security_groups()[0].group_id().unwrap().to_string(),
    )
}

/// HostFactory templates: one per providerApi, pinned to aws-primary in its default subnet
/// and security group; and `Failover-Run`, which names no strategy, so that failover chooses.
fn hf_templates(dir: &Path, subnet: &str, security_group: &str) -> PathBuf {
    let mut templates: Vec<Value> = [
        "OnDemand-Run",
        "Fleet-Instant",
        "Fleet-Request",
        "Spot-Fleet",
        "ASG-Micro",
    ]
    .into_iter()
    .map(|id| {
        let mut t = template(id);
        t["providerName"] = json!("aws-primary");
        t["subnetId"] = json!(subnet);
        t["securityGroupIds"] = json!([security_group]);
        if id == "Fleet-Instant" {
            // HostFactory counts machines, a fleet weighted units: weight 1 keeps them equal.
            t["vmTypes"] = json!({"t3.micro": 1, "t3.small": 1});
        }
        t
    })
    .collect();
    let mut failover = template("OnDemand-Run");
    failover["templateId"] = json!("Failover-Run");
    templates.push(failover);
    // Two instance types in the template's order, t3.small first, for capacity failover.
    let mut two_types = template("OnDemand-Run");
    two_types["templateId"] = json!("Capacity-Run");
    two_types["providerName"] = json!("aws-primary");
    two_types["subnetId"] = json!(subnet);
    two_types.as_object_mut().unwrap().remove("vmType");
    two_types["vmTypes"] = json!({"t3.small": 1, "t3.micro": 1});
    templates.push(two_types);
    let path = dir.join("awsprov_templates.json");
    std::fs::write(&path, json!({ "templates": templates }).to_string()).unwrap();
    path
}

pub(crate) struct AwsHf {
    pub app: TestApp,
    _dir: tempfile::TempDir,
}

/// The service on config/aws.json with aws-primary on `primary` and aws-secondary on
/// `secondary`, the templates above and a reconciler round every `round` seconds that also
/// asks about running machines (so that reclaims show in the next round).
pub(crate) async fn aws_hf_app(primary: &Moto, secondary: &Moto, round: f64) -> AwsHf {
    let dir = tempfile::tempdir().unwrap();
    let (subnet, security_group) = network(primary, PRIMARY_REGION).await;
    let mut cfg = production_config(dir.path(), primary, secondary);
    cfg.hostfactory.templates_path = Some(
        hf_templates(dir.path(), &subnet, &security_group)
            .display()
            .to_string(),
    );
    cfg.hostfactory.reconcile_interval_seconds = round;
    cfg.hostfactory.live_check_interval_seconds = round / 2.0;
    // Two attempts keep a throttled region's retries short; the file asks for five.
    for p in &mut cfg.providers {
        p.config.insert("max_attempts".into(), json!(2));
    }
    AwsHf {
        app: TestApp::start(cfg).await,
        _dir: dir,
    }
}

/// requestMachines through the shim; the request id.
pub(crate) async fn request(app: &TestApp, template_id: &str, count: i64) -> String {
    let input = json!({"template": {"templateId": template_id, "machineCount": count}});
    let (code, v) = shim(app, "requestMachines", &input.to_string()).await;
    assert_eq!(code, 0, "{template_id}: {v}");
    v["requestId"].as_str().expect("a request id").to_string()
}

/// Waits for an acquire request to complete and checks every machine as HostFactory reads it.
pub(crate) async fn delivered(
    app: &TestApp,
    ec2: &aws_sdk_ec2::Client,
    id: &str,
    count: usize,
) -> Vec<Value> {
    let done = wait_status(app, id, "complete").await;
    let machines = done["machines"].as_array().unwrap().clone();
    assert_eq!(machines.len(), count, "{done}");
    let now = chrono::Utc::now().timestamp();
    for m in &machines {
        assert_eq!(
            (m["result"].as_str(), m["status"].as_str()),
            (Some("succeed"), Some("running")),
            "{m}"
        );
        let t = m["launchtime"].as_i64().expect("launchtime is an integer");
        assert!(t > 1_600_000_000 && t <= now + 5, "{m}");
    }
    // What the cloud holds: the same instances, named by their private DNS, tagged with
    // the request.
    let ids: Vec<String> = machines.iter().map(machine_id).collect();
    for i in instances(ec2, &ids).await {
        let m = machines
            .iter()
            .find(|m| m["machineId"] == i.instance_id().unwrap())
            .unwrap();
        assert_eq!(m["name"], i.private_dns_name().unwrap(), "{m}");
        assert_eq!(m["privateIpAddress"], i.private_ip_address().unwrap());
        let tag = |key: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        assert_eq!(tag("ohfp:request-id").as_deref(), Some(id), "{i:?}");
    }
    machines
}

fn machine_id(m: &Value) -> String {
    m["machineId"].as_str().unwrap().to_string()
}

/// requestReturnMachines for machines as getRequestStatus listed them; the return id.
pub(crate) async fn give_back(app: &TestApp, machines: &[Value]) -> String {
    let hosts: Vec<Value> = machines
        .iter()
        .map(|m| json!({"name": m["name"], "machineId": m["machineId"]}))
        .collect();
    let (code, v) = shim(
        app,
        "requestReturnMachines",
        &json!({ "machines": hosts }).to_string(),
    )
    .await;
    assert_eq!(code, 0, "{v}");
    v["requestId"].as_str().expect("a return id").to_string()
}

/// Waits for a return to complete with every machine terminated.
pub(crate) async fn returned(app: &TestApp, ret: &str, count: usize) {
    let done = wait_status(app, ret, "complete").await;
    let machines = done["machines"].as_array().unwrap();
    assert_eq!(machines.len(), count, "{done}");
    for m in machines {
        assert_eq!(
            (m["result"].as_str(), m["status"].as_str()),
            (Some("succeed"), Some("terminated")),
            "{done}"
        );
    }
}

async fn instances(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Vec<aws_sdk_ec2::types::Instance> {
    ec2.describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .expect("instances")
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .collect()
}

async fn states(ec2: &aws_sdk_ec2::Client, ids: &[String]) -> Vec<String> {
    let found = instances(ec2, ids).await;
    ids.iter()
        .map(|id| {
            found
                .iter()
                .find(|i| i.instance_id() == Some(id))
                .and_then(|i| i.state()?.name())
                .map_or("missing".to_string(), |s| s.as_str().to_string())
        })
        .collect()
}

/// Waits until moto has seen `action` at least `n` times.
async fn wait_for_calls(moto: &Moto, action: &str, n: u64) {
    let started = Instant::now();
    loop {
        let calls = moto.calls().await;
        if calls[action].as_u64().unwrap_or(0) >= n {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{action} never reached {n}: {calls}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Our own clients into one moto region, to look behind the service's back.
struct Cloud {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
}

impl Cloud {
    async fn of(moto: &Moto, region: &str) -> Self {
        Self {
            ec2: moto.ec2(region).await,
            autoscaling: moto.autoscaling(region).await,
        }
    }

    /// The spot fleet request of `Spot-Fleet` while it is active.
    async fn active_spot_fleet(&self) -> Option<aws_sdk_ec2::types::SpotFleetRequestConfig> {
        let out = self
            .ec2
            .describe_spot_fleet_requests()
            .send()
            .await
            .unwrap();
        out.spot_fleet_request_configs()
            .iter()
            .find(|c| c.spot_fleet_request_state().unwrap().as_str() == "active")
            .cloned()
    }

    /// The Auto Scaling group of `ASG-Micro`.
    async fn group(&self) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
        self.autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("ohfp-ASG-Micro")
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()
            .first()
            .cloned()
    }
}

/// What holds the two machines left of a template: a fleet or group shrunk, not deleted.
async fn holder_after_partial_return(cloud: &Cloud, template_id: &str) {
    match template_id {
        "Spot-Fleet" => {
            let fleet = cloud
                .active_spot_fleet()
                .await
                .expect("the spot fleet is kept while it holds machines");
            let target = fleet.spot_fleet_request_config().unwrap().target_capacity();
            assert_eq!(target, Some(2), "{fleet:?}");
        }
        "ASG-Micro" => {
            let group = cloud.group().await.expect("the group is kept");
            assert_eq!(group.desired_capacity(), Some(2), "{group:?}");
        }
        _ => {}
    }
}

/// What held the machines of a template is gone with the last of them.
async fn holder_after_full_return(cloud: &Cloud, template_id: &str) {
    match template_id {
        "Spot-Fleet" => assert!(cloud.active_spot_fleet().await.is_none(), "fleet cancelled"),
        "ASG-Micro" => assert!(cloud.group().await.is_none(), "group deleted"),
        _ => {}
    }
}

/// Three machines of a template: requested, delivered, one returned (what holds them shrinks,
/// the other two stay), then the other two (what held them goes).
async fn lifecycle(app: &TestApp, cloud: &Cloud, template_id: &str) {
    let ec2 = &cloud.ec2;
    let id = request(app, template_id, 3).await;
    let machines = delivered(app, ec2, &id, 3).await;
    let ids: Vec<String> = machines.iter().map(machine_id).collect();

    let first = give_back(app, &machines[..1]).await;
    returned(app, &first, 1).await;
    assert_eq!(
        states(ec2, &ids).await,
        ["terminated", "running", "running"],
        "{template_id}"
    );
    holder_after_partial_return(cloud, template_id).await;
    // The acquire request still reports what it delivered.
    assert_eq!(status_of(app, &id).await["status"], "complete");

    let rest = give_back(app, &machines[1..]).await;
    returned(app, &rest, 2).await;
    assert_eq!(
        states(ec2, &ids).await,
        ["terminated", "terminated", "terminated"],
        "{template_id}"
    );
    holder_after_full_return(cloud, template_id).await;
}

#[tokio::test]
async fn every_provider_api_through_the_shims_while_a_stuck_return_holds_up_no_other() {
    let moto = Moto::start().await;
    let hf = aws_hf_app(&moto, &moto, 0.2).await;
    let app = &hf.app;
    let cloud = Cloud::of(&moto, PRIMARY_REGION).await;

    // A request fleet gives one machine back by lowering its target capacity first. moto
    // 5.2.5 has no ModifyFleet (HTTP 500), so that return cannot go through: it stays
    // running and is retried, and the fleet keeps all three machines.
    let fleet_request = request(app, "Fleet-Request", 3).await;
    let fleet_machines = delivered(app, &cloud.ec2, &fleet_request, 3).await;
    let fleet_ids: Vec<String> = fleet_machines.iter().map(machine_id).collect();
    let stuck = give_back(app, &fleet_machines[..1]).await;
    wait_for_calls(&moto, "ModifyFleet", 2).await;
    // The SDK retries moto's 500 within one call: the refusal is recorded once it gives up.
    let stuck_ref = &stuck;
    let r = eventually("the refused return is explained", || async move {
        let r = status_of(app, stuck_ref).await;
        let noted = r["machines"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty());
        noted.then_some(r)
    })
    .await;
    assert_eq!(r["status"], "running", "{r}");
    assert_eq!(r["machines"][0]["result"], "executing", "{r}");
    // HostFactory is told why, on the machine and in the request's message.
    assert!(
        r["machines"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Termination not accepted yet"),
        "{r}"
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("Termination not accepted yet"),
        "{r}"
    );
    let fleets = cloud.ec2.describe_fleets().send().await.unwrap();
    let fleet_id = fleets
        .fleets()
        .iter()
        .find(|f| f.fleet_state().unwrap().as_str() == "active")
        .and_then(|f| f.fleet_id())
        .expect("the fleet is kept")
        .to_string();
    let members = cloud
        .ec2
        .describe_fleet_instances()
        .fleet_id(&fleet_id)
        .send()
        .await
        .unwrap();
    assert_eq!(members.active_instances().len(), 3, "{members:?}");
    assert_eq!(
        states(&cloud.ec2, &fleet_ids).await,
        ["running", "running", "running"]
    );

    // Meanwhile every other providerApi goes through its whole lifecycle on the same strategy.
    tokio::join!(
        lifecycle(app, &cloud, "OnDemand-Run"),
        lifecycle(app, &cloud, "Fleet-Instant"),
        lifecycle(app, &cloud, "Spot-Fleet"),
        lifecycle(app, &cloud, "ASG-Micro"),
    );

    // The whole fleet back instead: it goes with its machines, and both returns complete.
    let rest = give_back(app, &fleet_machines[1..]).await;
    returned(app, &stuck, 1).await;
    returned(app, &rest, 2).await;
    assert_eq!(
        states(&cloud.ec2, &fleet_ids).await,
        ["terminated", "terminated", "terminated"]
    );
    let fleets = cloud
        .ec2
        .describe_fleets()
        .fleet_ids(&fleet_id)
        .send()
        .await
        .unwrap();
    assert!(
        fleets
            .fleets()
            .iter()
            .all(|f| f.fleet_state().unwrap().as_str().starts_with("deleted")),
        "{fleets:?}"
    );
    hf.app.stop().await;
}

#[tokio::test]
async fn one_describe_instances_per_round_for_many_requests_and_a_reclaim_is_reported() {
    const REQUESTS: usize = 8;
    const ROUND_SECONDS: f64 = 1.0;
    let moto = Moto::start().await;
    let hf = aws_hf_app(&moto, &moto, ROUND_SECONDS).await;
    let app = &hf.app;
    let ec2 = moto.ec2(PRIMARY_REGION).await;
    let mut ids = Vec::new();
    for _ in 0..REQUESTS {
        ids.push(request(app, "OnDemand-Run", 1).await);
    }
    let mut machines = Vec::new();
    for id in &ids {
        machines.extend(delivered(app, &ec2, id, 1).await);
    }

    // Nothing is provisioned or returned any more; every round asks about the machines of all
    // eight requests. Rounds start at least ROUND_SECONDS apart, plus the round under way at
    // the reset and one early wake-up left over: at most floor(elapsed / round) + 3 of them.
    // Polling per request would make eight calls in the first round alone.
    let all_requests =
        json!({"requests": ids.iter().map(|id| json!({"requestId": id})).collect::<Vec<_>>()})
            .to_string();
    moto.reset_calls().await;
    let started = Instant::now();
    let describes = loop {
        // getRequestStatus answers from the store: it makes no EC2 call.
        let (code, v) = shim(app, "getRequestStatus", &all_requests).await;
        assert_eq!(code, 0);
        assert!(
            v["requests"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == "complete"),
            "{v}"
        );
        let calls = moto.calls().await;
        let describes = calls["DescribeInstances"].as_u64().unwrap_or(0);
        if describes >= 3 {
            let total: u64 = calls
                .as_object()
                .unwrap()
                .values()
                .filter_map(Value::as_u64)
                .sum();
            assert_eq!(
                total, describes,
                "one EC2 call per poll and no other: {calls}"
            );
            break describes;
        }
        assert!(started.elapsed() < PATIENCE, "no status polls: {calls}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rounds_at_most = (started.elapsed().as_secs_f64() / ROUND_SECONDS).floor() as u64 + 3;
    assert!(
        describes <= rounds_at_most,
        "{describes} DescribeInstances in at most {rounds_at_most} rounds"
    );
    assert!(
        describes < REQUESTS as u64,
        "{describes} DescribeInstances for {REQUESTS} requests"
    );

    // Someone terminates one machine through the EC2 API: getReturnRequests lists that host
    // with no time left, and not the healthy one.
    let (victim, healthy) = (&machines[0], &machines[1]);
    ec2.terminate_instances()
        .instance_ids(machine_id(victim))
        .send()
        .await
        .expect("terminated behind the service's back");
    let hosts = json!({"machines": [
        {"name": healthy["name"], "machineId": healthy["machineId"]},
        {"name": victim["name"], "machineId": victim["machineId"]},
    ]})
    .to_string();
    let started = Instant::now();
    let reported = loop {
        let (code, v) = shim(app, "getReturnRequests", &hosts).await;
        assert_eq!(code, 0, "{v}");
        if !v["requests"].as_array().unwrap().is_empty() {
            break v;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the reclaim is never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        reported["requests"],
        json!([{"machine": victim["name"], "gracePeriod": 0}]),
        "{reported}"
    );
    hf.app.stop().await;
}

#[tokio::test]
async fn request_machines_fails_over_from_a_throttled_or_dead_primary_region() {
    let mut primary = Moto::start().await;
    let secondary = Moto::start().await;
    let hf = aws_hf_app(&primary, &secondary, 0.2).await;
    let app = &hf.app;
    let in_secondary = secondary.ec2(SECONDARY_REGION).await;
    let in_primary = primary.ec2(PRIMARY_REGION).await;
    // The secondary's cold start, paid before anything is timed by the service.
    network(&secondary, SECONDARY_REGION).await;

    primary.fault("throttle").await;
    primary.reset_calls().await;
    let throttled = request(app, "Failover-Run", 2).await;
    let machines = delivered(app, &in_secondary, &throttled, 2).await;
    assert!(
        primary.calls().await["RunInstances"].as_u64().unwrap_or(0) >= 1,
        "the primary was tried first"
    );
    primary.fault("off").await;
    let ids: Vec<String> = machines.iter().map(machine_id).collect();
    let elsewhere = in_primary
        .describe_instances()
        .instance_ids(&ids[0])
        .send()
        .await;
    assert!(
        elsewhere.is_err(),
        "not in the primary region: {elsewhere:?}"
    );

    primary.kill();
    let dead = request(app, "Failover-Run", 1).await;
    let more = delivered(app, &in_secondary, &dead, 1).await;

    // They leave through the strategy that made them.
    let ret = give_back(app, &[machines, more].concat()).await;
    returned(app, &ret, 3).await;
    hf.app.stop().await;
}

#[tokio::test]
async fn request_machines_completes_on_the_second_type_when_the_first_has_no_capacity() {
    let primary = Moto::start().await;
    let secondary = Moto::start().await;
    let hf = aws_hf_app(&primary, &secondary, 0.2).await;
    let app = &hf.app;
    let ec2 = primary.ec2(PRIMARY_REGION).await;
    primary.short_of(&["t3.small"]).await;

    let id = request(app, "Capacity-Run", 2).await;
    let machines = delivered(app, &ec2, &id, 2).await;
    let ids: Vec<String> = machines.iter().map(machine_id).collect();
    for i in instances(&ec2, &ids).await {
        assert_eq!(
            i.instance_type().map(|t| t.as_str()),
            Some("t3.micro"),
            "{i:?}"
        );
    }
    let (status, listed) = app.get("/api/v1/providers/aws-primary/parked-pools").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["pools"][0]["instance_type"], "t3.small", "{listed}");
    assert!(
        listed["pools"][0]["subnet"]
            .as_str()
            .unwrap()
            .starts_with("subnet-"),
        "{listed}"
    );
    hf.app.stop().await;
}

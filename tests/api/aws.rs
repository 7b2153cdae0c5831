//! The AWS provider against moto's EC2/Auto Scaling server on loopback, through the running app.

use ohfp::config::StrategySpec;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_paths, execute, next_event};
use crate::support::aws::{production_config, template};
use crate::support::moto::Moto;

pub(crate) fn aws_strategy(
    name: &str,
    moto: &Moto,
    region: &str,
    priority: i64,
    max_attempts: u32,
) -> StrategySpec {
    serde_json::from_value(json!({
        "name": name, "type": "aws", "priority": priority,
        "config": {"region": region, "endpoint_url": moto.url, "access_key_id": "test",
                   "secret_access_key": "test", "max_attempts": max_attempts,
                   "operation_timeout_seconds": 10}
    }))
    .expect("strategy spec")
}

/// The app with only the given AWS strategies, failing over in their order.
pub(crate) async fn aws_app(strategies: Vec<StrategySpec>) -> TestApp {
    TestApp::spawn_with(move |cfg| {
        cfg.strategy.fallback_strategies = strategies.iter().map(|s| s.name.clone()).collect();
        cfg.providers = strategies;
    })
    .await
}

async fn op(app: &TestApp, strategy: &str, operation: &str, parameters: Value) -> Value {
    execute(
        app,
        json!({"operation_type": operation, "parameters": parameters, "strategy_override": strategy}),
    )
    .await
}

/// An operation that must succeed; its data.
async fn ok(app: &TestApp, strategy: &str, operation: &str, parameters: Value) -> Value {
    let v = op(app, strategy, operation, parameters).await;
    assert_eq!(v["success"], true, "{operation}: {v}");
    v["data"].clone()
}

pub(crate) async fn warm_up(app: &TestApp, strategy: &str) {
    ok(app, strategy, "HEALTH_CHECK", json!({})).await;
}

/// An operation aws-a failed with `code` of `kind`, then aws-b served.
fn served_by_b_after_a_failed(v: &Value, code: &str, kind: &str) {
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "aws-b", "{v}");
    let first = &v["metadata"]["attempted"][0];
    assert_eq!(first["strategy"], "aws-a");
    assert_eq!(first["error_code"], code, "{v}");
    assert_eq!(first["error_kind"], kind, "{v}");
}

/// aws-a on `a` failing over to aws-b on `b`, each in its region, both warmed up.
async fn two_regions(a: &Moto, b: &Moto, regions: (&str, &str), max_attempts: u32) -> TestApp {
    let app = aws_app(vec![
        aws_strategy("aws-a", a, regions.0, 0, max_attempts),
        aws_strategy("aws-b", b, regions.1, 1, max_attempts),
    ])
    .await;
    warm_up(&app, "aws-a").await;
    warm_up(&app, "aws-b").await;
    app
}

fn ids(machines: &Value) -> Vec<String> {
    machines
        .as_array()
        .expect("machines")
        .iter()
        .map(|m| m["instance_id"].as_str().expect("id").to_string())
        .collect()
}

fn by_id<'a>(machines: &'a Value, id: &str) -> &'a Value {
    machines
        .as_array()
        .expect("machines")
        .iter()
        .find(|m| m["instance_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {machines}"))
}

#[tokio::test]
async fn run_instances_lifecycle_batched_status_and_reclaim_behind_our_back() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 3)]).await;
    warm_up(&app, "aws-a").await;
    let mut all = Vec::new();
    for r in ["req-1", "req-2", "req-3"] {
        let created = ok(
            &app,
            "aws-a",
            "CREATE_INSTANCES",
            json!({"count": 2, "request_id": r, "template": template("OnDemand-Run")}),
        )
        .await;
        assert_eq!(created["provider_api"], "RunInstances");
        assert_eq!(created["instances"][0]["request_id"], r, "{created}");
        all.extend(ids(&created["instances"]));
    }
    assert_eq!(all.len(), 6);

    // One DescribeInstances for six instances of three requests, duplicates included.
    moto.reset_calls().await;
    let mut asked = all.clone();
    asked.push(all[0].clone());
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": asked}),
    )
    .await;
    assert_eq!(status["machines"].as_array().unwrap().len(), 6);
    let calls = moto.calls().await;
    assert_eq!(calls["DescribeInstances"], 1, "{calls}");
    let m = by_id(&status["machines"], &all[0]);
    assert_eq!(m["state"], "running");
    assert!(m["private_ip"].as_str().unwrap().starts_with("10."), "{m}");
    assert!(m["launch_time"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(m["price_type"], "ondemand");
    assert_eq!(m["instance_type"], "t3.micro");
    assert_eq!(m["request_id"], "req-1");
    assert!(m.get("reclaim_notice").is_none(), "{m}");

    let by_request = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"request_ids": ["req-2"]}),
    )
    .await;
    assert_eq!(ids(&by_request["machines"]), all[2..4].to_vec());

    // Someone terminates one instance through the EC2 API: it is reported as taken back.
    moto.ec2("us-east-1")
        .await
        .terminate_instances()
        .instance_ids(&all[0])
        .send()
        .await
        .expect("terminated behind the service's back");
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": [&all[0], &all[1], "i-0123456789abcdef0"]}),
    )
    .await;
    let reclaimed = by_id(&status["machines"], &all[0]);
    assert_eq!(reclaimed["state"], "terminated");
    assert!(
        reclaimed["reclaim_notice"]
            .as_str()
            .unwrap()
            .contains("outside HostFactory"),
        "{reclaimed}"
    );
    assert_eq!(status["not_found"], json!(["i-0123456789abcdef0"]));

    // Our own return is not a reclaim.
    let gone = ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&all[0], &all[1], "i-0123456789abcdef0"]}),
    )
    .await;
    assert_eq!(gone["terminating"], json!([&all[1]]));
    assert_eq!(gone["already_terminating"], json!([&all[0]]));
    assert_eq!(gone["not_found"], json!(["i-0123456789abcdef0"]));
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": [&all[1]]}),
    )
    .await;
    assert_eq!(status["machines"][0]["state"], "terminated");
    assert!(
        status["machines"][0].get("reclaim_notice").is_none(),
        "{status}"
    );
    app.stop().await;
}

#[tokio::test]
async fn ec2_fleets_instant_and_request_with_partial_return() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 3)]).await;
    warm_up(&app, "aws-a").await;
    let ec2 = moto.ec2("us-east-1").await;

    let instant = ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 4, "request_id": "req-i", "template": template("Fleet-Instant")}),
    )
    .await;
    assert_eq!(instant["provider_api"], "EC2Fleet");
    let instant_ids = ids(&instant["instances"]);
    assert!(!instant_ids.is_empty(), "{instant}");
    assert!(
        instant["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["request_id"] == "req-i"),
        "{instant}"
    );

    let request = ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 3, "request_id": "req-r", "template": template("Fleet-Request")}),
    )
    .await;
    let fleet = request["resource_id"].as_str().unwrap().to_string();
    let resources = json!([{"resource_id": fleet, "provider_api": "EC2Fleet"}]);
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    let members = ids(&status["machines"]);
    assert_eq!(members.len(), 3, "{status}");
    assert!(
        status["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["request_id"] == "req-r" && m["resource_id"] == fleet.as_str()),
        "{status}"
    );

    // One machine back: the target capacity must go down first. moto 5.2.5 has no ModifyFleet
    // (HTTP 500), so the return fails, and the fleet and all its machines stay as they were:
    // a fleet is never deleted while it holds other machines.
    let machines = |list: &[String]| -> Value {
        list.iter()
            .map(|id| json!({"instance_id": id, "resource_id": fleet, "provider_api": "EC2Fleet"}))
            .collect()
    };
    let partial = op(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[0]], "machines": machines(&members[..1])}),
    )
    .await;
    assert_eq!(partial["success"], false, "{partial}");
    assert!(
        partial["error_message"]
            .as_str()
            .unwrap()
            .starts_with("ModifyFleet"),
        "{partial}"
    );
    // Together with a machine that can go, only the fleet's machine is held back.
    let mixed = ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[0], &instant_ids[0]], "machines": machines(&members[..1])}),
    )
    .await;
    assert_eq!(mixed["terminating"], json!([&instant_ids[0]]), "{mixed}");
    assert_eq!(
        mixed["failed"][0]["instance_ids"],
        json!([&members[0]]),
        "{mixed}"
    );
    assert_eq!(
        mixed["failed"][0]["error_code"], partial["error_code"],
        "{mixed}"
    );
    let f = ec2
        .describe_fleets()
        .fleet_ids(&fleet)
        .send()
        .await
        .unwrap();
    assert!(
        !f.fleets()[0]
            .fleet_state()
            .unwrap()
            .as_str()
            .starts_with("deleted")
    );
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    assert_eq!(status["machines"].as_array().unwrap().len(), 3, "{status}");

    // All of them back: the fleet goes, and its instances with it.
    let gone = ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": members, "machines": machines(&members)}),
    )
    .await;
    assert_eq!(gone["terminating"].as_array().unwrap().len(), 3);
    let f = ec2
        .describe_fleets()
        .fleet_ids(&fleet)
        .send()
        .await
        .unwrap();
    assert!(
        f.fleets()
            .first()
            .is_none_or(|f| f.fleet_state().unwrap().as_str().starts_with("deleted")),
        "{f:?}"
    );
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": members}),
    )
    .await;
    assert!(
        status["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "terminated"),
        "{status}"
    );

    // Instant fleet machines leave by TerminateInstances.
    let gone = ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": instant_ids}),
    )
    .await;
    assert_eq!(
        gone["terminating"].as_array().unwrap().len(),
        instant_ids.len() - 1
    );
    assert_eq!(gone["already_terminating"], json!([&instant_ids[0]]));
    app.stop().await;
}

#[tokio::test]
async fn spot_fleet_partial_return_keeps_the_fleet_and_the_launch_template_goes_last() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 3)]).await;
    warm_up(&app, "aws-a").await;
    let ec2 = moto.ec2("us-east-1").await;
    let created = ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 2, "request_id": "req-s", "template": template("Spot-Fleet")}),
    )
    .await;
    let fleet = created["resource_id"].as_str().unwrap().to_string();
    assert_eq!(created["provider_api"], "SpotFleet");
    let resources = json!([{"resource_id": fleet, "provider_api": "SpotFleet"}]);
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    let members = ids(&status["machines"]);
    assert_eq!(members.len(), 2, "{status}");
    assert!(
        status["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["price_type"] == "spot" && m["request_id"] == "req-s"),
        "{status}"
    );

    let hint =
        |id: &String| json!({"instance_id": id, "resource_id": fleet, "provider_api": "SpotFleet"});
    ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[0]], "machines": [hint(&members[0])]}),
    )
    .await;
    let req = ec2
        .describe_spot_fleet_requests()
        .spot_fleet_request_ids(&fleet)
        .send()
        .await
        .unwrap();
    let req = &req.spot_fleet_request_configs()[0];
    assert_eq!(req.spot_fleet_request_state().unwrap().as_str(), "active");
    assert_eq!(
        req.spot_fleet_request_config().unwrap().target_capacity(),
        Some(1)
    );
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    assert_eq!(ids(&status["machines"]), vec![members[1].clone()]);
    let lt = ec2
        .describe_launch_templates()
        .launch_template_names("ohfp-Spot-Fleet")
        .send()
        .await;
    assert!(
        lt.is_ok(),
        "the launch template stays while the fleet holds a machine"
    );

    ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[1]], "machines": [hint(&members[1])]}),
    )
    .await;
    // Cancelled (moto forgets a cancelled fleet at once; AWS lists it as cancelled).
    let req = ec2
        .describe_spot_fleet_requests()
        .spot_fleet_request_ids(&fleet)
        .send()
        .await
        .unwrap();
    assert!(req.spot_fleet_request_configs().iter().all(|c| {
        c.spot_fleet_request_state()
            .unwrap()
            .as_str()
            .starts_with("cancelled")
    }));
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": members}),
    )
    .await;
    assert!(
        status["machines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "terminated"),
        "{status}"
    );
    let lt = ec2
        .describe_launch_templates()
        .launch_template_names("ohfp-Spot-Fleet")
        .send()
        .await;
    assert!(
        lt.is_err() || lt.unwrap().launch_templates().is_empty(),
        "launch template deleted with its last fleet"
    );
    app.stop().await;
}

#[tokio::test]
async fn asg_grows_per_request_and_shrinks_on_return() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 3)]).await;
    warm_up(&app, "aws-a").await;
    let first = ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 2, "request_id": "req-a1", "template": template("ASG-Micro")}),
    )
    .await;
    assert_eq!(first["resource_id"], "ohfp-ASG-Micro");
    let second = ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 1, "request_id": "req-a2", "template": template("ASG-Micro")}),
    )
    .await;
    assert_eq!(second["desired_capacity"], 3);
    let resources = json!([{"resource_id": "ohfp-ASG-Micro", "provider_api": "ASG"}]);
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    let machines = status["machines"].as_array().unwrap();
    assert_eq!(machines.len(), 3, "{status}");
    let of = |r: &str| machines.iter().filter(|m| m["request_id"] == r).count();
    assert_eq!((of("req-a1"), of("req-a2")), (2, 1), "{status}");
    let members = ids(&status["machines"]);

    let hint = |id: &String| json!({"instance_id": id, "resource_id": "ohfp-ASG-Micro", "provider_api": "ASG"});
    ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[0]], "machines": [hint(&members[0])]}),
    )
    .await;
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    assert_eq!(
        status["machines"].as_array().unwrap().len(),
        2,
        "capacity decremented, no replacement: {status}"
    );

    let rest: Vec<Value> = members[1..].iter().map(hint).collect();
    ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": &members[1..], "machines": rest}),
    )
    .await;
    let status = ok(
        &app,
        "aws-a",
        "GET_INSTANCE_STATUS",
        json!({"resources": resources}),
    )
    .await;
    assert!(
        status["machines"].as_array().unwrap().is_empty(),
        "group deleted: {status}"
    );
    // A machine returned twice is already terminating, not an error.
    let again = ok(
        &app,
        "aws-a",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": [&members[0]], "machines": [hint(&members[0])]}),
    )
    .await;
    assert_eq!(again["already_terminating"], json!([&members[0]]));
    app.stop().await;
}

#[tokio::test]
async fn two_regions_are_isolated_and_throttled_or_dead_regions_fail_over() {
    let mut moto_a = Moto::start().await;
    let moto_b = Moto::start().await;
    let app = two_regions(&moto_a, &moto_b, ("eu-central-1", "eu-west-1"), 2).await;
    let create = json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 1, "request_id": "req-f", "template": template("OnDemand-Run")}});

    let v = execute(&app, create.clone()).await;
    assert_eq!(v["metadata"]["strategy_used"], "aws-a", "{v}");
    let in_a = ids(&v["data"]["instances"]);
    assert_eq!(v["data"]["instances"][0]["region"], "eu-central-1");
    // Region isolation: aws-b does not know aws-a's instance.
    let elsewhere = ok(
        &app,
        "aws-b",
        "GET_INSTANCE_STATUS",
        json!({"instance_ids": in_a}),
    )
    .await;
    assert_eq!(elsewhere["not_found"], json!(in_a));

    // Throttled: retried by the SDK (2 attempts), reported as throttling, then aws-b serves.
    moto_a.fault("throttle").await;
    moto_a.reset_calls().await;
    let v = execute(&app, create.clone()).await;
    served_by_b_after_a_failed(&v, "RequestLimitExceeded", "throttling");
    assert_eq!(
        moto_a.calls().await["RunInstances"],
        2,
        "throttling is retried"
    );
    assert_eq!(v["data"]["instances"][0]["region"], "eu-west-1");
    moto_a.fault("off").await;

    // Dead: connection refused, reported as transient, aws-b serves.
    moto_a.kill();
    let v = execute(&app, create).await;
    assert_eq!(v["metadata"]["strategy_used"], "aws-b", "{v}");
    assert_eq!(
        v["metadata"]["attempted"][0]["error_kind"], "transient",
        "{v}"
    );
    let health = op(&app, "aws-a", "HEALTH_CHECK", json!({})).await;
    assert_eq!(health["success"], false, "{health}");
    app.stop().await;
}

/// A RunInstances template over three types: t3.small first by vmTypesPriority, then
/// t3.micro, then m5.large (no priority: after those with one, in the template's order).
fn three_type_template() -> Value {
    let mut t = template("OnDemand-Run");
    t["templateId"] = json!("Capacity-Run");
    t.as_object_mut().unwrap().remove("vmType");
    t["vmTypes"] = json!({"t3.micro": 1, "t3.small": 1, "m5.large": 1});
    t["vmTypesPriority"] = json!({"t3.small": 1, "t3.micro": 2});
    t
}

#[tokio::test]
async fn a_pool_short_of_capacity_is_parked_and_the_order_moves_to_the_next_type() {
    let moto_a = Moto::start().await;
    let moto_b = Moto::start().await;
    let app = two_regions(&moto_a, &moto_b, ("us-east-1", "us-west-2"), 1).await;
    let mut events = app.events().await;
    let create = |r: &str| json!({"operation_type": "CREATE_INSTANCES", "parameters": {"count": 2, "request_id": r, "template": three_type_template()}});

    // t3.small, the first by priority, has no room: the two go on t3.micro, still on aws-a.
    moto_a.short_of(&["t3.small"]).await;
    moto_a.reset_calls().await;
    let v = execute(&app, create("req-c1")).await;
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["metadata"]["strategy_used"], "aws-a", "{v}");
    let machines = v["data"]["instances"].as_array().unwrap();
    assert_eq!(machines.len(), 2);
    assert!(
        machines.iter().all(|m| m["instance_type"] == "t3.micro"),
        "{v}"
    );
    assert_eq!(moto_a.calls().await["RunInstances"], 2);
    let parked = next_event(&mut events, "pool_parked").await;
    assert_eq!(parked["strategy"], "aws-a");
    assert_eq!(parked["detail"]["instance_type"], "t3.small");
    assert_eq!(parked["detail"]["code"], "InsufficientInstanceCapacity");

    let (status, listed) = app.get("/api/v1/providers/aws-a/parked-pools").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["cooldown_seconds"], 600);
    assert_eq!(listed["pools"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["pools"][0]["instance_type"], "t3.small");
    assert_eq!(listed["pools"][0]["code"], "InsufficientInstanceCapacity");
    assert_eq!(
        (
            listed["parked_total"].as_u64(),
            listed["failovers_total"].as_u64()
        ),
        (Some(1), Some(1))
    );

    // Room again, but the pool is parked: skipped without a call.
    moto_a.short_of(&[]).await;
    moto_a.reset_calls().await;
    let v = execute(&app, create("req-c2")).await;
    assert_eq!(
        v["data"]["instances"][0]["instance_type"], "t3.micro",
        "{v}"
    );
    assert_eq!(moto_a.calls().await["RunInstances"], 1);

    // Every pool short: aws-a fails with its capacity class and aws-b serves.
    moto_a.short_of(&["t3.micro", "m5.large"]).await;
    let v = execute(&app, create("req-c3")).await;
    served_by_b_after_a_failed(&v, "InsufficientInstanceCapacity", "capacity");
    // aws-b honours the priority: t3.small first.
    assert_eq!(
        v["data"]["instances"][0]["instance_type"], "t3.small",
        "{v}"
    );
    let (_, listed) = app.get("/api/v1/providers/aws-a/parked-pools").await;
    assert_eq!(listed["pools"].as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(listed["parked_total"], 3);

    // Nothing left to try: a fast capacity failure without a call to EC2.
    moto_a.reset_calls().await;
    let v = op(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 1, "request_id": "req-c4", "template": three_type_template()}),
    )
    .await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], "POOLS_PARKED", "{v}");
    assert_eq!(moto_a.calls().await.get("RunInstances"), None);

    let (status, _) = app.get("/api/v1/providers/nope/parked-pools").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn ibm_placement_fields_reach_run_instances_and_the_launch_templates_of_fleets() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 1)]).await;
    warm_up(&app, "aws-a").await;
    let placed = |id: &str| {
        let mut t = template(id);
        t["tenancy"] = json!("dedicated");
        t["placementGroupName"] = json!("hpc-cluster");
        t["capacityReservationId"] = json!("cr-0123456789abcdef0");
        t
    };
    // moto keeps none of these on its instances (tenancy always "default"): the requests are
    // checked as the switch recorded them.
    ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 1, "template": placed("OnDemand-Run")}),
    )
    .await;
    let run = moto.last_request("RunInstances").await;
    assert_eq!(run["Placement.Tenancy"], "dedicated", "{run}");
    assert_eq!(run["Placement.GroupName"], "hpc-cluster", "{run}");
    assert_eq!(
        run["CapacityReservationSpecification.CapacityReservationTarget.CapacityReservationId"],
        "cr-0123456789abcdef0",
        "{run}"
    );
    let mut fleet = placed("Fleet-Instant");
    fleet
        .as_object_mut()
        .unwrap()
        .remove("capacityReservationId");
    fleet["capacityReservationPreference"] = json!("none");
    ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 1, "template": fleet}),
    )
    .await;
    let lt = moto.last_request("CreateLaunchTemplate").await;
    assert_eq!(
        lt["LaunchTemplateData.Placement.Tenancy"], "dedicated",
        "{lt}"
    );
    assert_eq!(
        lt["LaunchTemplateData.Placement.GroupName"], "hpc-cluster",
        "{lt}"
    );
    assert_eq!(
        lt["LaunchTemplateData.CapacityReservationSpecification.CapacityReservationPreference"],
        "none",
        "{lt}"
    );

    // A launch template of the user's, at the version the template names.
    let ec2 = moto.ec2("us-east-1").await;
    let data = aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .build();
    let user_lt = ec2
        .create_launch_template()
        .launch_template_name("users-own")
        .launch_template_data(data.clone())
        .send()
        .await
        .expect("launch template");
    let user_lt = user_lt
        .launch_template()
        .unwrap()
        .launch_template_id()
        .unwrap()
        .to_string();
    let mut versioned = template("OnDemand-Run");
    versioned.as_object_mut().unwrap().remove("imageId");
    versioned["launchTemplateId"] = json!(user_lt);
    versioned["launchTemplateVersion"] = json!(1);
    ok(
        &app,
        "aws-a",
        "CREATE_INSTANCES",
        json!({"count": 1, "template": versioned}),
    )
    .await;
    let run = moto.last_request("RunInstances").await;
    assert_eq!(
        run["LaunchTemplate.LaunchTemplateId"],
        json!(user_lt),
        "{run}"
    );
    assert_eq!(run["LaunchTemplate.Version"], "1", "{run}");

    // Bad values are refused before any strategy runs, each naming its key.
    let mut bad = template("OnDemand-Run");
    bad["tenancy"] = json!("shared");
    bad["launchTemplateVersion"] = json!("$Latest");
    bad["capacityReservationPreference"] = json!("targeted");
    let (status, v) = app
        .post(
            "/api/v1/providers/operations",
            json!({"operation_type": "CREATE_INSTANCES", "strategy_override": "aws-a",
                   "parameters": {"count": 1, "template": bad}}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let paths = error_paths(&v);
    assert_eq!(
        paths,
        [
            "parameters.template.launchTemplateVersion",
            "parameters.template.tenancy",
            "parameters.template.capacityReservationPreference"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn auth_failures_fail_fast_and_templates_are_really_validated() {
    let moto = Moto::start().await;
    let app = aws_app(vec![aws_strategy("aws-a", &moto, "us-east-1", 0, 3)]).await;
    warm_up(&app, "aws-a").await;

    let good = ok(
        &app,
        "aws-a",
        "VALIDATE_TEMPLATE",
        json!({"template": template("OnDemand-Run")}),
    )
    .await;
    assert_eq!(good["valid"], true);
    let mut bad = template("OnDemand-Run");
    bad["vmType"] = json!("t9.mega");
    bad["subnetId"] = json!("subnet-00000000000000000");
    bad["securityGroupIds"] = json!(["sg-00000000000000000"]);
    bad["imageId"] = json!("/aws/service/no/such/parameter");
    let v = op(&app, "aws-a", "VALIDATE_TEMPLATE", json!({"template": bad})).await;
    assert_eq!(v["success"], false);
    assert_eq!(v["error_code"], "INVALID_TEMPLATE");
    let message = v["error_message"].as_str().unwrap();
    for needle in ["imageId", "vmTypes", "subnetId", "securityGroupIds"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    // An SSM image path resolves (moto knows Amazon's public parameters).
    let mut ssm = template("OnDemand-Run");
    ssm["imageId"] = json!("/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2");
    ok(&app, "aws-a", "VALIDATE_TEMPLATE", json!({"template": ssm})).await;

    moto.enforce_auth_failure().await;
    moto.reset_calls().await;
    let v = op(&app, "aws-a", "HEALTH_CHECK", json!({})).await;
    assert_eq!(v["success"], false);
    assert_eq!(v["error_code"], "AuthFailure", "{v}");
    assert_eq!(v["metadata"]["attempted"][0]["error_kind"], "auth", "{v}");
    assert_eq!(
        moto.calls().await["DescribeAvailabilityZones"],
        1,
        "auth failures are not retried"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_production_config_runs_against_moto() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(production_config(dir.path(), &moto, &moto)).await;
    let create = json!({"operation_type": "CREATE_INSTANCES",
        "parameters": {"count": 2, "request_id": "req-p", "template": template("OnDemand-Run")}});
    let v = execute(&app, create).await;
    assert_eq!(v["metadata"]["strategy_used"], "aws-primary", "{v}");
    assert_eq!(v["data"]["instances"][0]["region"], "eu-central-1");
    let created = ids(&v["data"]["instances"]);
    let status = ok(
        &app,
        "aws-primary",
        "GET_INSTANCE_STATUS",
        json!({"request_ids": ["req-p"]}),
    )
    .await;
    assert_eq!(status["machines"].as_array().unwrap().len(), 2);
    let gone = ok(
        &app,
        "aws-primary",
        "TERMINATE_INSTANCES",
        json!({"instance_ids": created}),
    )
    .await;
    assert_eq!(gone["terminating"].as_array().unwrap().len(), 2);
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn no_credentials_fail_fast_as_an_auth_error() {
    let moto = Moto::start().await;
    // No keys, and a profile no credentials file has: the standard chain finds nothing.
    let spec: StrategySpec = serde_json::from_value(json!({
        "name": "aws-nokeys", "type": "aws",
        "config": {"region": "us-east-1", "endpoint_url": moto.url,
                   "profile": "ohfp-test-no-such-profile", "max_attempts": 3,
                   "operation_timeout_seconds": 20}
    }))
    .unwrap();
    let app = aws_app(vec![spec]).await;
    let v = op(&app, "aws-nokeys", "HEALTH_CHECK", json!({})).await;
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["error_code"], "CREDENTIALS_UNAVAILABLE", "{v}");
    assert_eq!(v["metadata"]["attempted"][0]["error_kind"], "auth", "{v}");
    let calls = moto.calls().await;
    assert!(
        calls
            .get("DescribeAvailabilityZones")
            .is_none_or(|n| n == 0),
        "nothing was sent: {calls}"
    );
    app.stop().await;
}

use proptest::prelude::*;
use serde_json::json;

use super::*;

const FIXTURE: &str =
    include_str!("../../../tests/fixtures/hostfactory/_config/awsprov_templates.json");

fn one(v: Value) -> Result<Template, Vec<String>> {
    parse(&json!({"templates": [v]}).to_string()).map(|mut t| t.remove(0))
}

fn minimal() -> Value {
    json!({"templateId": "t1", "maxNumber": 2, "vmType": "m5.large",
           "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]}})
}

#[test]
fn the_sample_templates_file_parses_with_attributes_as_written() {
    let templates = parse(FIXTURE).expect("the fixture is valid");
    assert_eq!(templates.len(), 7);
    let c5 = &templates[0];
    assert_eq!(c5.id, "OnDemand-C5Large");
    assert_eq!(
        c5.attributes_json(),
        json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "ncores": ["Numeric", "1"], "nram": ["Numeric", "4096"]})
    );
    let r6i = templates
        .iter()
        .find(|t| t.id == "Fleet-Instant-R6i")
        .unwrap();
    assert_eq!(
        r6i.attributes_json(),
        json!({"type": ["String", "X86_64"], "ncpus": ["Numeric", "1"], "nram": ["Numeric", "16384"]})
    );
    assert_eq!(
        templates
            .iter()
            .find(|t| t.id == "Unlimited-OnDemand")
            .unwrap()
            .max_number,
        -1
    );
    assert!(
        templates
            .iter()
            .find(|t| t.id == "Disabled-Template")
            .unwrap()
            .is_disabled()
    );
    assert_eq!(
        templates
            .iter()
            .find(|t| t.id == "ASG-T3-Medium")
            .unwrap()
            .launch
            .provisioning_api,
        Some(ProvisioningApi::Asg)
    );
    assert_eq!(
        templates.last().unwrap().provider_name.as_deref(),
        Some("aws-secondary")
    );
}

#[test]
fn a_bare_array_is_accepted() {
    let t = parse(&json!([minimal()]).to_string()).unwrap();
    assert_eq!(t[0].id, "t1");
}

#[test]
fn problems_name_the_template_and_the_field() {
    let mut bad = minimal();
    bad["maxNumber"] = json!(-5);
    bad["attributes"]["ncpus"] = json!(["Numeric", "many"]);
    bad["instanceTags"] = json!("owner");
    bad["providerApi"] = json!("Lambda");
    let errs = parse(&json!({"templates": [minimal(), bad]}).to_string()).unwrap_err();
    let text = errs.join("\n");
    assert!(
        text.contains("template 't1' (templates[1]): maxNumber: must be an integer from -1"),
        "{text}"
    );
    assert!(
        text.contains("attributes.ncpus: 'many' is not numeric"),
        "{text}"
    );
    assert!(
        text.contains("instanceTags: 'owner' is not key=value"),
        "{text}"
    );
    assert!(
        text.contains("providerApi: unknown provisioning API 'Lambda'"),
        "{text}"
    );
    let dup = parse(&json!({"templates": [minimal(), minimal()]}).to_string()).unwrap_err();
    assert_eq!(
        dup,
        ["template 't1' (templates[1]): templateId: duplicate of an earlier template"]
    );
    let errs = one(json!({"maxNumber": 1})).unwrap_err().join("\n");
    assert!(
        errs.contains("templateId: is required") && errs.contains("attributes: is required"),
        "{errs}"
    );
    let errs = one(json!({"templateId": "s", "maxNumber": 1, "providerApi": "SpotFleet", "vmTypes": {"m5.large": 0},
        "attributes": {"type": "X86_64", "ncpus": 1, "nram": 1024}})).unwrap_err().join("\n");
    assert!(
        errs.contains("fleetRole: is required") && errs.contains("vmTypes.m5.large"),
        "{errs}"
    );
    let errs = one(
        json!({"templateId": "a", "maxNumber": 1, "vmType": "x", "imageId": "ubuntu",
        "maxSpotPrice": "cheap", "keyName": "", "vmTypesPriority": {"m5.large": "high"},
        "attributes": {"type": "X86_64", "ncpus": 1, "nram": 1024}}),
    )
    .unwrap_err()
    .join("\n");
    for field in [
        "imageId",
        "maxSpotPrice",
        "keyName",
        "vmTypesPriority.m5.large",
    ] {
        assert!(errs.contains(&format!("{field}: ")), "{field}: {errs}");
    }
    assert!(parse("{\"templates\": 3}").is_err());
    assert!(parse("{oops").unwrap_err()[0].contains("not valid JSON"));
}

#[test]
fn instance_tags_split_on_semicolon_and_first_equals() {
    assert_eq!(
        parse_instance_tags("owner=gridops; cost=a=b;;").unwrap(),
        vec![
            ("owner".into(), "gridops".into()),
            ("cost".into(), "a=b".into())
        ]
    );
    assert!(parse_instance_tags("=x").is_err());
}

proptest! {
    /// Plain numbers and strings come out in typed form with the value as text, unchanged.
    #[test]
    fn attributes_come_out_typed(ncpus in 1u32..512, nram in 1u64..1_000_000, kind in "[A-Z][A-Z0-9_]{0,10}") {
        let t = one(json!({"templateId": "p", "maxNumber": -1, "vmType": "x",
            "attributes": {"type": kind.clone(), "ncpus": ncpus, "nram": nram.to_string()}})).unwrap();
        prop_assert_eq!(t.attributes_json(), json!({"type": ["String", kind], "ncpus": ["Numeric", ncpus.to_string()],
            "nram": ["Numeric", nram.to_string()]}));
    }

    /// maxNumber: only -1..=10000 integers are accepted.
    #[test]
    fn max_number_range(n in -100i64..20_000) {
        let mut v = minimal();
        v["maxNumber"] = json!(n);
        prop_assert_eq!(one(v).is_ok(), (-1..=10_000).contains(&n));
    }
}

#[test]
fn weighted_templates_count_units() {
    let spec = |v: Value| launch_spec(v.as_object().unwrap()).unwrap();
    let weighted = spec(json!({"vmTypes": {"m5.xlarge": 2, "m5.2xlarge": 4}}));
    assert_eq!(weighted.units_of(Some("m5.2xlarge")), 4);
    assert_eq!(weighted.units_of(Some("c5.large")), 1);
    assert_eq!(weighted.units_of(None), 1);
    assert_eq!(
        spec(json!({"vmType": "m5.large"})).units_of(Some("m5.large")),
        1
    );
}

#[test]
fn the_launch_spec_is_read_once_with_every_key_it_uses() {
    let t = one(json!({"templateId": "fleet", "maxNumber": 10, "vmType": "m5.large",
        "vmTypes": {"m5.xlarge": 2}, "vmTypesPriority": {"m5.xlarge": 1},
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]},
        "providerApi": "autoscaling", "priceType": "heterogeneous", "percentOnDemand": "25",
        "imageId": "ami-1", "subnetId": "subnet-a, subnet-b", "securityGroupIds": ["sg-1"],
        "instanceTags": "team=grid;cost=hpc", "maxSpotPrice": "0.5", "allocationStrategy": "lowestPrice",
        "rootDeviceVolumeSize": 50, "volumeType": "gp3", "fleetType": "request"}))
    .unwrap();
    let s = &t.launch;
    assert_eq!(s.template_id, "fleet");
    assert_eq!(s.provisioning_api, Some(ProvisioningApi::Asg));
    assert_eq!(s.primary_type(), Some("m5.large"));
    assert!(s.weighted);
    assert_eq!(s.units_of(Some("m5.xlarge")), 2);
    assert_eq!(s.subnets, ["subnet-a", "subnet-b"]);
    assert_eq!(
        s.tags,
        [
            ("team".into(), "grid".into()),
            ("cost".into(), "hpc".into())
        ]
    );
    assert_eq!(s.max_price.as_deref(), Some("0.5"));
    assert_eq!(s.fleet.percent_on_demand, 25.0);
    assert_eq!(s.fleet.priorities.get("m5.xlarge"), Some(&1));
    assert_eq!(s.root_volume.size_gib, Some(50));
    // What one validator accepts, provisioning accepts: the API parse is shared.
    let instant_asg = one(json!({"templateId": "x", "maxNumber": 1, "vmType": "m5.large",
        "attributes": {"type": ["String", "X86_64"], "ncpus": ["Numeric", "2"], "nram": ["Numeric", "8192"]},
        "providerApi": "ASG", "fleetType": "instant"}))
    .unwrap_err();
    assert!(
        instant_asg.iter().any(|e| e.contains("fleetType")),
        "{instant_asg:?}"
    );
}

#[tokio::test]
async fn the_catalog_takes_a_good_edit_and_keeps_the_last_good_set_after_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("templates.json");
    // Each version gets its own modification time: file systems may keep coarse ones.
    let write = |version: u64, templates: Value| {
        std::fs::write(&path, json!({"templates": templates}).to_string()).unwrap();
        let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * version);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
    };
    write(1, json!([minimal()]));
    let catalog = TemplateCatalog::load(Some(path.clone())).unwrap();
    assert_eq!(catalog.all().len(), 1);
    assert!(!catalog.refresh().await, "nothing changed");
    let mut second = minimal();
    second["templateId"] = json!("t2");
    write(2, json!([minimal(), second]));
    assert!(catalog.refresh().await);
    assert!(catalog.get("t2").is_some());
    write(3, json!([{"templateId": "broken"}]));
    assert!(!catalog.refresh().await);
    assert_eq!(
        catalog.all().len(),
        2,
        "a broken edit keeps the last good set"
    );
}

/// The minimal template with `extra` keys, read.
fn with(extra: Value) -> Result<Template, Vec<String>> {
    let mut t = minimal();
    t.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    one(t)
}

#[test]
fn efa_interfaces_and_capacity_blocks_are_read_and_checked() {
    use crate::domain::{InterfaceType, NetworkInterfaces};
    let t = with(json!({"efaCount": 4})).unwrap();
    assert_eq!(
        t.launch.network_interfaces,
        Some(NetworkInterfaces {
            count: 4,
            interface_type: InterfaceType::Efa
        })
    );
    let t = with(json!({"interfaceType": "efa-only"})).unwrap();
    assert_eq!(
        t.launch
            .network_interfaces
            .map(|n| (n.count, n.interface_type)),
        Some((1, InterfaceType::EfaOnly))
    );
    let block = json!({"marketType": "capacity-block", "providerApi": "RunInstances",
        "capacityReservationId": "cr-1"});
    assert!(with(block.clone()).unwrap().launch.capacity_block);
    assert!(!with(json!({})).unwrap().launch.capacity_block);
    for (extra, needle) in [
        (json!({"efaCount": 0}), "efaCount: must be"),
        (json!({"efaCount": 33}), "efaCount: must be"),
        (
            json!({"interfaceType": "ena"}),
            "interfaceType: unknown interface type",
        ),
        (
            json!({"marketType": "spot"}),
            "marketType: unknown market type",
        ),
        (
            json!({"marketType": "capacity-block", "providerApi": "EC2Fleet",
                "capacityReservationId": "cr-1"}),
            "marketType: capacity-block needs providerApi RunInstances or ASG",
        ),
        (
            json!({"marketType": "capacity-block", "providerApi": "RunInstances"}),
            "marketType: capacity-block needs capacityReservationId",
        ),
        (
            json!({"marketType": "capacity-block", "providerApi": "ASG", "priceType": "spot",
                "capacityReservationId": "cr-1"}),
            "marketType: capacity-block is on-demand capacity, not priceType spot",
        ),
    ] {
        let text = with(extra).unwrap_err().join("\n");
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[test]
fn placement_keys_are_read_and_a_reservation_needs_its_preference_to_agree() {
    let t = with(json!({"tenancy": "Dedicated", "placementGroupName": "hpc",
        "capacityReservationId": "cr-1", "launchTemplateId": "lt-1", "launchTemplateVersion": "3"}))
    .unwrap();
    let s = &t.launch;
    assert_eq!(s.placement.tenancy, Some(crate::domain::Tenancy::Dedicated));
    assert_eq!(s.placement.group_name.as_deref(), Some("hpc"));
    assert_eq!(
        s.placement.capacity_reservation,
        Some(crate::domain::CapacityReservation::Targeted { id: "cr-1".into() })
    );
    assert_eq!(s.launch_template_version.as_deref(), Some("3"));
    let open = with(json!({"capacityReservationPreference": "open"})).unwrap();
    assert_eq!(
        open.launch.placement.capacity_reservation,
        Some(crate::domain::CapacityReservation::Open)
    );
    for (extra, needle) in [
        (
            json!({"capacityReservationId": "cr-1", "capacityReservationPreference": "none"}),
            "capacityReservationId: goes with capacityReservationPreference targeted",
        ),
        (
            json!({"capacityReservationId": "r-1"}),
            "capacityReservationId: must be a capacity reservation id",
        ),
        (
            json!({"launchTemplateId": "lt-1", "launchTemplateVersion": 0}),
            "launchTemplateVersion: must be $Latest, $Default or a version number",
        ),
        (
            json!({"launchTemplateVersion": "$Latest"}),
            "launchTemplateVersion: needs launchTemplateId",
        ),
    ] {
        let text = with(extra).unwrap_err().join("\n");
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
